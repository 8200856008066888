"""Layer-wise relevance propagation, ``xj.lrp`` ([bach2015]_, [montavon2019]_).

The relevance of the output layer is ``R^(L) = one_hot(c) ⊙ f(x)`` (the target logit); each layer
redistributes the relevance of its output onto its input by its rule (:mod:`.rules`), chosen per
layer by a composite (:mod:`.composites`), so that ``Σ_i R_i^(0) = f_c(x)`` where the rules conserve
(LRP-0/ε on bias-free layers, ZPlus/AlphaBeta/Flat/WSquare without bias, Norm, Pass).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import jax

from ..core import Choice, InputError, Inputs, Option, OptionContext, Problem, method, prepare
from ..core.model import Model
from ..core.problem import cached_trace
from ..trace.gradients import LayerName
from .composites import Composite, EpsilonPlusFlat
from .engine import MAX_POOL_MODES, contexts, describe, lrp_relevance, trace_model


def _check_composite(ctx: OptionContext, name: str, value: Any) -> Composite:
    if not isinstance(value, Composite):
        raise InputError(
            f"composite must be a Composite (e.g. xj.composites.EpsilonPlusFlat()); got {type(value).__name__}."
        )
    return value


def check_composite_matches(problem: Problem, inputs: Inputs, composite: Composite) -> None:
    """Refuse a composite whose name/type selectors match no layer of this model: the rule meant for
    that layer would silently not apply and another method's map would come back."""

    def layer_contexts(*_: Any) -> list[Any]:  # the model's layer structure: shapes decide it, not values
        plan = trace_model(problem, inputs, inputs.x, merge_affine=composite.merge_batch_norm).plan
        context = contexts(plan)
        return [context(step) for step in plan.steps if step.kind not in ("constant", "structural")]

    tag = f"lrp-layer-contexts:merge={composite.merge_batch_norm}"
    found = cached_trace(tag, problem.forward, layer_contexts, inputs.variables, inputs.x, inputs.kwargs)
    problems = composite.unmatched(found)
    if problems:
        raise InputError(f"{composite!r} does not fit this model: " + " ".join(problems))


def _validate(ctx: OptionContext) -> None:
    check_composite_matches(ctx.problem, ctx.inputs, ctx.options["composite"])


Composite_ = Annotated[Any, Option(_check_composite)]


@method("lrp", family="propagation", signed=True, validate=_validate, tokens=True)
def lrp(
    problem: Problem,
    inputs: Inputs,
    *,
    composite: Composite_ = EpsilonPlusFlat(),
    layer: LayerName | None = None,
    max_pool: Choice(*MAX_POOL_MODES) = "winner",  # type: ignore[valid-type]
) -> jax.Array:
    """Layer-wise relevance propagation with a composite of rules (Zennit's semantics).

    Works on any Linen model (or function) whose input-dependent operations the trace engine
    understands: conv/dense layers with bias and inference-mode BatchNorm (merged), residual sums,
    sum/average/max pooling, reshapes/transposes, and activations (``nn.relu``, ``jnp.maximum(x, 0)``,
    named ``jax.nn`` functions).  Anything else raises :class:`~xai_jax.UnsupportedError`.

    Args:
      composite: which rule each layer gets; default ``EpsilonPlusFlat()`` (Flat first layer, z⁺
        convolutions, ε dense layers).  See :mod:`xai_jax.propagation.composites`.  A name or type
        selector that matches no layer of the model is an error.
      layer: return the relevance of this layer's output (a Flax layer name, see ``xj.layers``)
        instead of the input's.  When the layer is followed by a merged BatchNorm, this is the
        relevance at the merged layer's output.
      max_pool: ``"winner"`` (relevance to each window's maximum, the gradient; Zennit's default) or
        ``"average"`` (as average pooling: in proportion to the window's inputs, [montavon2019]_).

    Returns:
      Relevance with ``x``'s shape (or the layer's output shape), float32; ``R.sum()`` per sample is
      ``f_c(x)`` minus what biases and stabilizers absorb.

    Example:
      >>> R = xj.lrp(model, variables, x, composite=xj.composites.EpsilonPlusFlat())
      >>> R.shape == x.shape
      True
    """
    return lrp_relevance(problem, inputs, inputs.x, inputs.indices, composite, layer=layer, max_pool=max_pool)


def propagation_plan(model: Model, variables: Any, x: Any, *, model_kwargs: Mapping[str, Any] | None = None) -> str:
    """How the engine sees a model: each step's kind (conv, dense, sum, activation...), layer name,
    Flax type and primitives.  Raises :class:`~xai_jax.UnsupportedError` where LRP would."""
    problem, inputs = prepare(model, variables, x, lambda outputs: outputs, model_kwargs)  # target unused
    return describe(problem, inputs)
