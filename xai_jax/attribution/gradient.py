"""Gradient-based maps: the gradient, its magnitude (saliency) and input × gradient.

Simonyan, Vedaldi & Zisserman (2014), "Deep Inside Convolutional Networks: Visualising Image
Classification Models and Saliency Maps": the saliency map is ``|∂f_c(x)/∂x|``.
Shrikumar et al. (2016), "Not Just a Black Box": input × gradient, ``x ⊙ ∂f_c(x)/∂x``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..core import Inputs, Problem, Target, compiled, prepare, register
from ..core.model import Model
from ..trace import FAST_GRADIENT_RULES, rewrite
from ..trace.interpreter import Rule


def target_gradient(
    problem: Problem, inputs: Inputs, x: jax.Array, indices: jax.Array | None, rules: Mapping[str, Rule] = FAST_GRADIENT_RULES
) -> jax.Array:
    """``∂ f_target(x) / ∂x`` for every sample of ``x`` (samples are independent, so one
    backward pass of the summed targets gives every per-sample gradient).

    ``indices`` fixes the classes (``None`` with an argmax target: the class predicted at ``x``).
    The model runs through the trace engine with ``rules``: by default :data:`FAST_GRADIENT_RULES`
    (max pooling without XLA's scatter; bit-identical to ``jax.grad`` of the model); modified
    backward passes (guided backprop...) add their own rules.
    """
    fast_forward = rewrite(problem.forward, rules)

    def total(x: jax.Array) -> jax.Array:
        outputs = fast_forward(inputs.variables, x, inputs.kwargs)
        return jnp.sum(problem.target.select(outputs, problem.target.indices(outputs, indices)))

    return jax.grad(total)(x)


@compiled
def _gradient(problem: Problem, inputs: Inputs) -> jax.Array:
    return target_gradient(problem, inputs, inputs.x, inputs.indices)


@register("gradient", family="gradient", signed=True)
def gradient(
    model: Model, variables: Any, x: Any, target: Target = None, *, model_kwargs: Mapping[str, Any] | None = None
) -> jax.Array:
    """Gradient of the target output with respect to the input, ``∂f_c(x)/∂x``.

    Args:
      model: an unbound ``flax.linen.Module`` or a function ``f(variables, x) -> outputs``.
      variables: the model's variables (``params``, ``batch_stats``...).
      x: a batch ``(B, ...)``; images NHWC.
      target: ``None`` (predicted class), an int, an int array ``(B,)``, or ``outputs -> (B,)``.
      model_kwargs: extra keyword arguments for the model's ``__call__``.

    Returns:
      ``float32`` array with ``x``'s shape.
    """
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    return _gradient(problem, inputs)


@register("saliency", family="gradient", signed=False)
def saliency(
    model: Model, variables: Any, x: Any, target: Target = None, *, model_kwargs: Mapping[str, Any] | None = None
) -> jax.Array:
    """Saliency map ``|∂f_c(x)/∂x|`` (Simonyan et al. 2014; Captum's ``Saliency(abs=True)``)."""
    return jnp.abs(gradient(model, variables, x, target, model_kwargs=model_kwargs))


@register("input_x_gradient", family="gradient", signed=True)
def input_x_gradient(
    model: Model, variables: Any, x: Any, target: Target = None, *, model_kwargs: Mapping[str, Any] | None = None
) -> jax.Array:
    """Input × gradient, ``x ⊙ ∂f_c(x)/∂x`` (Shrikumar et al. 2016; Captum's ``InputXGradient``)."""
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    return inputs.x * _gradient(problem, inputs)
