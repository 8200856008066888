"""DeepLIFT, ``xj.deeplift`` (Shrikumar, Greenside & Kundaje 2017, "Learning Important Features
Through Propagating Activation Differences").

DeepLIFT explains ``Δf = f(x) − f(x₀)`` against a reference (baseline) ``x₀``: each neuron's
difference-from-reference ``Δ`` is carried backwards with *multipliers* ``m = Δy/Δx`` so that
``Σ_i m_i Δx_i = Δf`` (summation-to-delta); the attribution is ``Δx ⊙ m``.

* **Linear rule** (conv, dense, pooling, sums, BatchNorm): the multiplier is the weight, i.e. the
  gradient.
* **Rescale rule** (``rule="rescale"``): an element-wise non-linearity ``y = f(x)`` gets
  ``m = Δy/Δx``, or the gradient ``f'(x)`` where ``|Δx| < eps``.  Max pooling gets Captum's rule: the
  output difference goes to the maximum of whichever of ``x``/``x₀`` had the larger pooled value,
  divided by that element's ``Δx``.  This is Captum's ``DeepLift(multiply_by_inputs=True)``.
* **RevealCancel rule** (``rule="reveal_cancel"``, paper Sec. 3.5.3): the positive and negative parts
  ``Δx⁺``, ``Δx⁻`` of a non-linearity's input difference (the sums of the positive and negative
  terms ``w_ij Δa_i`` of the linear layer before it) are propagated separately,
  ``Δy⁺ = ½[f(x₀+Δx⁺) − f(x₀)] + ½[f(x₀+Δx⁻+Δx⁺) − f(x₀+Δx⁻)]`` (and ``Δy⁻`` symmetrically),
  ``m⁺ = Δy⁺/Δx⁺``, ``m⁻ = Δy⁻/Δx⁻``; the linear layer then sends ``m⁺`` back along its positive
  terms and ``m⁻`` along its negative ones (``½(m⁺ + m⁻)`` for ``Δa_i = 0``, paper Sec. 3.5.1).
  Summation-to-delta holds exactly.

Input and reference run through the model together, as one ``vmap`` over a leading pair axis; the
backward pass is one ``jax.vjp`` with the multiplier rules as ``jax.custom_vjp`` functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import Baseline, Choice, Inputs, NonNegativeFloat, Problem, method
from ..trace.graph import SIGN_KEEPING, Plan, Step
from ..trace.pooling import max_pool_first_max_gradient
from .engine import linear_layer, trace_model, with_backward

Array = jax.Array
RULES = ("rescale", "reveal_cancel")


def _vmapped(step: Step, invals: Sequence[Any]) -> list[Any]:
    """The step on (input, reference) pairs: vmapped over the leading axis of input-dependent values."""
    axes = [0 if d else None for d in step.dependent]
    return list(jax.vmap(lambda *a: step.forward(list(a)), in_axes=axes)(*invals))


def _replace(values: Sequence[Any], position: int, value: Any) -> list[Any]:
    out = list(values)
    out[position] = value
    return out


def _safe_ratio(num: Array, den: Array, eps: float) -> tuple[Array, Array]:
    """``(small, num/den)``: ``small`` where ``|den| < eps`` (or ``den == 0``), the ratio elsewhere
    (never a division by zero, so gradients through it stay finite)."""
    small = (jnp.abs(den) < eps) | (den == 0)
    return small, num / jnp.where(small, jnp.ones_like(den), den)


def _pool_vjp(step: Step, x: Array, g: Array) -> Array:
    """Gradient of the max pool at ``x`` applied to ``g`` (first maximum of each window, like torch)."""
    if step.anchor.primitive == "reduce_window_max":
        fn = lambda v: max_pool_first_max_gradient(v, **step.anchor.eqn.params)  # noqa: E731
    else:
        fn = lambda v: step.forward([v])[0]  # noqa: E731
    return jax.vjp(fn, x)[1](g)[0]


def _collapse(g: Array, delta: Array) -> Array:
    """One multiplier from the (positive-part, negative-part) pair ``g`` of a value split by the sign
    of its own difference ``delta`` (½ each where ``delta = 0``)."""
    return jnp.where(delta > 0, g[0], jnp.where(delta < 0, g[1], 0.5 * (g[0] + g[1])))


def deeplift_handle(plan: Plan, rule: str, eps: float) -> Callable[[Step, list[Any]], list[Any]]:
    """Step handler evaluating ``plan`` on (input, reference) pairs with DeepLIFT's multipliers.

    ``rescale``: cotangents live in the input half (the reference half carries zeros).
    ``reveal_cancel``: a cotangent pair ``(g⁺, g⁻)`` holds the multipliers of a value's positive and
    negative difference parts; it is ``(g, g)`` wherever the parts are not tracked separately.
    """
    aux: dict[int, tuple[Array, Array]] = {}  # value id -> (Δ⁺, Δ⁻) from the linear layer that made it
    reveal = rule == "reveal_cancel"

    def activation(step: Step, invals: list[Any]) -> list[Any]:
        pos = step._x_position
        src = step.inputs[pos]
        parts = aux.get(getattr(src, "id", -1)) if reveal else None

        def forward(*a: Any) -> Array:
            return jax.vmap(lambda v: step.forward(_replace(a, pos, v))[0])(a[pos])

        n = len(invals)

        def f_at(a: Sequence[Any], v: Array) -> Array:
            return step.forward(_replace(a[:n], pos, v))[0]

        def backward(args: Sequence[Any], y: Array, g: Array) -> list[Array]:
            xin = args[pos]
            x, x0 = xin[0], xin[1]
            dx, dy = x - x0, y[0] - y[1]
            grad = jax.vjp(lambda v: f_at(args, v), x)[1](jnp.ones_like(x))[0]  # f'(x), element-wise
            if not reveal:
                small, m = _safe_ratio(dy, dx, eps)
                m = jnp.where(small, grad, m)
                return [jnp.stack([g[0] * m, jnp.zeros_like(m)])]
            gy = _collapse(g, dy)
            if parts is None:
                dpos, dneg = jnp.maximum(dx, 0), jnp.minimum(dx, 0)
            else:
                dpos, dneg = args[-2], args[-1]
            f = lambda v: f_at(args, v)  # noqa: E731
            up = 0.5 * (f(x0 + dpos) - f(x0)) + 0.5 * (f(x0 + dneg + dpos) - f(x0 + dneg))
            down = 0.5 * (f(x0 + dneg) - f(x0)) + 0.5 * (f(x0 + dpos + dneg) - f(x0 + dpos))
            small_p, mp = _safe_ratio(up, dpos, eps)
            small_n, mn = _safe_ratio(down, dneg, eps)
            mp, mn = jnp.where(small_p, grad, mp), jnp.where(small_n, grad, mn)
            if parts is None:
                m = jnp.where(dx > 0, mp, jnp.where(dx < 0, mn, grad)) * gy
                return [jnp.stack([m, m])]
            return [jnp.stack([gy * mp, gy * mn])]

        primals = list(invals) + (list(parts) if parts is not None else [])
        mask = [i == pos for i in range(len(primals))]
        return [with_backward(lambda *a: forward(*a[: len(invals)]), backward, primals, mask)]

    def max_pool(step: Step, invals: list[Any]) -> list[Any]:
        def backward(args: Sequence[Any], y: Array, g: Array) -> list[Array]:
            xin = args[0]
            x, x0 = xin[0], xin[1]
            out, out0 = y[0], y[1]
            gx = _collapse(g, out - out0) if reveal else g[0]
            top = jnp.maximum(out, out0)
            spread = _pool_vjp(step, x, gx * (top - out0)) + _pool_vjp(step, x0, gx * (out - top))
            small, m = _safe_ratio(spread, x - x0, eps)
            m = jnp.where(small, _pool_vjp(step, x, gx), m)
            return [jnp.stack([m, m if reveal else jnp.zeros_like(m)])]

        return [with_backward(lambda *a: _vmapped(step, a)[0], backward, invals, [True] + [False] * (len(invals) - 1))]

    def linear(step: Step, invals: list[Any]) -> list[Any]:
        """RevealCancel's linear rule (positive and negative terms kept apart)."""
        xin, rest = invals[0], invals[1:]
        z = _vmapped(step, invals)[0]
        da = jax.lax.stop_gradient(xin[0] - xin[1])
        layer = linear_layer(step, xin[0], rest, z[0])
        dpos, dneg = jnp.maximum(da, 0), jnp.minimum(da, 0)
        zp = layer.forward(dpos, "pos") + layer.forward(dneg, "neg")
        zn = layer.forward(dpos, "neg") + layer.forward(dneg, "pos")
        aux[step.outputs[0].id] = (jax.lax.stop_gradient(zp), jax.lax.stop_gradient(zn))

        def backward(args: Sequence[Any], out: Array, g: Array) -> list[Array]:
            a = args[0]
            lay = linear_layer(step, a[0], args[1:], out[0])
            d = a[0] - a[1]
            gp, gn = g[0], g[1]
            m = jnp.where(
                d > 0, lay.backward(gp, "pos") + lay.backward(gn, "neg"),
                jnp.where(d < 0, lay.backward(gp, "neg") + lay.backward(gn, "pos"), 0.5 * lay.backward(gp + gn)),
            )
            return [jnp.stack([m, m])]

        return [with_backward(lambda *a: _vmapped(step, a)[0], backward, invals, [True] + [False] * len(rest))]

    def input_half_only(step: Step, invals: list[Any]) -> list[Any]:
        """Rescale's Linear rule (the gradient), transposing only the input half: the reference
        half's cotangent is zero by construction, so its transposed convolution is skipped."""

        def backward(args: Sequence[Any], out: Array, g: Array) -> list[Array]:
            a, rest = args[0], list(args[1:])
            ct = jax.vjp(lambda v: step.forward([v, *rest])[0], a[0])[1](g[0])[0]
            return [jnp.stack([ct, jnp.zeros_like(ct)])]

        return [with_backward(lambda *a: _vmapped(step, a)[0], backward, invals, [True] + [False] * (len(invals) - 1))]

    def handle(step: Step, invals: list[Any]) -> list[Any]:
        if not any(step.dependent):
            return step.forward(invals)
        if step.kind == "activation":
            return activation(step, invals)
        if step.kind == "maxpool":
            return max_pool(step, invals)
        if reveal and step.kind in ("conv", "dense", "avgpool"):
            return linear(step, invals)
        if not reveal and step.kind in ("conv", "dense", "avgpool"):
            return input_half_only(step, invals)
        outs = _vmapped(step, invals)
        if reveal and step.kind == "structural" and step.anchor.primitive in SIGN_KEEPING and step.anchor.primitive != "concatenate":
            src = step.inputs[0]
            parts = aux.get(getattr(src, "id", -1))
            if parts is not None and step.dependent[0]:
                moved = _vmapped(step, _replace(invals, 0, jnp.stack(parts)))[0]
                aux[step.outputs[0].id] = (moved[0], moved[1])
        return outs

    return handle


def deeplift_multipliers(problem: Problem, inputs: Inputs, x: Array, ref: Array, indices: Array | None, rule: str, eps: float) -> Array:
    """DeepLIFT multipliers ``m`` at the input (attribution ``(x − ref) ⊙ m``)."""
    traced = trace_model(problem, inputs, x)
    handle = deeplift_handle(traced.plan, rule, eps)
    pair = jnp.stack([x, ref])
    outputs, pullback = jax.vjp(lambda p: traced.call(handle, p), pair)
    idx = problem.target.indices(jax.tree_util.tree_map(lambda o: o[0], outputs), indices)
    both = rule == "reveal_cancel"

    def total(o: Any) -> Array:
        return jnp.sum(problem.target.select(jax.tree_util.tree_map(lambda a: a[0], o), idx))

    seed = jax.grad(total)(outputs)  # the target's one-hot in the input half, zeros in the reference half
    if both:  # (g⁺, g⁻) = (g, g) at the output
        seed = jax.tree_util.tree_map(lambda s: jnp.stack([s[0], s[0]]), seed)
    g = pullback(seed)[0]
    return _collapse(g, x - ref) if both else g[0]


@method("deeplift", family="propagation", signed=True)
def deeplift(
    problem: Problem,
    inputs: Inputs,
    *,
    baseline: Baseline = 0.0,
    rule: Choice(*RULES) = "rescale",  # type: ignore[valid-type]
    eps: NonNegativeFloat = 1e-10,
) -> jax.Array:
    """DeepLIFT attributions ``(x − x₀) ⊙ m`` with ``Σ_i = f_c(x) − f_c(x₀)`` ([shrikumar2017]_).

    Args:
      baseline: the reference ``x₀``: a scalar, an array broadcastable to ``x`` (one sample's shape,
        or one reference per sample), or a callable ``x -> x₀``.  Default 0.
      rule: ``"rescale"`` (= Captum's ``DeepLift``, ``multiply_by_inputs=True``) or
        ``"reveal_cancel"``.  Linear layers always use the Linear rule.
      eps: ``|Δx|`` below which a non-linearity uses its gradient instead of ``Δy/Δx`` (Captum: 1e-10).

    Returns:
      Attributions with ``x``'s shape, float32.

    Example:
      >>> attr = xj.deeplift(model, variables, x, baseline=0.0)
      >>> attr.shape == x.shape
      True
    """
    m = deeplift_multipliers(problem, inputs, inputs.x, baseline, inputs.indices, rule, eps)
    return (inputs.x - baseline) * m
