"""Pictures of metric results (matplotlib, headless): perturbation curves per method, the MPRT cascade
(similarity per randomised layer) and the cascade of explanation maps (Adebayo et al. 2018, Fig. 2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _figure(ax: Any, size: tuple[float, float]) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size)
    return fig, ax


def _finish(fig: Any, path: str | Path | None) -> Any:
    if path is not None:
        import matplotlib.pyplot as plt

        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def _mean_sem(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values, np.float64)
    n = values.shape[0]
    sem = values.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(values.shape[1:])
    return values.mean(axis=0), sem


def plot_curves(
    curves: Mapping[str, Any],
    *,
    title: str = "",
    ylabel: str = "score",
    xlabel: str = "fraction perturbed",
    path: str | Path | None = None,
    ax: Any = None,
) -> Any:
    """Mean ± standard error of each method's perturbation curve (``{method: Curve}``, curves with
    ``fractions (K,)`` and ``scores (B, K)``).  Saves to ``path`` when given; returns the figure."""
    fig, ax = _figure(ax, (5.5, 3.8))
    for name, curve in curves.items():
        mean, sem = _mean_sem(np.asarray(curve.scores))
        f = np.asarray(curve.fractions)
        ax.plot(f, mean, label=name)
        ax.fill_between(f, mean - sem, mean + sem, alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_mprt_cascade(
    results: Mapping[str, Any],
    *,
    title: str = "Model parameter randomisation (cascading)",
    ylabel: str = "similarity to the original explanation",
    path: str | Path | None = None,
    ax: Any = None,
) -> Any:
    """Similarity to the original explanation (mean ± standard error over samples) as the layers are
    randomised, one line per method (``{method: MPRTResult}``): the picture of Adebayo et al.'s Fig. 4.
    The first point is the unrandomised model (similarity 1 by definition)."""
    fig, ax = _figure(ax, (6.5, 3.8))
    labels: Sequence[str] = ()
    for name, result in results.items():
        scores = np.asarray(result.scores).T  # (B, L)
        full = np.concatenate([np.ones((scores.shape[0], 1)), scores], axis=1)
        mean, sem = _mean_sem(full)
        steps = np.arange(full.shape[1])
        ax.errorbar(steps, mean, yerr=sem, marker="o", capsize=2, label=name)
        labels = ("original", *result.layers)
    ax.set_xticks(np.arange(len(labels)))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax.axhline(0.0, color="gray", lw=0.8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_mprt_maps(results: Mapping[str, Any], *, sample: int = 0, path: str | Path | None = None) -> Any:
    """The cascade of explanation maps of one sample, one row per method (``{method: MPRTResult}`` run
    with ``keep_explanations=True``): original, then each randomisation stage (Adebayo et al.'s Fig. 2).
    Each map is shown as its own magnitude (the metric's preprocessing already applied)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [(name, r) for name, r in results.items() if r.explanations is not None]
    if not rows:
        raise ValueError("plot_mprt_maps needs MPRT results computed with keep_explanations=True.")
    cols = rows[0][1].explanations.shape[0]
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.3 * cols, 1.4 * len(rows) + 0.4), squeeze=False)
    for i, (name, result) in enumerate(rows):
        maps = np.asarray(result.explanations[:, sample])
        if maps.ndim == 4:
            maps = maps.sum(axis=-1)
        labels = ("original", *result.layers)
        for j in range(cols):
            ax = axes[i, j]
            m = np.abs(maps[j])
            ax.imshow(m, cmap="magma", vmin=0, vmax=m.max() if m.max() > 0 else 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(labels[j], fontsize=7, rotation=30)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle("Cascading randomisation, from the output layer down", fontsize=9)
    return _finish(fig, path)
