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

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..core import InputError, Inputs, Problem, Target, compiled, prepare, register
from ..core.model import Model
from ..trace import FAST_GRADIENT_RULES, rewrite
from .composites import Composite, MapComposite
from .deeplift import resolve_baseline
from .engine import check_options, lrp_relevance
from .rules import StabilizerLike, WSquare, ZBox, ZPlus


def target_gradient(problem: Problem, inputs: Inputs, at: jax.Array, indices: jax.Array | None) -> jax.Array:
    """``∂f_c/∂x`` at ``at`` (classes fixed by ``indices``; max pooling without XLA's scatter)."""
    fast = rewrite(problem.forward, FAST_GRADIENT_RULES)

    def total(v: jax.Array) -> jax.Array:
        outputs = fast(inputs.variables, v, inputs.kwargs)
        return jnp.sum(problem.target.select(outputs, problem.target.indices(outputs, indices)))

    return jax.grad(total)(at)


@compiled(static=("has_root",))
def _simple_taylor(problem: Problem, inputs: Inputs, root: jax.Array, has_root: bool) -> jax.Array:
    indices = problem.class_indices(inputs)
    if not has_root:
        return inputs.x * target_gradient(problem, inputs, inputs.x, indices)
    return (inputs.x - root) * target_gradient(problem, inputs, root, indices)


@register("simple_taylor", family="propagation", signed=True)
def simple_taylor(
    model: Model,
    variables: Any,
    x: Any,
    target: Target = None,
    *,
    root: float | jax.Array | Callable[[jax.Array], jax.Array] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> jax.Array:
    """Simple Taylor decomposition ``R_i = (x_i − x̃_i) ∂f_c/∂x_i(x̃)`` (Montavon et al. 2018).

    Args:
      root: the root point ``x̃`` (scalar, array broadcastable to ``x``, or ``x -> x̃``).  ``None``
        (default): the limit ``x̃ = εx, ε → 0``, i.e. ``x ⊙ ∇f_c(x)``, exact for bias-free ReLU nets.
        The class is the one predicted at ``x`` when ``target=None``.
    """
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    ref = inputs.x if root is None else resolve_baseline(root, inputs.x)
    return _simple_taylor(problem, inputs, ref, has_root=root is not None)


def deep_taylor_composite(low: Any = 0.0, high: Any = 1.0, *, stabilizer: StabilizerLike = 1e-6) -> Composite:
    """The DTD composite: z^B (or w² when ``low``/``high`` are ``None``) at the first conv/dense
    layer, z⁺ in every other conv/dense layer; activations pass, pooling as in :class:`MapComposite`.
    z⁺ is the Taylor expansion of a ReLU neuron, so models with other activations are refused."""
    if (low is None) != (high is None):
        raise InputError("deep_taylor needs both low and high (a bounded input, z^B rule) or neither (w² rule).")
    first = WSquare(stabilizer) if low is None else ZBox(low, high, stabilizer)
    return MapComposite(types={"linear": ZPlus(stabilizer)}, first=first, stabilizer=stabilizer, activations={"relu"})


@compiled(static=("composite", "max_pool"))
def _deep_taylor(problem: Problem, inputs: Inputs, composite: Composite, max_pool: str) -> jax.Array:
    return lrp_relevance(problem, inputs, inputs.x, inputs.indices, composite, max_pool=max_pool)


@register("deep_taylor", family="propagation", signed=True)
def deep_taylor(
    model: Model,
    variables: Any,
    x: Any,
    target: Target = None,
    *,
    low: Any = 0.0,
    high: Any = 1.0,
    stabilizer: StabilizerLike = 1e-6,
    max_pool: str = "winner",
    model_kwargs: Mapping[str, Any] | None = None,
) -> jax.Array:
    """Deep Taylor decomposition (Montavon et al. 2017): z⁺ in the hidden layers, z^B at the input.

    Args:
      low, high: the input domain's bounds (``[0, 1]`` for MNIST pixels; per-channel arrays for
        normalised images).  ``None`` for both: an unbounded input (w² rule at the first layer).
      stabilizer: denominator stabilizer of the rules.
      max_pool: ``"winner"`` or ``"average"`` (as in :func:`xai_jax.propagation.lrp`).

    Raises:
      InputError: the model has activations other than ReLU (the z⁺ rule's derivation needs ReLU).
    """
    composite = deep_taylor_composite(low, high, stabilizer=stabilizer)
    check_options(composite, max_pool)
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    return _deep_taylor(problem, inputs, composite=composite, max_pool=max_pool)
