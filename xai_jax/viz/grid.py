"""A samples × methods grid: one row per input, the input first, then one column per method."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .heatmap import magnitude_heatmap, signed_heatmap


def show_input(image: Any, ax: Any) -> None:
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    ax.imshow(np.clip(img, 0, 1), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_axis_off()


def method_grid(
    images: Any,
    maps: Mapping[str, Any],
    *,
    signed: Mapping[str, bool] | None = None,
    row_titles: Sequence[str] | None = None,
    path: str | Path | None = None,
    cell: float = 1.4,
) -> Any:
    """Figure with rows = samples, columns = input + each method (maps ``(B, H, W[, C])``).

    Each panel is scaled on its own (a map's colours are relative within the map); ``signed[name]``
    picks the diverging (default) or the magnitude colormap.  Saves a PNG when ``path`` is given.
    """
    images = np.asarray(images)
    names = list(maps)
    rows, cols = len(images), 1 + len(names)
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols, cell * rows + 0.3), squeeze=False)
    for i in range(rows):
        show_input(images[i], axes[i, 0])
        if row_titles is not None:
            axes[i, 0].set_title(row_titles[i], fontsize=7)
        for j, name in enumerate(names):
            draw = signed_heatmap if (signed or {}).get(name, True) else magnitude_heatmap
            draw(np.asarray(maps[name])[i], axes[i, j + 1], title=name if i == 0 else None)
    if row_titles is None:
        axes[0, 0].set_title("input", fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
