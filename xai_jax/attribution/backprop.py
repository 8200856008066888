"""Modified ReLU backward passes: guided backpropagation and DeconvNet.

Zeiler & Fergus (2014), "Visualizing and Understanding Convolutional Networks" (DeconvNet): the
ReLU passes the positive part of the incoming signal, ``R_in = max(g, 0)``, whatever its input.
Springenberg et al. (2015), "Striving for Simplicity: The All Convolutional Net" (guided
backpropagation): the ReLU passes ``g · [x > 0] · [g > 0]``.
Both equal Captum's ``Deconvolution`` and ``GuidedBackprop``.  Every ReLU the trace engine
recognises gets the rule (``nn.relu``, ``jax.nn.relu``, ``jnp.maximum(x, 0)``, shared or inline);
everything else (max pooling, linear layers) keeps its gradient.  A model with no recognisable
ReLU raises :class:`UnsupportedError`: the result would silently be the plain gradient.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..core import Inputs, Problem, Target, UnsupportedError, compiled, prepare, register
from ..core.model import Model
from ..core.problem import as_struct
from ..trace import FAST_GRADIENT_RULES
from ..trace.activations import count_relus, relu_rules
from .gradient import target_gradient


def _guided(x: jax.Array, g: jax.Array) -> jax.Array:
    return jnp.where((x > 0) & (g > 0), g, jnp.zeros_like(g))


def _deconvnet(x: jax.Array, g: jax.Array) -> jax.Array:
    return jnp.maximum(g, jnp.zeros_like(g))


RELU_BACKWARDS = {"guided_backprop": _guided, "deconvnet": _deconvnet}


def modified_relu_gradient(problem: Problem, inputs: Inputs, x: jax.Array, indices: jax.Array | None, rule: str) -> jax.Array:
    """The target's gradient at ``x`` with every ReLU's backward replaced by ``rule``."""
    if count_relus(problem.forward, *as_struct((inputs.variables, x, dict(inputs.kwargs)))) == 0:
        raise UnsupportedError(
            f"{rule}: the model has no ReLU the trace engine recognises (nn.relu, jax.nn.relu, "
            "jnp.maximum(x, 0)), so the result would be the plain gradient; use xj.gradient."
        )
    return target_gradient(problem, inputs, x, indices, {**FAST_GRADIENT_RULES, **relu_rules(RELU_BACKWARDS[rule])})


@compiled(static=("rule",))
def _modified(problem: Problem, inputs: Inputs, rule: str) -> jax.Array:
    return modified_relu_gradient(problem, inputs, inputs.x, inputs.indices, rule)


@register("guided_backprop", family="gradient", signed=True)
def guided_backprop(
    model: Model, variables: Any, x: Any, target: Target = None, *, model_kwargs: Mapping[str, Any] | None = None
) -> jax.Array:
    """Guided backpropagation (Springenberg et al. 2015): ReLUs pass ``g·[x>0]·[g>0]``."""
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    return _modified(problem, inputs, rule="guided_backprop")


@register("deconvnet", family="gradient", signed=True)
def deconvnet(
    model: Model, variables: Any, x: Any, target: Target = None, *, model_kwargs: Mapping[str, Any] | None = None
) -> jax.Array:
    """DeconvNet (Zeiler & Fergus 2014): ReLUs pass the positive part of the signal, ``max(g, 0)``."""
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    return _modified(problem, inputs, rule="deconvnet")
