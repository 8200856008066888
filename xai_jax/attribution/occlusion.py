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
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import InputError, Inputs, Problem, Target, chunked_sum, compiled, prepare, register
from ..core.model import Model


def window_starts(shape: Sequence[int], window: Sequence[int], strides: Sequence[int]) -> np.ndarray:
    """``(K, ndim)`` start offsets of every window position (Captum's enumeration)."""
    counts = [int(np.ceil((n - w) / s)) + 1 for n, w, s in zip(shape, window, strides)]
    grids = [np.arange(c) * s for c, s in zip(counts, strides)]
    return np.array(list(itertools.product(*grids)), np.int32).reshape(-1, len(shape))


def _normalise(name: str, value: int | Sequence[int], x_shape: Sequence[int]) -> tuple[int, ...]:
    sample_shape = tuple(x_shape[1:])
    values = (value,) * len(sample_shape) if isinstance(value, (int, np.integer)) else tuple(int(v) for v in value)
    if len(values) == 2 and len(sample_shape) == 3:  # (h, w) on NHWC images: all channels at once
        values = (*values, sample_shape[2] if name == "window" else 1)
    if len(values) != len(sample_shape):
        raise InputError(f"{name} {tuple(values)} must give one size per non-batch axis of x {sample_shape} (or (h, w) for images).")
    if any(v < 1 for v in values):
        raise InputError(f"{name} must be positive; got {values}.")
    return values


@compiled(static=("window", "strides", "batch_size"))
def _occlusion(problem: Problem, inputs: Inputs, baseline: jax.Array, *, window: tuple[int, ...], strides: tuple[int, ...], batch_size: int | None) -> jax.Array:
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


@register("occlusion", family="perturbation", signed=True, defaults={"window": (4, 4), "strides": (2, 2)})
def occlusion(
    model: Model,
    variables: Any,
    x: Any,
    target: Target = None,
    *,
    window: int | Sequence[int],
    strides: int | Sequence[int] = 1,
    baseline: float | jax.Array = 0.0,
    batch_size: int | None = 64,
    model_kwargs: Mapping[str, Any] | None = None,
) -> jax.Array:
    """Occlusion (Zeiler & Fergus 2014; Captum's ``Occlusion``).

    Args:
      window: window shape over the non-batch axes of ``x`` (for NHWC images ``(h, w)`` means all
        channels at once, Captum's ``(C, h, w)``).
      strides: window step per axis (int or tuple, same convention).
      baseline: value put inside the window: a scalar or an array broadcastable to one sample.
      batch_size: window positions evaluated at once (each a forward pass of the whole batch).
    """
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    window_ = _normalise("window", window, inputs.x.shape)
    strides_ = _normalise("strides", strides, inputs.x.shape)
    if any(w > n for w, n in zip(window_, inputs.x.shape[1:])):
        raise InputError(f"window {window_} is larger than a sample {tuple(inputs.x.shape[1:])}.")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise InputError(f"batch_size must be a positive integer or None; got {batch_size!r}.")
    base = jnp.broadcast_to(jnp.asarray(baseline, inputs.x.dtype), inputs.x.shape[1:])
    return _occlusion(problem, inputs, base, window=window_, strides=strides_, batch_size=batch_size)
