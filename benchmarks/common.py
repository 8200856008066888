"""Shared helpers of the benchmark scripts: timing, the shipped model and its PyTorch twin."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def timeit(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> tuple[float, float, float]:
    """(min, median, max) wall time in ms of ``fn()`` (results blocked on), after ``warmup`` calls."""
    import jax

    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append((time.perf_counter() - start) * 1e3)
    return min(times), statistics.median(times), max(times)


def shipped_cnn_and_batch(batch: int) -> tuple[Any, Any, Any, str]:
    """The shipped MNIST CNN (or a random one if the checkpoint is absent) and ``batch`` digits."""
    import jax
    import numpy as np

    import xai_jax as xj

    try:
        model, variables = xj.models.load("mnist_cnn")
        origin = "shipped checkpoint"
    except Exception as err:
        model = xj.models.MnistCNN()
        variables = model.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))
        origin = f"random init ({type(err).__name__})"
    try:
        images, _ = xj.data.mnist("sample")
    except Exception:
        images = np.random.default_rng(0).uniform(size=(batch, 28, 28, 1)).astype(np.float32)
    return model, variables, np.asarray(images[:batch], np.float32), origin


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
