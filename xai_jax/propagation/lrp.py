"""Layer-wise relevance propagation, ``xj.lrp``.

Bach et al. (2015), "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise
Relevance Propagation"; Montavon et al. (2019), "Layer-Wise Relevance Propagation: An Overview".
The relevance of the output layer is ``R^(L) = one_hot(c) ⊙ f(x)`` (the target logit); each layer
redistributes the relevance of its output onto its input by its rule (:mod:`.rules`), chosen per
layer by a composite (:mod:`.composites`), so that ``Σ_i R_i^(0) = f_c(x)`` where the rules conserve
(LRP-0/ε on bias-free layers, ZPlus/AlphaBeta/Flat/WSquare without bias, Norm, Pass).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from ..core import Inputs, Problem, Target, compiled, prepare, register
from ..core.model import Model
from ..trace.layers import layer_info
from .composites import Composite, EpsilonPlusFlat
from .engine import check_options, describe, lrp_relevance


@compiled(static=("composite", "layer", "max_pool"))
def _lrp(problem: Problem, inputs: Inputs, composite: Composite, layer: str | None, max_pool: str) -> jax.Array:
    return lrp_relevance(problem, inputs, inputs.x, inputs.indices, composite, layer=layer, max_pool=max_pool)


@register("lrp", family="propagation", signed=True)
def lrp(
    model: Model,
    variables: Any,
    x: Any,
    target: Target = None,
    *,
    composite: Composite | None = None,
    layer: str | None = None,
    max_pool: str = "winner",
    model_kwargs: Mapping[str, Any] | None = None,
) -> jax.Array:
    """Layer-wise relevance propagation with a composite of rules (Zennit's semantics).

    Works on any Linen model (or function) whose input-dependent operations the trace engine
    understands: conv/dense layers with bias and inference-mode BatchNorm (merged), residual sums,
    sum/average/max pooling, reshapes/transposes, and activations (``nn.relu``, ``jnp.maximum(x, 0)``,
    named ``jax.nn`` functions).  Anything else raises :class:`~xai_jax.UnsupportedError`.

    Args:
      model, variables, x, target: the usual calling convention (``x`` a batch, NHWC images).
      composite: which rule each layer gets; default ``EpsilonPlusFlat()`` (Flat first layer, z⁺
        convolutions, ε dense layers).  See :mod:`xai_jax.propagation.composites`.
      layer: return the relevance of this layer's output (a Flax layer name, see ``xj.layers``)
        instead of the input's.  When the layer is followed by a merged BatchNorm, this is the
        relevance at the merged layer's output.
      max_pool: ``"winner"`` (relevance to each window's maximum, the gradient; Zennit's default) or
        ``"average"`` (as average pooling: in proportion to the window's inputs, Montavon et al. 2019).
      model_kwargs: extra keyword arguments of the model.

    Returns:
      Relevance with ``x``'s shape (or the layer's output shape), float32; ``R.sum()`` per sample is
      ``f_c(x)`` minus what biases and stabilizers absorb.
    """
    composite = EpsilonPlusFlat() if composite is None else composite
    check_options(composite, max_pool)
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    if layer is not None:
        layer_info(problem.forward, inputs.variables, inputs.x, inputs.kwargs, layer)  # clear error now
    return _lrp(problem, inputs, composite=composite, layer=layer, max_pool=max_pool)


def propagation_plan(model: Model, variables: Any, x: Any, *, model_kwargs: Mapping[str, Any] | None = None) -> str:
    """How the engine sees a model: each step's kind (conv, dense, sum, activation...), layer name,
    Flax type and primitives.  Raises :class:`~xai_jax.UnsupportedError` where LRP would."""
    problem, inputs = prepare(model, variables, x, lambda outputs: outputs, model_kwargs)  # target unused
    return describe(problem, inputs)
