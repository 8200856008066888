"""Resizing layer-resolution maps to the input's size, with PyTorch's interpolation semantics.

Resizing is done with separable interpolation matrices (``out = W_h · A · W_wᵀ``) so the three
modes match ``torch.nn.functional.interpolate`` exactly: ``"nearest"`` (source index
``floor(i · in/out)``), ``"bilinear"`` (``align_corners=False``, the default of Captum's
``LayerAttribution.interpolate`` in bilinear mode) and ``"bilinear_aligned"`` (``align_corners=True``,
what pytorch-grad-cam's Score-CAM uses via ``UpsamplingBilinear2d``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .errors import InputError

MODES = ("nearest", "bilinear", "bilinear_aligned")


def interpolation_matrix(size_in: int, size_out: int, mode: str) -> np.ndarray:
    """``(size_out, size_in)`` matrix mapping a 1-D signal to its resized version."""
    out = np.arange(size_out, dtype=np.float64)
    matrix = np.zeros((size_out, size_in), np.float64)
    if mode == "nearest":
        source = np.minimum(np.floor(out * size_in / size_out).astype(int), size_in - 1)
        matrix[np.arange(size_out), source] = 1.0
        return matrix
    if mode == "bilinear_aligned":
        position = out * (size_in - 1) / (size_out - 1) if size_out > 1 else np.zeros_like(out)
    elif mode == "bilinear":
        position = np.maximum((out + 0.5) * size_in / size_out - 0.5, 0.0)
    else:
        raise InputError(f"unknown resize mode {mode!r}; choose one of {', '.join(MODES)}.")
    low = np.minimum(np.floor(position).astype(int), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    frac = position - low
    np.add.at(matrix, (np.arange(size_out), low), 1.0 - frac)
    np.add.at(matrix, (np.arange(size_out), high), frac)
    return matrix


def upsample(maps: jax.Array, shape: Sequence[int], *, mode: str = "bilinear") -> jax.Array:
    """Resize ``(B, h, w)`` or ``(B, h, w, C)`` maps to the spatial size of ``shape``.

    ``shape`` is the input's shape ``(B, H, W, ...)`` (or just ``(H, W)``).  Returns ``(B, H, W)``
    (or ``(B, H, W, C)``), float32.
    """
    maps = jnp.asarray(maps)
    if maps.ndim not in (3, 4):
        raise InputError(f"upsample expects maps of shape (B, h, w) or (B, h, w, C); got {tuple(maps.shape)}.")
    height, width = (shape[1], shape[2]) if len(shape) >= 3 else (shape[0], shape[1])
    rows = jnp.asarray(interpolation_matrix(maps.shape[1], int(height), mode), maps.dtype)
    cols = jnp.asarray(interpolation_matrix(maps.shape[2], int(width), mode), maps.dtype)
    if maps.ndim == 3:
        return jnp.einsum("Hh,bhw,Ww->bHW", rows, maps, cols, precision=jax.lax.Precision.HIGHEST)
    return jnp.einsum("Hh,bhwc,Ww->bHWc", rows, maps, cols, precision=jax.lax.Precision.HIGHEST)
