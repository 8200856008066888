"""Taylor decompositions: ``xj.simple_taylor`` and ``xj.deep_taylor``.

Montavon, Samek & Müller (2018), "Methods for interpreting and understanding deep neural networks",
Sec. 4 (simple Taylor decomposition), and Montavon, Lapuschkin, Binder, Samek & Müller (2017),
"Explaining nonlinear classification decisions with deep Taylor decomposition" (DTD).

* **Simple Taylor**: the first-order expansion of ``f_c`` at a root point ``x̃``,
  ``R_i = (x_i − x̃_i) · ∂f_c/∂x_i |_{x̃}``, so ``Σ_i R_i = f_c(x) − f_c(x̃) − (second-order terms)``.
  With ``root=None``, ``x̃ = εx`` with ``ε → 0``: for a ReLU network without biases ``f`` is
  piecewise linear and positively homogeneous, ``∇f(εx) = ∇f(x)``, and ``R = x ⊙ ∇f_c(x)``
  (gradient × input) with ``Σ_i R_i = f_c(x)`` exactly (Euler).
* **Deep Taylor**: a Taylor expansion at each layer at a root point chosen in the layer's input
  domain yields the z⁺ rule for ReLU layers (non-negative inputs), the z^B rule for an input bounded
  by ``low ≤ x ≤ high`` and the w² rule for an unbounded input.  Relevance is conserved layer by
  layer on bias-free networks.
"""

from __future__ import annotations

from typing import Annotated, Any

import jax

from ..core import Baseline, Choice, InputError, Inputs, Option, OptionContext, Problem, method
from ..trace.gradients import target_gradient
from .composites import Composite, MapComposite
from .engine import MAX_POOL_MODES, lrp_relevance
from .rules import StabilizerLike, WSquare, ZBox, ZPlus, freeze_bound


@method("simple_taylor", family="propagation", signed=True)
def simple_taylor(problem: Problem, inputs: Inputs, *, root: Baseline | None = None) -> jax.Array:
    """Simple Taylor decomposition ``R_i = (x_i − x̃_i) ∂f_c/∂x_i(x̃)`` ([montavon2018]_).

    Args:
      root: the root point ``x̃`` (scalar, array broadcastable to ``x``, or ``x -> x̃``).  ``None``
        (default): the limit ``x̃ = εx, ε → 0``, i.e. ``x ⊙ ∇f_c(x)``, exact for bias-free ReLU nets.
        The class is the one predicted at ``x`` when ``target=None``.

    Example:
      >>> xj.simple_taylor(model, variables, x).shape == x.shape
      True
    """
    indices = problem.class_indices(inputs)
    if root is None:
        return inputs.x * target_gradient(problem, inputs, inputs.x, indices)
    return (inputs.x - root) * target_gradient(problem, inputs, root, indices)


def deep_taylor_composite(low: Any = 0.0, high: Any = 1.0, *, stabilizer: StabilizerLike = 1e-6) -> Composite:
    """The DTD composite: z^B (or w² when ``low``/``high`` are ``None``) at the first conv/dense
    layer, z⁺ in every other conv/dense layer; activations pass, pooling as in :class:`MapComposite`.
    z⁺ is the Taylor expansion of a ReLU neuron, so models with other activations are refused."""
    if (low is None) != (high is None):
        raise InputError("deep_taylor needs both low and high (a bounded input, z^B rule) or neither (w² rule).")
    first = WSquare(stabilizer) if low is None else ZBox(low, high, stabilizer)
    return MapComposite(types={"linear": ZPlus(stabilizer)}, first=first, stabilizer=stabilizer, activations={"relu"})


def _static_bound(ctx: OptionContext, name: str, value: Any) -> Any:
    return None if value is None else freeze_bound(value)  # a hashable number or frozen array: part of the rule


Bound = Annotated[Any, Option(_static_bound)]


def _check_bounds(ctx: OptionContext) -> None:
    if (ctx.options["low"] is None) != (ctx.options["high"] is None):
        raise InputError("deep_taylor needs both low and high (a bounded input, z^B rule) or neither (w² rule).")
    deep_taylor_composite(ctx.options["low"], ctx.options["high"], stabilizer=ctx.options["stabilizer"])


@method("deep_taylor", family="propagation", signed=True, validate=_check_bounds)
def deep_taylor(
    problem: Problem,
    inputs: Inputs,
    *,
    low: Bound = 0.0,
    high: Bound = 1.0,
    stabilizer: Any = 1e-6,
    max_pool: Choice(*MAX_POOL_MODES) = "winner",  # type: ignore[valid-type]
) -> jax.Array:
    """Deep Taylor decomposition ([montavon2017]_): z⁺ in the hidden layers, z^B at the input.

    Args:
      low: the input domain's lower bound (``0`` for MNIST pixels; per-channel arrays for
        normalised images).  ``None`` for both bounds: an unbounded input (w² rule at the first layer).
      high: the input domain's upper bound (``1`` for MNIST pixels).
      stabilizer: denominator stabilizer of the rules.
      max_pool: ``"winner"`` or ``"average"`` (as in :func:`xai_jax.propagation.lrp`).

    Raises:
      InputError: the model has activations other than ReLU (the z⁺ rule's derivation needs ReLU).

    Example:
      >>> xj.deep_taylor(model, variables, x, low=0.0, high=1.0).shape == x.shape
      True
    """
    composite = deep_taylor_composite(low, high, stabilizer=stabilizer)
    return lrp_relevance(problem, inputs, inputs.x, inputs.indices, composite, max_pool=max_pool)
