"""Heatmaps of attributions: signed (diverging, symmetric around zero) and magnitude (sequential).

Why these conventions:

* Signed relevance (gradient, input × gradient, LRP, IG...) is drawn with a diverging colormap whose
  centre is zero and whose limits are symmetric, ``±max|a|``.  Asymmetric limits (matplotlib's default
  min..max) would paint zero relevance red or blue and make "for" and "against" incomparable between
  panels.  Zero is always the colormap's centre colour.
* Magnitudes (saliency, Grad-CAM, occlusion drop) are drawn with a sequential colormap from 0 to
  ``max|a|``; negative values have no meaning there and are shown by their absolute value.
* ``percentile=`` replaces ``max|a|`` by a percentile of ``|a|``: gradients often have a few extreme
  pixels that make the rest of the map look empty.  Values beyond the limit saturate.
* A channel axis ``(H, W, C)`` is reduced to ``(H, W)``: summed for signed maps (relevance is additive,
  so the sum is the relevance of the pixel) and summed in absolute value for magnitudes.
* All-zero and constant maps render without NaN or division warnings (the limit becomes 1); NaN
  entries are drawn in the colormap's "bad" colour (transparent) rather than poisoning the limits.

Nothing here switches matplotlib's backend: a headless process gets Agg on its own, and forcing it on
import would break inline figures in notebooks.  Files are written without a display.
"""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np

from ..core.errors import InputError

SIGNED_CMAP = "bwr"
MAGNITUDE_CMAP = "inferno"


def reduce_channels(attr: Any, *, signed: bool = True) -> np.ndarray:
    """One sample's map as ``(H, W)`` float: ``(H, W)`` as is, ``(H, W, C)`` reduced over ``C``.

    Signed maps are summed over channels; magnitude maps are ``sum |a|`` (and ``|a|`` for ``(H, W)``),
    so a magnitude is never negative.
    """
    a = np.asarray(attr, dtype=np.float64)
    if a.ndim == 3:
        a = a.sum(axis=-1) if signed else np.abs(a).sum(axis=-1)
    elif a.ndim == 2 and not signed:
        a = np.abs(a)
    if a.ndim != 2:
        raise InputError(
            f"expected one map of shape (H, W) or (H, W, C); got shape {np.shape(attr)}. "
            "Index the batch first (maps[i])."
        )
    return a


def limits(attr: Any, *, signed: bool = True, percentile: float | None = None) -> tuple[float, float]:
    """Colour limits of one map: ``(-m, m)`` if ``signed`` else ``(0, m)``.

    ``m`` is ``max|a|`` over the finite entries, or the ``percentile``-th percentile of ``|a|`` (robust
    to a few extreme pixels).  Never zero width: an all-zero map gets ``m = 1``, and a percentile that
    lands on 0 (a sparse map) falls back to ``max|a|``.
    """
    if percentile is not None and not 0 < percentile <= 100:
        raise InputError(f"percentile must be in (0, 100]; got {percentile}.")
    a = np.abs(np.asarray(attr, dtype=np.float64))
    finite = a[np.isfinite(a)]
    top = float(finite.max()) if finite.size else 0.0
    m = float(np.percentile(finite, percentile)) if percentile is not None and finite.size else top
    if not m > 0:
        m = top if top > 0 else 1.0
    return (-m, m) if signed else (0.0, m)


def _limits(a: np.ndarray, signed: bool, percentile: float | None, vmax: float | None) -> tuple[float, float]:
    """``limits`` of ``a`` unless the caller fixed ``vmax``."""
    if vmax is None:
        return limits(a, signed=signed, percentile=percentile)
    if not vmax > 0:
        raise InputError(f"vmax must be positive; got {vmax}.")
    return (-float(vmax), float(vmax)) if signed else (0.0, float(vmax))


def _normalise(a: np.ndarray, signed: bool, percentile: float | None, vmax: float | None) -> np.ndarray:
    """``a`` mapped to [0, 1] for a colormap; 0.5 is zero relevance for signed maps. NaN stays NaN,
    ±inf saturate."""
    low, high = _limits(a, signed, percentile, vmax)
    return np.clip((a - low) / (high - low), 0.0, 1.0)


def to_rgba(
    attr: Any,
    *,
    signed: bool = True,
    percentile: float | None = None,
    vmax: float | None = None,
    cmap: str | None = None,
) -> np.ndarray:
    """RGBA image ``(H, W, 4)`` float in [0, 1] of one map, with the conventions of this module.

    Returned as an array (not drawn) so that reports can save exact pixels and tests can check them:
    zero relevance of a signed map is ``cmap(0.5)``, ``+m`` is ``cmap(1.0)``, ``-m`` is ``cmap(0.0)``.
    ``vmax`` fixes ``m`` (e.g. shared across panels) instead of deriving it from the map.
    """
    a = reduce_channels(attr, signed=signed)
    colormap = matplotlib.colormaps[cmap or (SIGNED_CMAP if signed else MAGNITUDE_CMAP)]
    return colormap(_normalise(a, signed, percentile, vmax))


def as_display_image(image: Any) -> np.ndarray:
    """An input image as ``(H, W)`` grey or ``(H, W, 3)`` RGB in [0, 1] (min-max scaled if outside)."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (3, 4)):
        raise InputError(f"expected an image (H, W), (H, W, 1) or (H, W, 3); got shape {np.shape(image)}.")
    img = img[..., :3] if img.ndim == 3 else img
    img = np.nan_to_num(img, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(img.min()), float(img.max())
    if low < 0 or high > 1:  # e.g. ImageNet-normalised inputs: show them, scaled to [0, 1]
        img = (img - low) / (high - low) if high > low else np.zeros_like(img)
    return img


def overlay(
    image: Any,
    attr: Any,
    *,
    signed: bool = True,
    alpha: float = 0.7,
    fade: bool = True,
    percentile: float | None = None,
    vmax: float | None = None,
    cmap: str | None = None,
) -> np.ndarray:
    """The heatmap blended over the input: ``(H, W, 3)`` RGB float in [0, 1].

    With ``fade`` (default) the heatmap's opacity at a pixel is ``alpha * |a| / m``, so irrelevant
    pixels show the input unchanged and only relevant ones are tinted; without it the whole heatmap
    is laid over at opacity ``alpha`` (a white-centred diverging map then washes the input out).
    The map must have the image's height and width (upsample layer-resolution maps first).
    """
    if not 0 <= alpha <= 1:
        raise InputError(f"alpha must be in [0, 1]; got {alpha}.")
    img = as_display_image(image)
    a = reduce_channels(attr, signed=signed)
    if a.shape != img.shape[:2]:
        raise InputError(f"the map has shape {a.shape} but the image {img.shape[:2]}; upsample the map first.")
    base = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img
    heat = to_rgba(a, signed=signed, percentile=percentile, vmax=vmax, cmap=cmap)[..., :3]
    if fade:
        strength = (
            np.abs(_normalise(a, signed, percentile, vmax) * 2 - 1)
            if signed
            else _normalise(a, signed, percentile, vmax)
        )
        weight = alpha * np.nan_to_num(strength, nan=0.0)[..., None]
    else:
        weight = np.full((*a.shape, 1), alpha)
    return np.clip((1 - weight) * base + weight * heat, 0.0, 1.0)


def frame(ax: Any) -> None:
    """No ticks, a thin grey frame: an all-zero signed map is white and would vanish without it."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("0.8")
        spine.set_linewidth(0.6)


def _draw(
    attr: Any,
    ax: Any,
    signed: bool,
    percentile: float | None,
    vmax: float | None,
    cmap: str | None,
    title: str | None,
    colorbar: bool,
) -> Any:
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.gca()
    a = reduce_channels(attr, signed=signed)
    low, high = _limits(a, signed, percentile, vmax)
    shown = ax.imshow(
        a, cmap=cmap or (SIGNED_CMAP if signed else MAGNITUDE_CMAP), vmin=low, vmax=high, interpolation="nearest"
    )
    frame(ax)
    if title:
        ax.set_title(title, fontsize=8)
    if colorbar:
        ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    return shown


def signed_heatmap(
    attr: Any,
    ax: Any = None,
    *,
    percentile: float | None = None,
    vmax: float | None = None,
    cmap: str | None = None,
    title: str | None = None,
    colorbar: bool = False,
) -> Any:
    """Draw a signed map on ``ax`` (default: the current axes): diverging colormap, limits ``±m``.

    Returns the ``AxesImage``.  ``m`` is ``max|a|`` (or ``vmax``, or the ``percentile`` of ``|a|``).
    """
    return _draw(attr, ax, True, percentile, vmax, cmap, title, colorbar)


def magnitude_heatmap(
    attr: Any,
    ax: Any = None,
    *,
    percentile: float | None = None,
    vmax: float | None = None,
    cmap: str | None = None,
    title: str | None = None,
    colorbar: bool = False,
) -> Any:
    """Draw a magnitude map ``|a|`` on ``ax``: sequential colormap from 0 to ``m``. Returns the image."""
    return _draw(attr, ax, False, percentile, vmax, cmap, title, colorbar)
