"""A samples × methods grid: one row per input, the input first, then one column per method.

Rows are samples and columns are methods (not the transpose) because the question a grid answers is
"how do the methods differ on the same digit": reading along a row compares methods on one input, and
the column title names the method once at the top.  Each panel is scaled on its own (colours are
relative within a map, ``±max|a|``), because methods differ in units by orders of magnitude.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from .heatmap import as_display_image, frame, magnitude_heatmap, signed_heatmap


def prediction_title(label: Any, prediction: Any, probability: Any | None = None) -> str:
    """``"label 7 / pred 7 (99.8%)"``; a label of ``None`` or below 0 is shown as ``?``."""
    shown = "?" if label is None or int(label) < 0 else str(int(label))
    text = f"label {shown} / pred {int(prediction)}"
    return text if probability is None else f"{text} ({100 * float(probability):.1f}%)"


def show_input(image: Any, ax: Any, title: str | None = None) -> Any:
    """Draw an input image (grey ``(H, W[, 1])`` or RGB ``(H, W, 3)``) on ``ax`` without axes."""
    img = as_display_image(image)
    shown = ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    frame(ax)
    if title:
        ax.set_title(title, fontsize=7)
    return shown


def method_grid(
    images: Any,
    maps: Mapping[str, Any],
    *,
    signed: Mapping[str, bool] | None = None,
    row_titles: Sequence[str] | None = None,
    path: str | Path | None = None,
    percentile: float | None = None,
    cell: float = 1.4,
    dpi: int = 100,
) -> Any:
    """Figure with one row per sample: the input, then each method's map (column title = method name).

    Args:
      images: ``(B, H, W)``, ``(B, H, W, 1)`` or ``(B, H, W, 3)``; jax or numpy.
      maps: method name -> ``(B, H', W')`` or ``(B, H', W', C)`` maps (a map may have its own
        resolution, e.g. a layer-resolution CAM).
      signed: method name -> whether the map is signed (diverging colormap, default) or a
        magnitude (sequential colormap).
      row_titles: one title per sample, shown above its input (e.g. ``prediction_title(...)``).
      path: save the figure there as PNG (``dpi`` dots per inch; the image is ``cell`` inches per
        panel) when given.
      percentile: robust colour limits (see ``heatmap.limits``).

    Returns:
      The ``matplotlib.figure.Figure``, made with pyplot so that ``plt.show()`` displays it in a
      notebook; close it (``plt.close(fig)``) when done in a loop.
    """
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    if images.ndim not in (3, 4) or len(images) == 0:
        raise InputError(f"images must be a non-empty batch (B, H, W[, C]); got shape {images.shape}.")
    names = list(maps)
    arrays = {name: np.asarray(maps[name]) for name in names}
    for name, value in arrays.items():
        if value.ndim not in (3, 4) or len(value) != len(images):
            raise InputError(
                f"map {name!r} has shape {value.shape}; expected ({len(images)}, H, W[, C]), one map per image."
            )
    if row_titles is not None and len(row_titles) != len(images):
        raise InputError(f"{len(row_titles)} row titles for {len(images)} images.")
    signed = dict(signed or {})
    rows, cols = len(images), 1 + len(names)
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols, cell * rows + 0.3), squeeze=False, dpi=dpi)
    for i in range(rows):
        show_input(images[i], axes[i, 0], row_titles[i] if row_titles is not None else ("input" if i == 0 else None))
        for j, name in enumerate(names):
            draw = signed_heatmap if signed.get(name, True) else magnitude_heatmap
            draw(arrays[name][i], axes[i, j + 1], percentile=percentile, title=name if i == 0 else None)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=dpi, format="png")
    return fig
