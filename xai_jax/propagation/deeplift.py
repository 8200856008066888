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

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ..core import Baseline, Choice, Inputs, NonNegativeFloat, Problem, method
from ..trace.graph import SIGN_KEEPING, Plan, Step, Var
from ..trace.tokens import baseline_embedding, per_token
from ..trace.xla_cpu import max_pool_first_max_gradient
from .engine import linear_layer, trace_model, with_backward
from .rules import unbroadcast

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
        fn = lambda v: max_pool_first_max_gradient(v, **step.anchor.eqn.params)
    else:
        fn = lambda v: step.forward([v])[0]
    return jax.vjp(fn, x)[1](g)[0]


def _collapse(g: Array, delta: Array) -> Array:
    """One multiplier from the (positive-part, negative-part) pair ``g`` of a value split by the sign
    of its own difference ``delta`` (½ each where ``delta = 0``)."""
    return jnp.where(delta > 0, g[0], jnp.where(delta < 0, g[1], 0.5 * (g[0] + g[1])))


class DeepLiftPropagator:
    """Step handler evaluating a plan on (input, reference) pairs with DeepLIFT's multipliers.

    ``rescale``: cotangents live in the input half (the reference half carries zeros).
    ``reveal_cancel``: a cotangent pair ``(g⁺, g⁻)`` holds the multipliers of a value's positive and
    negative difference parts; it is ``(g, g)`` wherever the parts are not tracked separately.

    The one piece of state is :attr:`parts`: for RevealCancel, the ``(Δ⁺, Δ⁻)`` of each value made by
    a linear layer (carried through sign-keeping structural steps), read by the non-linearity that
    follows.  It is filled during the forward evaluation of the plan, in step order.
    """

    def __init__(self, rule: str, eps: float) -> None:
        self.reveal = rule == "reveal_cancel"
        self.eps = eps
        self.parts: dict[int, tuple[Array, Array]] = {}  # value id -> (Δ⁺, Δ⁻) from the linear layer that made it

    def __call__(self, step: Step, invals: list[Any]) -> list[Any]:
        if not any(step.dependent):
            return step.forward(invals)
        if step.kind == "activation":
            return self.activation(step, invals)
        if step.kind == "softmax":
            return self.softmax(step, invals)
        if step.kind in ("product", "quotient"):
            return self.product(step, invals)
        if step.kind == "maxpool":
            return self.max_pool(step, invals)
        if step.kind in ("conv", "dense", "avgpool"):
            return self.reveal_linear(step, invals) if self.reveal else self.rescale_linear(step, invals)
        outs = _vmapped(step, invals)
        if self.reveal and step.kind == "structural":
            self.carry_parts(step, invals)
        return outs

    def parts_of(self, atom: Any) -> tuple[Array, Array] | None:
        return self.parts.get(atom.id) if isinstance(atom, Var) else None

    # ---- element-wise non-linearities: Rescale / RevealCancel ------------------------------------
    def activation(self, step: Step, invals: list[Any]) -> list[Any]:
        pos, n, eps = step.x_position, len(invals), self.eps
        parts = self.parts_of(step.inputs[pos]) if self.reveal else None

        def forward(*a: Any) -> Array:
            return jax.vmap(lambda v: step.forward(_replace(a, pos, v))[0])(a[pos])

        def f_at(a: Sequence[Any], v: Array) -> Array:
            return step.forward(_replace(a[:n], pos, v))[0]

        def backward(args: Sequence[Any], y: Array, g: Array) -> list[Array]:
            x, x0 = args[pos][0], args[pos][1]
            grad = jax.vjp(lambda v: f_at(args, v), x)[1](jnp.ones_like(x))[0]  # f'(x), element-wise
            if not self.reveal:
                return [_rescale_multiplier(x - x0, y[0] - y[1], grad, g, eps)]
            f = lambda v: f_at(args, v)
            return [
                _reveal_cancel_multiplier(f, x, x0, y, grad, g, None if parts is None else (args[-2], args[-1]), eps)
            ]

        primals = list(invals) + (list(parts) if parts is not None else [])
        mask = [i == pos for i in range(len(primals))]
        return [with_backward(lambda *a: forward(*a[:n]), backward, primals, mask)]

    # ---- softmax: exp (Rescale), sum (linear), quotient (averaged) ----------------------------------
    def softmax(self, step: Step, invals: list[Any]) -> list[Any]:
        """Softmax ``y = u / Σu`` with ``u = exp(x − c)`` (one shift ``c`` for input and reference):
        Rescale on ``exp``, the Linear rule on the sum and the quotient rule on ``u / s``
        (:func:`_quotient_multipliers`); summation-to-delta holds exactly."""
        axes, reveal, eps = step.softmax_axes, self.reveal, self.eps

        def backward(args: Sequence[Any], y: Array, g: Array) -> list[Array]:
            x, x0 = args[0][0], args[0][1]
            c = jax.lax.stop_gradient(
                jnp.maximum(jnp.max(x, axis=axes, keepdims=True), jnp.max(x0, axis=axes, keepdims=True))
            )
            u, u0 = jnp.exp(x - c), jnp.exp(x0 - c)
            s, s0 = jnp.sum(u, axis=axes, keepdims=True), jnp.sum(u0, axis=axes, keepdims=True)
            gy = _collapse(g, y[0] - y[1]) if reveal else g[0]
            m_u, m_s = _quotient_multipliers(u, u0, s, s0)
            g_u = gy * m_u + jnp.sum(gy * m_s, axis=axes, keepdims=True)
            small, r = _safe_ratio(u - u0, x - x0, eps)
            m = g_u * jnp.where(small, u, r)
            return [jnp.stack([m, m if reveal else jnp.zeros_like(m)])]

        return [with_backward(lambda *a: _vmapped(step, a)[0], backward, invals, [True])]

    # ---- products and quotients of two input-dependent values: averaged multipliers ----------------
    def product(self, step: Step, invals: list[Any]) -> list[Any]:
        """``z = f(a, b)`` bilinear (``a ⊙ b``, ``a · b``): ``Δz = f(Δa, b̄) + f(ā, Δb)`` with ``ā = (a + a₀)/2``;
        ``z = a / b``: :func:`_quotient_multipliers`.  Exact, so summation-to-delta holds."""
        reveal, quotient = self.reveal, step.kind == "quotient"
        dependent = [bool(d) for d in step.dependent]

        def backward(args: Sequence[Any], z: Array, g: Array) -> list[Array]:
            gz = _collapse(g, z[0] - z[1]) if reveal else g[0]
            halves = [(a[0], a[1]) if d else (a, a) for a, d in zip(args, dependent)]
            if quotient:
                (a, a0), (b, b0) = halves
                m_a, m_b = _quotient_multipliers(a, a0, b, b0)
                cts = [unbroadcast(gz * m_a, a.shape), unbroadcast(gz * m_b, b.shape)]
            else:
                means = [(h[0] + h[1]) / 2 for h in halves]
                cts = []
                for k, (value, _) in enumerate(halves):
                    along = lambda v, k=k: step.forward([v if i == k else m for i, m in enumerate(means)])[0]
                    cts.append(jax.vjp(along, value)[1](gz)[0])
            return [jnp.stack([ct, ct if reveal else jnp.zeros_like(ct)]) for ct, d in zip(cts, dependent) if d]

        return [with_backward(lambda *a: _vmapped(step, a)[0], backward, invals, dependent)]

    # ---- max pooling: Captum's rule ----------------------------------------------------------------
    def max_pool(self, step: Step, invals: list[Any]) -> list[Any]:
        reveal, eps = self.reveal, self.eps

        def backward(args: Sequence[Any], y: Array, g: Array) -> list[Array]:
            x, x0 = args[0][0], args[0][1]
            out, out0 = y[0], y[1]
            gx = _collapse(g, out - out0) if reveal else g[0]
            top = jnp.maximum(out, out0)
            spread = _pool_vjp(step, x, gx * (top - out0)) + _pool_vjp(step, x0, gx * (out - top))
            small, m = _safe_ratio(spread, x - x0, eps)
            m = jnp.where(small, _pool_vjp(step, x, gx), m)
            return [jnp.stack([m, m if reveal else jnp.zeros_like(m)])]

        return [with_backward(lambda *a: _vmapped(step, a)[0], backward, invals, [True] + [False] * (len(invals) - 1))]

    # ---- linear layers -------------------------------------------------------------------------------
    def reveal_linear(self, step: Step, invals: list[Any]) -> list[Any]:
        """RevealCancel's linear rule (positive and negative terms kept apart); records the output's
        ``(Δ⁺, Δ⁻)`` in :attr:`parts`."""
        xin, rest = invals[0], invals[1:]
        z = _vmapped(step, invals)[0]
        da = jax.lax.stop_gradient(xin[0] - xin[1])
        layer = linear_layer(step, xin[0], rest, z[0])
        dpos, dneg = jnp.maximum(da, 0), jnp.minimum(da, 0)
        zp = layer.forward(dpos, "pos") + layer.forward(dneg, "neg")
        zn = layer.forward(dpos, "neg") + layer.forward(dneg, "pos")
        self.parts[step.outputs[0].id] = (jax.lax.stop_gradient(zp), jax.lax.stop_gradient(zn))

        def backward(args: Sequence[Any], out: Array, g: Array) -> list[Array]:
            a = args[0]
            lay = linear_layer(step, a[0], args[1:], out[0])
            d = a[0] - a[1]
            gp, gn = g[0], g[1]
            m = jnp.where(
                d > 0,
                lay.backward(gp, "pos") + lay.backward(gn, "neg"),
                jnp.where(d < 0, lay.backward(gp, "neg") + lay.backward(gn, "pos"), 0.5 * lay.backward(gp + gn)),
            )
            return [jnp.stack([m, m])]

        return [with_backward(lambda *a: _vmapped(step, a)[0], backward, invals, [True] + [False] * len(rest))]

    def rescale_linear(self, step: Step, invals: list[Any]) -> list[Any]:
        """Rescale's Linear rule (the gradient), transposing only the input half: the reference
        half's cotangent is zero by construction, so its transposed convolution is skipped."""

        def backward(args: Sequence[Any], out: Array, g: Array) -> list[Array]:
            a, rest = args[0], list(args[1:])
            ct = jax.vjp(lambda v: step.forward([v, *rest])[0], a[0])[1](g[0])[0]
            return [jnp.stack([ct, jnp.zeros_like(ct)])]

        return [with_backward(lambda *a: _vmapped(step, a)[0], backward, invals, [True] + [False] * (len(invals) - 1))]

    # ---- structural steps ------------------------------------------------------------------------
    def carry_parts(self, step: Step, invals: list[Any]) -> None:
        """Move a value's ``(Δ⁺, Δ⁻)`` through a sign-keeping structural step (reshape, slice...)."""
        prim = step.anchor.primitive
        if prim not in SIGN_KEEPING or prim == "concatenate" or not step.dependent[0]:
            return
        parts = self.parts_of(step.inputs[0])
        if parts is not None:
            moved = _vmapped(step, _replace(invals, 0, jnp.stack(parts)))[0]
            self.parts[step.outputs[0].id] = (moved[0], moved[1])


def _quotient_multipliers(a: Array, a0: Array, b: Array, b0: Array) -> tuple[Array, Array]:
    """Multipliers of ``Δa`` and ``Δb`` for ``a/b − a₀/b₀``: ``(1/b + 1/b₀)/2`` and ``−(a + a₀)/(2 b b₀)``
    (the product rule on ``a · (1/b)``, exact)."""
    return (1 / b + 1 / b0) / 2, -(a + a0) / (2 * b * b0)


def _rescale_multiplier(dx: Array, dy: Array, grad: Array, g: Array, eps: float) -> Array:
    """Rescale: ``m = Δy/Δx`` (the gradient where ``|Δx| < eps``), in the input half."""
    small, m = _safe_ratio(dy, dx, eps)
    m = jnp.where(small, grad, m)
    return jnp.stack([g[0] * m, jnp.zeros_like(m)])


def _reveal_cancel_multiplier(
    f: Callable[[Array], Array],
    x: Array,
    x0: Array,
    y: Array,
    grad: Array,
    g: Array,
    parts: tuple[Array, Array] | None,
    eps: float,
) -> Array:
    """RevealCancel (Shrikumar et al. 2017, Sec. 3.5.3): ``m⁺ = Δy⁺/Δx⁺``, ``m⁻ = Δy⁻/Δx⁻`` with
    ``Δy⁺ = ½[f(x₀+Δx⁺) − f(x₀)] + ½[f(x₀+Δx⁻+Δx⁺) − f(x₀+Δx⁻)]`` (``Δy⁻`` symmetrically).  Without
    the linear layer's ``parts``, ``Δx⁺``/``Δx⁻`` are the positive/negative part of ``Δx`` and one
    multiplier is returned for both halves."""
    dx, dy = x - x0, y[0] - y[1]
    gy = _collapse(g, dy)
    dpos, dneg = (jnp.maximum(dx, 0), jnp.minimum(dx, 0)) if parts is None else parts
    up = 0.5 * (f(x0 + dpos) - f(x0)) + 0.5 * (f(x0 + dneg + dpos) - f(x0 + dneg))
    down = 0.5 * (f(x0 + dneg) - f(x0)) + 0.5 * (f(x0 + dpos + dneg) - f(x0 + dpos))
    small_p, mp = _safe_ratio(up, dpos, eps)
    small_n, mn = _safe_ratio(down, dneg, eps)
    mp, mn = jnp.where(small_p, grad, mp), jnp.where(small_n, grad, mn)
    if parts is None:
        m = jnp.where(dx > 0, mp, jnp.where(dx < 0, mn, grad)) * gy
        return jnp.stack([m, m])
    return jnp.stack([gy * mp, gy * mn])


def deeplift_handle(plan: Plan, rule: str, eps: float) -> Callable[[Step, list[Any]], list[Any]]:
    """The step handler of :class:`DeepLiftPropagator` for ``plan`` (a fresh one per evaluation)."""
    return DeepLiftPropagator(rule, eps)


def deeplift_attribution(
    problem: Problem, inputs: Inputs, x: Array, ref: Any, indices: Array | None, rule: str, eps: float
) -> Array:
    """DeepLIFT attributions ``(x − ref) ⊙ m``; for integer inputs (tokens) the embedding's, summed per
    token (``ref`` then is a constant embedding value or token ids, see
    :func:`xai_jax.trace.tokens.baseline_embedding`)."""
    traced = trace_model(problem, inputs, x, statistics="traced")
    if not traced.tokens:
        return (x - ref) * deeplift_multipliers(traced, problem, x, ref, indices, rule, eps)
    e = traced.start()
    e_ref = baseline_embedding(problem, inputs, ref, e)
    return per_token((e - e_ref) * deeplift_multipliers(traced, problem, e, e_ref, indices, rule, eps), x)


def deeplift_multipliers(
    traced: Any, problem: Problem, x: Array, ref: Array, indices: Array | None, rule: str, eps: float
) -> Array:
    """DeepLIFT multipliers ``m`` at the plan's start ``x`` (attribution ``(x − ref) ⊙ m``)."""
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


@method("deeplift", family="propagation", signed=True, tokens=True)
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
    return deeplift_attribution(problem, inputs, inputs.x, baseline, inputs.indices, rule, eps)
