"""Occlusion sensitivity.

Zeiler & Fergus (2014), "Visualizing and Understanding Convolutional Networks": slide a window of
``baseline`` values over the input and record how much the target output drops,
``A_i = mean_{windows W ∋ i} (f_c(x) - f_c(x with W set to baseline))``.  Captum's ``Occlusion``
semantics: window positions ``ceil((n - w)/s) + 1`` per axis starting at 0 (the last window may be
cut off by the border), attribution averaged over the windows covering each element.  All windows
of a batch run as vmapped forward passes in chunks of ``batch_size`` windows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import Baseline, ChunkSize, InputError, Inputs, OptionContext, Problem, chunked_sum, method
from ..core.checks import check_int_tuple


def window_starts(shape: Sequence[int], window: Sequence[int], strides: Sequence[int]) -> np.ndarray:
    """``(K, ndim)`` start offsets of every window position (Captum's enumeration)."""
    counts = [int(np.ceil((n - w) / s)) + 1 for n, w, s in zip(shape, window, strides)]
    grids = [np.arange(c) * s for c, s in zip(counts, strides)]
    return np.array(list(itertools.product(*grids)), np.int32).reshape(-1, len(shape))


def _normalise(name: str, value: Any, x_shape: Sequence[int]) -> tuple[int, ...]:
    """Window or strides as one positive int per non-batch axis.  For NHWC images an int or an
    ``(h, w)`` pair covers every channel at once (Captum's ``(C, h, w)``)."""
    sample_shape = tuple(x_shape[1:])
    image = len(sample_shape) == 3
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value) if image else (value,) * len(sample_shape)
    values = check_int_tuple(name, value)
    if len(values) == 2 and image:
        values = (*values, sample_shape[2] if name == "window" else 1)
    if len(values) != len(sample_shape):
        raise InputError(
            f"{name} {tuple(values)} must give one size per non-batch axis of x {sample_shape} (or (h, w) for images)."
        )
    return values


def _check_windows(ctx: OptionContext) -> dict[str, Any]:
    shape = ctx.inputs.x.shape
    window = _normalise("window", ctx.options["window"], shape)
    strides = _normalise("strides", ctx.options["strides"], shape)
    if any(w > n for w, n in zip(window, shape[1:])):
        raise InputError(f"window {window} is larger than a sample {tuple(shape[1:])}.")
    return {"window": window, "strides": strides}


@method(
    "occlusion",
    family="perturbation",
    signed=True,
    report_options={"window": (4, 4), "strides": (2, 2)},
    validate=_check_windows,
)
def occlusion(
    problem: Problem,
    inputs: Inputs,
    *,
    window: Any,
    strides: Any = 1,
    baseline: Baseline = 0.0,
    batch_size: ChunkSize = "auto",
) -> jax.Array:
    """Occlusion ([zeiler2014]_; Captum's ``Occlusion``): the drop of the target when a window of the
    input is replaced by the baseline, averaged over the windows covering each element.

    Args:
      window: window shape over the non-batch axes of ``x`` (for NHWC images an int ``k`` or ``(h, w)``
        covers all channels at once, Captum's ``(C, h, w)``).
      strides: window step per axis (int or tuple, same convention).
      baseline: value put inside the window: a scalar, one sample's shape, or one baseline per sample
        (``x``'s shape, as Captum's per-example baselines).
      batch_size: window positions evaluated at once (each a forward pass of the whole batch):
        ``"auto"`` from the memory budget, ``None`` all at once.

    Example:
      >>> attr = xj.occlusion(model, variables, x, window=(7, 7), strides=(7, 7))
      >>> attr.shape == x.shape
      True
    """
    x = inputs.x
    indices = problem.class_indices(inputs)
    f = problem.scalar_fn(inputs, indices)
    reference = f(x)
    coords = [jax.lax.broadcasted_iota(jnp.int32, x.shape[1:], axis) for axis in range(x.ndim - 1)]

    def window_mask(start: jax.Array) -> jax.Array:
        inside = [(c >= start[i]) & (c < start[i] + window[i]) for i, c in enumerate(coords)]
        return jnp.logical_and.reduce(jnp.stack(inside)).astype(x.dtype)

    def contribution(start: jax.Array) -> tuple[jax.Array, jax.Array]:
        mask = window_mask(start)
        occluded = x * (1 - mask) + baseline * mask
        drop = reference - f(occluded)
        return drop.reshape(-1, *[1] * (x.ndim - 1)) * mask, mask

    starts = jnp.asarray(window_starts(x.shape[1:], window, strides))
    total, counts = chunked_sum(contribution, starts, chunk_size=batch_size)
    return jnp.where(counts > 0, total / jnp.maximum(counts, 1), 0.0)
