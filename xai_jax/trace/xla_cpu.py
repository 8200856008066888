"""Gradient rules that keep XLA:CPU fast: same values, same gradients, faster backward passes.

Each rule is an interpreter rule (:func:`xai_jax.trace.rewrite`) replacing one primitive by a
``jax.custom_vjp`` function whose forward is the original equation and whose backward computes
the same gradient in a form XLA:CPU (jaxlib 0.10.2) compiles well.  Measured on this project's CPU
machines (medians of jitted runs):

* **Max pooling** (:data:`FAST_GRADIENT_RULES`, every gradient method).  XLA differentiates
  ``reduce_window_max`` (``nn.max_pool``) with ``select_and_scatter_add``, a scatter with one index
  per input element: 398 ms against 132 ms for :func:`max_pool_first_max_gradient` on a
  (1600, 28, 28, 32) input.  The window is unrolled into a stack of strided slices (one per window
  offset); the gradient goes to the *first* maximal element of each window -- the element XLA's own
  gradient selects, so gradients are bit-identical, ties included -- and flows back through the
  slices' transpose (pads and adds, no scatter).
* **Convolution input gradient inside a loop** (:data:`LOOP_GRADIENT_RULES`, feature
  visualization and DeepDream, which differentiate inside ``lax.scan``).  The input gradient of a
  convolution in a ``lax.scan``/``while``/``cond`` body is 10-16x slower than outside a loop (a
  (10, 28, 28, 32) 3x3 conv: 150 ms vs 10 ms; one pixel-space AM update on the MNIST CNN: 200 ms vs
  19 ms).  JAX's transpose rule convolves with the kernel *reversed* and its I/O dimensions swapped
  through the dimension numbers (``b01f_01oi->b01f``); XLA hoists the loop-invariant reverse out of
  the loop, the hoisted value gets the default layout, and the convolution in the loop no longer
  matches the layout XLA:CPU's fast (Eigen) convolution needs, so it falls back to a naive loop nest.
  :func:`loop_friendly_conv_rule` builds the input gradient with the kernel reversed *and
  physically transposed* (materialised behind an ``optimization_barrier``), so the backward
  convolution has canonical dimension numbers wherever it is placed.  The kernel gradient is JAX's
  own; grouped convolutions keep JAX's rule.  Equal to ``jax.grad`` within 1e-5 on 6 layouts,
  strides, paddings and dilations (tested).
* **Transposed-convolution kernel gradient** (:data:`TRAINING_GRADIENT_RULES`, training the
  zoo's generators).  XLA:CPU's kernel gradient of an ``lhs_dilation`` convolution
  (``nn.ConvTranspose``) is 5.6x slower than the same gradient computed on the explicitly
  zero-dilated input, which is a plain convolution (:func:`conv_transpose_kernel_rule`); value and
  input gradient are the original's.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .walker import Rule, bind_original

__all__ = [
    "FAST_GRADIENT_RULES",
    "LOOP_GRADIENT_RULES",
    "TRAINING_GRADIENT_RULES",
    "conv_transpose_kernel_rule",
    "loop_friendly_conv_rule",
    "max_pool_first_max_gradient",
    "reduce_window_max_rule",
    "window_slices",
]


# ---------------------------------------------------------------------------------------------------
# Max pooling without a scatter
# ---------------------------------------------------------------------------------------------------


def window_slices(
    x: jax.Array,
    window: Sequence[int],
    strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
    dilation: Sequence[int],
    out_shape: Sequence[int],
) -> jax.Array:
    """Stack of every window offset's strided slice: shape ``(prod(window), *out_shape)``."""
    padded = lax.pad(x, jnp.array(-jnp.inf, x.dtype), [(lo, hi, 0) for lo, hi in padding])
    slices = []
    for offset in itertools.product(*(range(w) for w in window)):
        start = [o * d for o, d in zip(offset, dilation)]
        limit = [s + (n - 1) * st + 1 for s, n, st in zip(start, out_shape, strides)]
        slices.append(lax.slice(padded, start, limit, strides))
    return jnp.stack(slices)


def max_pool_first_max_gradient(
    x: jax.Array,
    *,
    window_dimensions: Sequence[int],
    window_strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
    base_dilation: Sequence[int],
    window_dilation: Sequence[int],
) -> jax.Array:
    """``lax.reduce_window_max`` whose gradient goes to the first maximum of each window."""
    if any(d != 1 for d in base_dilation):  # rare (transposed pooling); keep XLA's own gradient
        return lax.reduce_window_max_p.bind(
            x,
            window_dimensions=tuple(window_dimensions),
            window_strides=tuple(window_strides),
            padding=tuple(map(tuple, padding)),
            base_dilation=tuple(base_dilation),
            window_dilation=tuple(window_dilation),
        )
    return _pool(x, tuple(window_dimensions), tuple(window_strides), tuple(map(tuple, padding)), tuple(window_dilation))


def _reduce_window_max(x: jax.Array, window: Any, strides: Any, padding: Any, dilation: Any) -> jax.Array:
    return lax.reduce_window_max_p.bind(
        x,
        window_dimensions=window,
        window_strides=strides,
        padding=padding,
        base_dilation=(1,) * x.ndim,
        window_dilation=dilation,
    )


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _pool(x: jax.Array, window: Any, strides: Any, padding: Any, dilation: Any) -> jax.Array:
    return _reduce_window_max(x, window, strides, padding, dilation)


def _pool_fwd(x: jax.Array, window: Any, strides: Any, padding: Any, dilation: Any) -> tuple[jax.Array, jax.Array]:
    return _reduce_window_max(x, window, strides, padding, dilation), x


def _pool_bwd(window: Any, strides: Any, padding: Any, dilation: Any, x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    stack, transpose = jax.vjp(lambda z: window_slices(z, window, strides, padding, dilation, g.shape), x)
    first = jnp.argmax(stack, axis=0)  # the first maximum, the element XLA's own gradient selects
    offsets = jnp.arange(stack.shape[0]).reshape(-1, *[1] * g.ndim)
    return transpose(jnp.where(offsets == first, g, jnp.zeros_like(g)))


_pool.defvjp(_pool_fwd, _pool_bwd)


def reduce_window_max_rule(eqn: Any, invals: Sequence[Any]) -> jax.Array:
    """Interpreter rule replacing ``reduce_window_max`` by :func:`max_pool_first_max_gradient`."""
    return max_pool_first_max_gradient(invals[0], **eqn.params)


# ---------------------------------------------------------------------------------------------------
# Convolution input gradient that stays fast inside loops
# ---------------------------------------------------------------------------------------------------


def _dilate(shape: Sequence[int], dilation: Sequence[int]) -> np.ndarray:
    """Extent of ``shape`` after dilating by ``dilation`` (0 stays 0)."""
    sizes = np.asarray(shape)
    return np.where(sizes == 0, 0, 1 + np.asarray(dilation) * (sizes - 1))


def _lhs_gradient(g: jax.Array, rhs: jax.Array, lhs_shape: Sequence[int], params: dict[str, Any]) -> jax.Array:
    lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
    lhs_sdims, rhs_sdims, out_sdims = lhs_spec[2:], rhs_spec[2:], out_spec[2:]
    window_strides, lhs_dilation, rhs_dilation = (
        params["window_strides"],
        params["lhs_dilation"],
        params["rhs_dilation"],
    )
    in_spatial = np.take(lhs_shape, lhs_sdims)
    window = np.take(rhs.shape, rhs_sdims)
    out_spatial = np.take(g.shape, out_sdims)
    pad_before = _dilate(window, rhs_dilation) - np.asarray([lo for lo, _ in params["padding"]]) - 1
    pad_after = (
        _dilate(in_spatial, lhs_dilation)
        + _dilate(window, rhs_dilation)
        - 1
        - _dilate(out_spatial, window_strides)
        - pad_before
    )
    perm = list(range(rhs.ndim))
    perm[rhs_spec[0]], perm[rhs_spec[1]] = perm[rhs_spec[1]], perm[rhs_spec[0]]
    kernel = lax.transpose(lax.rev(rhs, tuple(rhs_sdims)), perm)  # reversed, O and I swapped in memory
    kernel = lax.optimization_barrier(kernel)  # keep XLA from folding the transpose back into dim labels
    if kernel.dtype != g.dtype:
        kernel = kernel.astype(g.dtype)
    out = lax.conv_general_dilated(
        g,
        kernel,
        window_strides=tuple(lhs_dilation),
        padding=[(int(a), int(b)) for a, b in zip(pad_before, pad_after)],
        lhs_dilation=tuple(window_strides),
        rhs_dilation=tuple(rhs_dilation),
        dimension_numbers=lax.ConvDimensionNumbers(out_spec, rhs_spec, lhs_spec),
        precision=params.get("precision"),
        preferred_element_type=params.get("preferred_element_type"),
    )
    return out.astype(g.dtype) if out.dtype != g.dtype else out


def loop_friendly_conv_rule(eqn: Any, invals: Sequence[Any]) -> jax.Array:
    """Interpreter rule for ``conv_general_dilated`` with a loop-friendly input gradient."""
    params = dict(eqn.params)
    if params.get("feature_group_count", 1) != 1 or params.get("batch_group_count", 1) != 1:
        return bind_original(eqn, invals)

    @jax.custom_vjp
    def conv(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
        return bind_original(eqn, [lhs, rhs])

    def fwd(lhs: jax.Array, rhs: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        return conv(lhs, rhs), (lhs, rhs)

    def bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
        lhs, rhs = res
        _, rhs_vjp = jax.vjp(lambda r: bind_original(eqn, [lhs, r]), rhs)
        return _lhs_gradient(g, rhs, lhs.shape, params).astype(lhs.dtype), rhs_vjp(g)[0]

    conv.defvjp(fwd, bwd)
    return conv(*invals)


# ---------------------------------------------------------------------------------------------------
# Transposed-convolution kernel gradient
# ---------------------------------------------------------------------------------------------------


def conv_transpose_kernel_rule(eqn: Any, invals: Sequence[Any]) -> Any:
    """``conv_general_dilated`` with ``lhs_dilation`` (``nn.ConvTranspose``): same value and input
    gradient, kernel gradient computed on the explicitly zero-dilated input (a plain convolution)."""
    p = eqn.params
    if all(d == 1 for d in p["lhs_dilation"]):
        return bind_original(eqn, invals)

    def original(x: jax.Array, k: jax.Array) -> jax.Array:
        return lax.conv_general_dilated_p.bind(x, k, **p)

    def dilated(x: jax.Array, k: jax.Array) -> jax.Array:
        cfg = [(0, 0, 0)] * x.ndim
        for (lo, hi), d, ax in zip(p["padding"], p["lhs_dilation"], p["dimension_numbers"].lhs_spec[2:]):
            cfg[ax] = (lo, hi, d - 1)
        xp = lax.pad(x, jnp.zeros((), x.dtype), cfg)
        params = dict(p, padding=tuple((0, 0) for _ in p["padding"]), lhs_dilation=(1,) * len(p["lhs_dilation"]))
        return lax.conv_general_dilated_p.bind(xp, k, **params)

    @jax.custom_vjp
    def conv(x: jax.Array, k: jax.Array) -> jax.Array:
        return original(x, k)

    def fwd(x: jax.Array, k: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        return original(x, k), (x, k)

    def bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
        x, k = res
        dx = jax.vjp(lambda x_: original(x_, k), x)[1](g)[0]
        dk = jax.vjp(lambda k_: dilated(x, k_), k)[1](g)[0]
        return dx, dk

    conv.defvjp(fwd, bwd)
    return conv(*invals)


# ---------------------------------------------------------------------------------------------------
# Rule tables
# ---------------------------------------------------------------------------------------------------

#: The first-max pooling gradient (no scatter): every gradient method.
FAST_GRADIENT_RULES: dict[str, Rule] = {"reduce_window_max": reduce_window_max_rule}
#: First-max pooling plus the loop-friendly convolution input gradient: gradients inside ``lax.scan``.
LOOP_GRADIENT_RULES: dict[str, Rule] = {**FAST_GRADIENT_RULES, "conv_general_dilated": loop_friendly_conv_rule}
#: First-max pooling plus the fast transposed-convolution kernel gradient: training.
TRAINING_GRADIENT_RULES: dict[str, Rule] = {**FAST_GRADIENT_RULES, "conv_general_dilated": conv_transpose_kernel_rule}
