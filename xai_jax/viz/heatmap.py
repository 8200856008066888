"""Heatmaps of attributions: signed (diverging, symmetric around zero) and magnitude (sequential).

Signed relevance needs a colormap whose centre is zero and whose limits are symmetric, ±max|a|, so
that red means "for the class" and blue "against" in every panel; a magnitude (saliency, Grad-CAM)
uses a sequential map from 0.  Channels are summed for signed maps and their absolute values summed
for magnitudes.  All-zero and constant maps render without NaN or division warnings.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SIGNED_CMAP = "bwr"
MAGNITUDE_CMAP = "inferno"


def to_2d(attr: Any, *, signed: bool = True) -> np.ndarray:
    """One sample's map ``(H, W)`` from ``(H, W)`` or ``(H, W, C)`` (channels reduced)."""
    a = np.asarray(attr, dtype=np.float32)
    if a.ndim == 3:
        a = a.sum(axis=-1) if signed else np.abs(a).sum(axis=-1)
    if a.ndim != 2:
        raise ValueError(f"expected one map of shape (H, W) or (H, W, C); got {a.shape}")
    return a


def limits(attr: Any, *, signed: bool = True, percentile: float | None = None) -> tuple[float, float]:
    """Colour limits: ``(-m, m)`` for signed maps, ``(0, m)`` for magnitudes, ``m`` = max|a| (or its
    ``percentile``-th percentile, robust to a few extreme pixels); never zero width."""
    a = np.abs(np.asarray(attr, dtype=np.float64))
    finite = a[np.isfinite(a)]
    m = float(np.percentile(finite, percentile) if percentile is not None and finite.size else (finite.max() if finite.size else 0.0))
    m = m if m > 0 else 1.0
    return (-m, m) if signed else (0.0, m)


def to_rgba(attr: Any, *, signed: bool = True, percentile: float | None = None) -> np.ndarray:
    """``(H, W, 4)`` RGBA image of one map with the conventions above."""
    a = to_2d(attr, signed=signed)
    low, high = limits(a, signed=signed, percentile=percentile)
    normed = np.clip((a - low) / (high - low), 0.0, 1.0)
    return plt.get_cmap(SIGNED_CMAP if signed else MAGNITUDE_CMAP)(normed)


def overlay(image: Any, attr: Any, *, signed: bool = True, alpha: float = 0.6) -> np.ndarray:
    """The input in grey under the heatmap: ``(H, W, 3)`` RGB in [0, 1]."""
    img = np.asarray(image, dtype=np.float32)
    img = img.mean(axis=-1) if img.ndim == 3 else img
    span = img.max() - img.min()
    grey = (img - img.min()) / span if span > 0 else np.zeros_like(img)
    heat = to_rgba(attr, signed=signed)[..., :3]
    return (1 - alpha) * np.repeat(grey[..., None], 3, axis=-1) + alpha * heat


def signed_heatmap(attr: Any, ax: Any = None, *, percentile: float | None = None, title: str | None = None) -> Any:
    """Draw a signed map (diverging colormap, symmetric limits) on ``ax``; returns the image."""
    ax = ax or plt.gca()
    a = to_2d(attr, signed=True)
    low, high = limits(a, signed=True, percentile=percentile)
    shown = ax.imshow(a, cmap=SIGNED_CMAP, vmin=low, vmax=high)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return shown


def magnitude_heatmap(attr: Any, ax: Any = None, *, percentile: float | None = None, title: str | None = None) -> Any:
    """Draw a magnitude map (sequential colormap from 0) on ``ax``; returns the image."""
    ax = ax or plt.gca()
    a = to_2d(attr, signed=False)
    low, high = limits(a, signed=False, percentile=percentile)
    shown = ax.imshow(np.abs(a), cmap=MAGNITUDE_CMAP, vmin=low, vmax=high)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return shown
