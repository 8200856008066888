"""Gradients every family shares: of the target with respect to the input, and at a layer.

One backward pass of the summed targets gives every per-sample gradient (samples are independent in
inference mode).  The model runs through the trace engine with the fast gradient rules (max pooling
without XLA's scatter; inside a loop, also the loop-friendly convolution gradient), which are
bit-identical or equal to float32 precision to ``jax.grad`` of the model (tested).
"""

from __future__ import annotations

from typing import Annotated, Any

import jax
import jax.numpy as jnp

from ..core.methods import Option, OptionContext
from ..core.problem import Inputs, Problem
from .interpreter import Rules, rewrite
from .layers import layer_info, probed_forward
from .xla_cpu import FAST_GRADIENT_RULES


def target_gradient(
    problem: Problem, inputs: Inputs, x: jax.Array, indices: jax.Array | None, rules: Rules | None = None
) -> jax.Array:
    """``∂ f_target(x) / ∂x`` for every sample of ``x``.

    ``indices`` fixes the classes (``None`` with an argmax target: the class predicted at ``x``).
    ``rules`` replace primitives' backward passes (guided backprop...); default: the fast gradient
    rules only.
    """
    fast_forward = rewrite(problem.forward, FAST_GRADIENT_RULES if rules is None else rules)

    def total(x: jax.Array) -> jax.Array:
        outputs = fast_forward(inputs.variables, x, inputs.kwargs)
        return jnp.sum(problem.target.select(outputs, problem.target.indices(outputs, indices)))

    return jax.grad(total)(x)


def layer_activation_and_gradient(problem: Problem, inputs: Inputs, layer: str) -> tuple[jax.Array, jax.Array]:
    """``(A, ∂f_target/∂A)``: the output of ``layer`` and the target's gradient with respect to it
    (classes fixed at ``inputs.x`` for an argmax target), through a zero probe added to the layer."""
    info = layer_info(problem.forward, inputs.variables, inputs.x, inputs.kwargs, layer)
    run = probed_forward(problem.forward, layer)

    def total(probe: jax.Array) -> tuple[jax.Array, jax.Array]:
        outputs, activation = run(inputs.variables, inputs.x, inputs.kwargs, probe)
        return jnp.sum(problem.target.select(outputs, problem.target.indices(outputs, inputs.indices))), activation

    gradient, activation = jax.grad(total, has_aux=True)(jnp.zeros(info.shape, info.dtype))
    return activation, gradient


def _check_layer(ctx: OptionContext, name: str, value: Any) -> str:
    layer_info(ctx.problem.forward, ctx.inputs.variables, ctx.inputs.x, ctx.inputs.kwargs, value)  # clear error now
    return value


#: Annotation of a layer-name option (``"conv4"``, ``"block/conv_b"``, ``"conv4+relu"``; see ``xj.layers``).
LayerName = Annotated[str, Option(_check_layer, needs="layer")]
