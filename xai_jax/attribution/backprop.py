"""Modified ReLU backward passes: guided backpropagation and DeconvNet.

Zeiler & Fergus (2014), "Visualizing and Understanding Convolutional Networks" (DeconvNet): the
ReLU passes the positive part of the incoming signal, ``R_in = max(g, 0)``, whatever its input.
Springenberg et al. (2015), "Striving for Simplicity: The All Convolutional Net" (guided
backpropagation): the ReLU passes ``g · [x > 0] · [g > 0]``.
Both equal Captum's ``Deconvolution`` and ``GuidedBackprop``.  Every ReLU the trace engine
recognises gets the rule (``nn.relu``, ``jax.nn.relu``, ``jnp.maximum(x, 0)``, shared or inline;
:mod:`xai_jax.trace.activations`); everything else (max pooling, linear layers, the variance clamp
``max(0, var)`` inside LayerNorm, GroupNorm and batch-statistics BatchNorm) keeps its gradient.  A model
with no recognisable ReLU raises :class:`UnsupportedError`: the result would silently be the plain gradient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ..core import InputError, Inputs, Problem, UnsupportedError, compiled, method, prepare
from ..core.checks import check_bool, check_int_tuple
from ..core.model import Model
from ..core.problem import as_struct
from ..trace import FAST_GRADIENT_RULES, layer_info, probed_forward, rewrite
from ..trace.activations import count_relus, relu_rules
from ..trace.gradients import target_gradient


def _guided(x: jax.Array, g: jax.Array) -> jax.Array:
    return jnp.where((x > 0) & (g > 0), g, jnp.zeros_like(g))


def _deconvnet(x: jax.Array, g: jax.Array) -> jax.Array:
    return jnp.maximum(g, jnp.zeros_like(g))


RELU_BACKWARDS = {"guided_backprop": _guided, "deconvnet": _deconvnet}


def modified_relu_gradient(
    problem: Problem, inputs: Inputs, x: jax.Array, indices: jax.Array | None, rule: str
) -> jax.Array:
    """The target's gradient at ``x`` with every ReLU's backward replaced by ``rule``."""
    if count_relus(problem.forward, *as_struct((inputs.variables, x, dict(inputs.kwargs)))) == 0:
        raise UnsupportedError(
            f"{rule}: the model has no ReLU the trace engine recognises (nn.relu, jax.nn.relu, "
            "jnp.maximum(x, 0); a normaliser's variance clamp is not one), so the result would be the plain "
            "gradient; use xj.gradient."
        )
    return target_gradient(problem, inputs, x, indices, {**FAST_GRADIENT_RULES, **relu_rules(RELU_BACKWARDS[rule])})


@method("guided_backprop", family="gradient", signed=True)
def guided_backprop(problem: Problem, inputs: Inputs) -> jax.Array:
    """Guided backpropagation ([springenberg2015]_; Captum ``GuidedBackprop``): ReLUs pass
    ``g·[x>0]·[g>0]``.

    Example:
      >>> attr = xj.guided_backprop(model, variables, x)
      >>> attr.shape == x.shape
      True
    """
    return modified_relu_gradient(problem, inputs, inputs.x, inputs.indices, "guided_backprop")


@method("deconvnet", family="gradient", signed=True)
def deconvnet(problem: Problem, inputs: Inputs) -> jax.Array:
    """DeconvNet ([zeiler2014]_; Captum ``Deconvolution``): ReLUs pass the positive part of the
    signal, ``max(g, 0)``.

    Example:
      >>> attr = xj.deconvnet(model, variables, x)
      >>> attr.shape == x.shape
      True
    """
    return modified_relu_gradient(problem, inputs, inputs.x, inputs.indices, "deconvnet")


@compiled(static=("layer", "filters", "rectify"))
def _deconvnet_per_filter(
    problem: Problem, inputs: Inputs, *, layer: str, filters: tuple[int, ...], rectify: bool
) -> jax.Array:
    info = layer_info(problem.forward, inputs.variables, inputs.x, inputs.kwargs, layer)
    run = probed_forward(problem.forward, layer)
    zeros = jnp.zeros(info.shape, info.dtype)

    def to_layer(x: jax.Array) -> jax.Array:
        return run(inputs.variables, x, inputs.kwargs, zeros)[1]

    rules = {**FAST_GRADIENT_RULES, **relu_rules(_deconvnet)}
    activation, pullback = jax.vjp(rewrite(to_layer, rules), inputs.x)
    signal = jnp.maximum(activation, 0) if rectify else activation
    channel = jax.lax.broadcasted_iota(jnp.int32, signal.shape, signal.ndim - 1)

    def reconstruct(k: jax.Array) -> jax.Array:
        return pullback(jnp.where(channel == k, signal, 0))[0]

    return jnp.moveaxis(jax.vmap(reconstruct)(jnp.asarray(filters, jnp.int32)), 0, 1)


def deconvnet_per_filter(
    model: Model,
    variables: Any,
    x: Any,
    *,
    layer: str,
    filters: Sequence[int] | None = None,
    rectify: bool = True,
    model_kwargs: Mapping[str, Any] | None = None,
) -> jax.Array:
    """DeconvNet partial reconstructions (Zeiler & Fergus 2014, Fig. 2): one input-space image
    per filter of ``layer``, projecting that filter's (rectified) feature map alone back to the
    input through the DeconvNet backward pass.  Filters are vmapped.

    Args:
      layer: a layer whose last axis indexes filters (a ``Conv``'s output).
      filters: which filters (default: all).
      rectify: project ``max(A_k, 0)`` (the rectified map, as in the paper) instead of ``A_k``.

    Returns:
      ``(B, K, *x.shape[1:])`` reconstructions, ``K = len(filters)``.
    """
    problem, inputs = prepare(model, variables, x, None, model_kwargs)
    info = layer_info(problem.forward, inputs.variables, inputs.x, inputs.kwargs, layer)
    channels = info.shape[-1]
    chosen = tuple(range(channels)) if filters is None else check_int_tuple("filters", filters, minimum=0)
    rectify = check_bool("rectify", rectify)
    if not chosen or any(k < 0 or k >= channels for k in chosen):
        raise InputError(
            f"filters {list(chosen)} out of range: layer {layer!r} has {channels} filters (0..{channels - 1})."
        )
    return _deconvnet_per_filter(problem, inputs, layer=layer, filters=chosen, rectify=rectify)
