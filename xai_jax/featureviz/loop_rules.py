"""Gradient rules that keep XLA:CPU fast *inside* a loop (``lax.scan``/``while``/``cond``).

Measured here (jaxlib 0.10.2, CPU): the input gradient of a convolution inside a ``lax.scan`` body is
10-16x slower than the same gradient outside a loop (a (10, 28, 28, 32) 3x3 conv: 150 ms vs 10 ms;
one update of pixel-space AM on the MNIST CNN: 200 ms vs 19 ms).  JAX's transpose rule convolves
with the kernel *reversed* and its I/O dimensions swapped through the dimension numbers
(``b01f_01oi->b01f``); XLA hoists the loop-invariant reverse out of the loop, the hoisted value
gets the default layout, and the convolution inside the loop then no longer matches the layout
XLA:CPU's fast (Eigen) convolution needs, so it falls back to a naive loop nest.

The rule below gives ``conv_general_dilated`` the same forward and the same gradients, but builds
the input gradient with the kernel reversed *and physically transposed* (materialised behind an
``optimization_barrier``), so the backward convolution has canonical dimension numbers wherever it
is placed.  The kernel gradient is JAX's own.  Grouped convolutions keep JAX's rule.  Applied with
:func:`xai_jax.trace.rewrite`; gradients equal ``jax.grad`` of the original (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax import lax

from ..trace.interpreter import bind_original
from ..trace.pooling import FAST_GRADIENT_RULES


def _dilate(shape: Sequence[int], dilation: Sequence[int]) -> np.ndarray:
    shape = np.asarray(shape)
    return np.where(shape == 0, 0, 1 + np.asarray(dilation) * (shape - 1))


def _lhs_gradient(g: jax.Array, rhs: jax.Array, lhs_shape: Sequence[int], params: dict[str, Any]) -> jax.Array:
    lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
    lhs_sdims, rhs_sdims, out_sdims = lhs_spec[2:], rhs_spec[2:], out_spec[2:]
    window_strides, lhs_dilation, rhs_dilation = params["window_strides"], params["lhs_dilation"], params["rhs_dilation"]
    in_spatial = np.take(lhs_shape, lhs_sdims)
    window = np.take(rhs.shape, rhs_sdims)
    out_spatial = np.take(g.shape, out_sdims)
    pad_before = _dilate(window, rhs_dilation) - np.asarray([lo for lo, _ in params["padding"]]) - 1
    pad_after = _dilate(in_spatial, lhs_dilation) + _dilate(window, rhs_dilation) - 1 - _dilate(out_spatial, window_strides) - pad_before
    perm = list(range(rhs.ndim))
    perm[rhs_spec[0]], perm[rhs_spec[1]] = perm[rhs_spec[1]], perm[rhs_spec[0]]
    kernel = lax.transpose(lax.rev(rhs, tuple(rhs_sdims)), perm)  # reversed, O and I swapped in memory
    kernel = lax.optimization_barrier(kernel)  # keep XLA from folding the transpose back into dim labels
    if kernel.dtype != g.dtype:
        kernel = kernel.astype(g.dtype)
    out = lax.conv_general_dilated(
        g, kernel, window_strides=tuple(lhs_dilation), padding=[(int(a), int(b)) for a, b in zip(pad_before, pad_after)],
        lhs_dilation=tuple(window_strides), rhs_dilation=tuple(rhs_dilation),
        dimension_numbers=lax.ConvDimensionNumbers(out_spec, rhs_spec, lhs_spec),
        precision=params.get("precision"), preferred_element_type=params.get("preferred_element_type"),
    )
    return out.astype(g.dtype) if out.dtype != g.dtype else out


def conv_rule(eqn: Any, invals: Sequence[Any]) -> jax.Array:
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


LOOP_GRADIENT_RULES = {**FAST_GRADIENT_RULES, "conv_general_dilated": conv_rule}
"""First-max pooling gradient (no scatter) plus the loop-friendly convolution gradient."""
