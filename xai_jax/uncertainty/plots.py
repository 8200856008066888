"""Pictures of uncertainty: reliability diagrams and in- vs out-of-distribution histograms.

NumPy + matplotlib only (headless); figures are made with pyplot so ``plt.show()`` displays them in
a notebook.  Pass ``ax=`` to draw into an existing axes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..core import InputError
from .calibration import ReliabilityBins

__all__ = ["reliability_diagram", "uncertainty_histogram"]


def reliability_diagram(
    bins: ReliabilityBins,
    *,
    ax: Any = None,
    title: str | None = None,
    path: str | Path | None = None,
    show_counts: bool = True,
) -> Any:
    """Accuracy per confidence bin against the diagonal (Guo et al. 2017, Fig. 1, bottom row).

    Bars are the accuracy of each bin; the hatched part is the gap to the bin's mean confidence
    (red: overconfident, bin below the diagonal; cyan: underconfident).  **Empty bins are masked**
    (no bar; the seed drew a histogram of true-class probabilities instead).  ECE and MCE are in the
    legend; with ``show_counts`` each bar is labelled with its number of samples.

    Args:
      bins: :func:`~xai_jax.uncertainty.reliability_bins` of a split.
      ax: draw here (a new figure otherwise).
      path: save the figure as PNG when given.

    Returns:
      The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    edges = np.asarray(bins.edges, np.float64)
    counts = np.asarray(bins.counts)
    accuracy = np.ma.masked_invalid(np.asarray(bins.accuracy, np.float64))
    confidence = np.ma.masked_invalid(np.asarray(bins.confidence, np.float64))
    if edges.ndim != 1 or len(edges) != len(counts) + 1:
        raise InputError("bins must come from reliability_bins (edges of length M + 1, M counts).")
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 4.0))
    else:
        fig = ax.figure
    width = np.diff(edges)
    left = edges[:-1]
    filled = ~np.ma.getmaskarray(accuracy)
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="perfect calibration")
    ax.bar(
        left[filled],
        accuracy[filled],
        width=width[filled],
        align="edge",
        color="tab:blue",
        edgecolor="k",
        lw=0.5,
        label="accuracy",
    )
    gap = (confidence - accuracy)[filled]
    ax.bar(
        left[filled],
        gap,
        bottom=accuracy[filled],
        width=width[filled],
        align="edge",
        color=np.where(gap > 0, "tab:red", "tab:cyan"),
        alpha=0.35,
        hatch="//",
        edgecolor="tab:red",
        lw=0.5,
        label="gap to confidence",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_box_aspect(1)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    handles, labels = ax.get_legend_handles_labels()
    labels = [*labels, f"ECE {100 * float(bins.ece):.2f}%  MCE {100 * float(bins.mce):.2f}%"]
    handles = [*handles, plt.Line2D([], [], ls="none")]
    ax.legend(handles, labels, loc="upper left", fontsize=7)
    if show_counts:  # samples per bin, above each bar: where the ECE's weight sits
        for x0, w, top, n in zip(
            left[filled], width[filled], np.maximum(accuracy[filled], confidence[filled]), counts[filled]
        ):
            ax.text(
                x0 + w / 2, min(float(top) + 0.01, 1.0), str(int(n)), ha="center", va="bottom", fontsize=5, rotation=90
            )
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, format="png", dpi=100)
    return fig


def uncertainty_histogram(
    values: Mapping[str, Any],
    *,
    ax: Any = None,
    bins: int = 30,
    xlabel: str = "uncertainty",
    title: str | None = None,
    path: str | Path | None = None,
) -> Any:
    """Overlaid, density-normalised histograms of an uncertainty score per data set (e.g.
    ``{"test digits": mi_in, "rotated 90°": mi_rot, "noise": mi_noise}``), on common bins."""
    import matplotlib.pyplot as plt

    arrays = {name: np.asarray(v, np.float64).ravel() for name, v in values.items()}
    if not arrays or any(a.size == 0 for a in arrays.values()):
        raise InputError("values must map names to non-empty arrays of scores.")
    everything = np.concatenate(list(arrays.values()))
    lo, hi = float(np.nanmin(everything)), float(np.nanmax(everything))
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.8, 3.2))
    else:
        fig = ax.figure
    for name, a in arrays.items():
        ax.hist(
            a, bins=edges, density=True, histtype="stepfilled", alpha=0.35, label=f"{name} (median {np.median(a):.3g})"
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, format="png", dpi=100)
    return fig
