"""Shared helpers of the perturbation tests: comparison criterion, simple feature masks, tiny models."""

from __future__ import annotations

import numpy as np


def assert_matches(ours, reference, rel=1e-4):
    """max |ours - reference| <= rel * max |reference| (and the reference is not all zero)."""
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    scale = np.abs(reference).max()
    assert scale > 0, "reference is all zero: the comparison would be vacuous"
    err = np.abs(ours - reference).max()
    assert err <= rel * scale, f"max abs diff {err:.3g} > {rel} x max |ref| {scale:.3g}"


def band_labels(hw: tuple[int, int], rows: int, cols: int) -> np.ndarray:
    """(H, W) labels of a rows x cols grid of unequal bands (cut points spread over the image)."""
    height, width = hw
    r = np.minimum((np.arange(height) * rows) // height, rows - 1)
    c = np.minimum((np.arange(width) * cols) // width, cols - 1)
    return (r[:, None] * cols + c[None, :]).astype(np.int32)


def per_feature(attribution: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(B, M) value of each feature, read from an NHWC attribution constant over each feature."""
    attribution = np.asarray(attribution)
    m = int(labels.max()) + 1
    first = [np.argwhere(labels == j)[0] for j in range(m)]
    return np.stack([attribution[:, i, k, 0] for i, k in first], axis=1)


def kernel_coalitions(rng: np.random.Generator, m: int, n: int) -> np.ndarray:
    """(n, m) coalitions from the Shapley kernel (size k with p(k) ∝ (m-1)/(k(m-k)), then k features
    uniformly), drawn with NumPy: the sampler's distribution, independent of our implementation."""
    k = np.arange(1, m)
    p = (m - 1) / (k * (m - k))
    sizes = rng.choice(k, size=n, p=p / p.sum())
    out = np.zeros((n, m), np.int64)
    for row, size in zip(out, sizes):
        row[rng.choice(m, size=size, replace=False)] = 1
    return out
