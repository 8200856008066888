"""LRP-0 through transposed layers, ``xj.lrp_transpose`` (the seed package's "LRP transpose").

The same LRP-0/ε computation as :func:`xai_jax.propagation.lrp` with ``Epsilon`` on every layer, but
written the way the seed (and Montavon et al. 2019, Sec. 10.2, "implementing LRP efficiently")
spell it out, one layer at a time from the top, without autodiff of a modified model:

1. ``z = layer(a)`` (forward pass, every activation kept),
2. ``s = R / stab(z)``,
3. ``c = Wᵀ s`` -- the *transposed* layer (a transposed convolution for a convolution, ``Wᵀ`` for a
   dense layer, built with :func:`jax.linear_transpose`), max-*unpooling* with the argmax of each
   window for max pooling, the inverse reshape/transpose for structural operations,
4. ``R_in = a ⊙ c``.

Activations pass relevance, residual sums split it in proportion to their operands, BatchNorm is
merged into the layer before it.  It exists as an independent implementation: a test checks that it
equals the engine's ``Epsilon`` composite number for number.  With ``low``/``high`` the first layer
uses the z^B rule (the seed's ``lrp_pixel``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..core import InputError, Inputs, NonNegativeFloat, OptionContext, Problem, UnsupportedError, compat, method
from ..trace.gradients import LayerName
from ..trace.graph import Step, default_handle, run
from ..trace.xla_cpu import window_slices
from .engine import initial_relevance, linear_layer, trace_model
from .rules import Stabilizer, ZBox, broadcast_bound, freeze_bound

Array = jax.Array


def _transposed(fn: Any, primal: Array) -> Any:
    """The transposed linear map of ``fn`` (a linear function of one array)."""
    return jax.linear_transpose(fn, jax.ShapeDtypeStruct(primal.shape, primal.dtype))


def _unpool(step: Step, x: Array, r: Array) -> Array:
    """Max-unpooling: ``r`` placed at the first maximum of each window of ``x``, zeros elsewhere."""
    params = step.anchor.eqn.params
    if step.anchor.primitive == "reduce_window_max" and all(d == 1 for d in params["base_dilation"]):
        window, strides = tuple(params["window_dimensions"]), tuple(params["window_strides"])
        padding, dilation = tuple(map(tuple, params["padding"])), tuple(params["window_dilation"])

        def slices(v: Array) -> Array:
            return window_slices(v, window, strides, padding, dilation, r.shape)

        stack = slices(x)
        winner = jnp.argmax(stack, axis=0)  # indices of the (first) maximum of every window
        offsets = jnp.arange(stack.shape[0]).reshape(-1, *[1] * r.ndim)
        placed = jnp.where(offsets == winner, r, jnp.zeros_like(r))
        # the transpose of "take all window slices" scatters each slice back (pads and adds)
        padded_shape = jax.eval_shape(slices, x)
        return _transposed(slices, x)(placed.astype(padded_shape.dtype))[0]
    return jax.vjp(lambda v: step.forward([v])[0], x)[1](r)[0]


def transpose_relevance(
    problem: Problem,
    inputs: Inputs,
    x: Array,
    indices: Array | None,
    epsilon: float,
    bounds: ZBox | None,
    layer: str | None,
) -> Array:
    traced = trace_model(problem, inputs, x, layer=layer)
    plan = traced.plan
    env: dict[int, Any] = {}
    args = list(traced.flat)
    args[traced.x_position] = x
    outputs = jax.tree_util.tree_unflatten(traced.treedef, run(plan, args, default_handle, record=env))
    stab = Stabilizer(epsilon)
    relevance: dict[int, Array] = {}

    def give(atom: Any, r: Array) -> None:
        if hasattr(atom, "id") and atom.id in plan.depends:
            relevance[atom.id] = relevance[atom.id] + r if atom.id in relevance else r

    def read(a: Any) -> Any:
        return compat.literal_value(a) if compat.is_literal(a) else env[a.id]

    for atom, r in zip(plan.graph.outputs, jax.tree_util.tree_leaves(initial_relevance(problem, outputs, indices))):
        give(atom, r)
    first = min((s.index for s in plan.layers() if s.index is not None), default=None)
    for step in reversed(plan.steps):
        if step.kind == "constant" or not any(step.dependent):
            continue
        if step.kind in ("softmax", "product", "quotient", "detach"):
            raise UnsupportedError(
                f"lrp_transpose has no rule for the {step.kind} in {step.name or 'the model'!r} "
                f"({'+'.join(e.primitive for e in step.eqns)}): use xj.lrp with xj.composites.AttnLRP() or CPLRP() "
                "for transformers."
            )
        out = step.outputs[0]
        if plan.tap is not None and out is plan.tap:
            return relevance.get(out.id, jnp.zeros(out.shape, x.dtype))
        if len(step.outputs) > 1:  # a multi-output structural step (split): all outputs' relevance at once
            rs = [relevance.pop(o.id, None) for o in step.outputs]
            if all(v is None for v in rs):
                continue
            r = [jnp.zeros(o.shape, x.dtype) if v is None else v for o, v in zip(step.outputs, rs)]
        else:
            r = relevance.pop(out.id, None)
            if r is None:
                continue
        invals = [read(a) for a in step.inputs]
        if step.kind in ("conv", "dense", "avgpool"):
            a = invals[0]
            lay = linear_layer(step, a, invals[1:], env[out.id])
            if bounds is not None and step.index is not None and step.index == first:
                low, high = broadcast_bound(bounds.low, a), broadcast_bound(bounds.high, a)
                z = (
                    lay.z
                    - lay.forward(low, "pos")
                    - lay.bias_part("pos")
                    - lay.forward(high, "neg")
                    - lay.bias_part("neg")
                )
                s = r / stab(z)
                give(
                    step.inputs[0],
                    a * _transposed(lay.forward, a)(s)[0]
                    - low * _transposed(lambda v: lay.forward(v, "pos"), a)(s)[0]  # noqa: B023 (called at once)
                    - high * _transposed(lambda v: lay.forward(v, "neg"), a)(s)[0],  # noqa: B023
                )
            else:
                s = r / stab(lay.z)
                give(step.inputs[0], a * _transposed(lay.forward, a)(s)[0])
        elif step.kind == "sum":
            s = r / stab(env[out.id])
            for atom, v, sign in zip(step.inputs, invals, step.signs):
                give(atom, sign * v * s)
        elif step.kind in ("activation", "affine"):
            give(step.inputs[step.x_position], r)
        elif step.kind == "maxpool":
            give(step.inputs[0], _unpool(step, invals[0], r))
        else:  # structural: the transposed (inverse-shaped) operation
            positions = [i for i, d in enumerate(step.dependent) if d]

            def op(
                *deps: Array, invals: list[Any] = invals, positions: list[int] = positions, step: Any = step
            ) -> Array:
                vals = list(invals)
                for i, d in zip(positions, deps):
                    vals[i] = d
                outs = step.forward(vals)
                return outs if len(step.outputs) > 1 else outs[0]

            cts = jax.vjp(op, *[invals[i] for i in positions])[1](r)
            for i, ct in zip(positions, cts):
                give(step.inputs[i], ct)
    if layer is not None:
        return (
            relevance.get(plan.tap.id, jnp.zeros(plan.tap.shape, x.dtype))
            if plan.tap is not None
            else jnp.zeros_like(x)
        )
    return relevance.get(plan.x.id, jnp.zeros_like(x))


def _check_bounds(ctx: OptionContext) -> dict[str, Any]:
    low, high = ctx.options["low"], ctx.options["high"]
    if (low is None) != (high is None):
        raise InputError("give both low and high (z^B rule at the first layer) or neither.")
    return {"low": None if low is None else freeze_bound(low), "high": None if high is None else freeze_bound(high)}


@method("lrp_transpose", family="propagation", signed=True, validate=_check_bounds)
def lrp_transpose(
    problem: Problem,
    inputs: Inputs,
    *,
    epsilon: NonNegativeFloat = 1e-7,
    low: Any = None,
    high: Any = None,
    layer: LayerName | None = None,
) -> jax.Array:
    """LRP-0 (stabilised by ``epsilon``) computed through transposed layers and max-unpooling.

    ``R_in = a ⊙ Wᵀ(R / stab(z))`` layer by layer from the target logit ([bach2015]_;
    [montavon2019]_, Sec. 10.2).  Equals ``xj.lrp(..., composite=MapComposite(types={"linear":
    Epsilon(epsilon)}, stabilizer=epsilon))`` -- tested.  ``low``/``high``: z^B rule at the first
    layer (the seed's ``lrp_pixel``, which used ``[-1, 1]``).  ``layer``: relevance at that layer.

    Example:
      >>> xj.lrp_transpose(model, variables, x).shape == x.shape
      True
    """
    bounds = None if low is None else ZBox(low, high)
    return transpose_relevance(problem, inputs, inputs.x, inputs.indices, epsilon, bounds, layer)
