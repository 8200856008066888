"""The relevance engine: a model's propagation graph evaluated with one ``jax.custom_vjp`` per layer.

Each layer found in the trace (:mod:`xai_jax.trace.graph`) is evaluated by a ``jax.custom_vjp``
function whose forward pass *is* the layer's own computation (the same equations, so outputs are
bit-identical to ``model.apply``) and whose backward pass is the layer's rule.  ``jax.vjp`` of the
rewritten model, seeded with ``one_hot(target) ⊙ outputs``, then returns the relevance of the input
(or, with a probe, of any layer) in one backward pass, under ``jit`` and ``vmap``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..core.errors import InputError, UnsupportedError
from ..core.problem import Inputs, Problem
from ..trace.graph import Plan, Step, run, trace_plan
from ..trace.layers import layer_info, list_layers, probed_forward
from ..trace.tokens import per_token
from ..trace.xla_cpu import max_pool_first_max_gradient
from .composites import Composite, LayerContext
from .layer import LinearLayer
from .rules import Product, Rule, unbroadcast

Array = jax.Array
MAX_POOL_MODES = ("winner", "average")


# ---------------------------------------------------------------------------------------------------
# Tracing a model into a plan
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Traced:
    """A model traced at one input: its plan and how to call it with new ``x`` (and probe)."""

    plan: Plan
    treedef: Any
    flat: list[Any]
    x_position: int
    probe_shape: tuple[int, ...] | None

    @property
    def tokens(self) -> bool:
        """The model's input is integer (tokens): the plan starts at its embedding lookup."""
        return self.plan.embedding is not None

    def start(self) -> Array:
        """The value relevance is propagated to: ``x``, or for tokens the embedding ``(B, N, D)``."""
        return self.plan.embedding.value(self.flat) if self.tokens else self.flat[self.x_position]

    def call(self, handle: Callable[[Step, list[Any]], list[Any]], x: Array, probe: Array | None = None) -> Any:
        """The model through ``handle`` at ``x`` (for tokens: at the embedding ``x``)."""
        args = list(self.flat)
        if self.tokens:
            args.append(x)
        else:
            args[self.x_position] = x
        return jax.tree_util.tree_unflatten(self.treedef, run(self.plan, args, handle, probe=probe))


def _module_types(problem: Problem, inputs: Inputs, x: Array) -> tuple[str | None, dict[str, str]]:
    forward = problem.forward
    if not forward.is_module:
        return None, {}
    types: dict[str, str] = {}
    for info in list_layers(forward, inputs.variables, x, inputs.kwargs):
        types.setdefault(info.name.split("#")[0], info.type)
    return forward.root_name, types


def trace_model(
    problem: Problem,
    inputs: Inputs,
    x: Array,
    *,
    layer: str | None = None,
    merge_affine: bool = True,
    statistics: str = "constant",
) -> Traced:
    """Trace ``problem``'s model at ``x`` into a :class:`Traced` plan (``layer``: add a probe there;
    ``statistics``: see :data:`xai_jax.trace.graph.STATISTICS`)."""
    root, types = _module_types(problem, inputs, x)
    if layer is None:
        args: tuple[Any, ...] = (inputs.variables, x, inputs.kwargs)
        plan, treedef, flat = trace_plan(
            problem.forward, args, 1, root=root, module_types=types, merge_affine=merge_affine, statistics=statistics
        )
        probe_shape = None
    else:
        info = layer_info(problem.forward, inputs.variables, x, inputs.kwargs, layer)
        run_probe = probed_forward(problem.forward, layer)

        def probed(variables: Any, x: Array, kwargs: Any, probe: Array) -> Any:
            return run_probe(variables, x, kwargs, probe)[0]

        probe = jnp.zeros(info.shape, info.dtype)
        args = (inputs.variables, x, inputs.kwargs, probe)
        plan, treedef, flat = trace_plan(
            probed,
            args,
            1,
            probe_argnum=3,
            root=root,
            module_types=types,
            merge_affine=merge_affine,
            statistics=statistics,
        )
        if plan.tap is None:
            raise InputError(f"layer {layer!r}: its output does not reach the model's output, so it has no relevance.")
        probe_shape = tuple(plan.tap.shape)
    x_position = len(jax.tree_util.tree_leaves(inputs.variables))
    return Traced(plan, treedef, flat, x_position, probe_shape)


def initial_relevance(problem: Problem, outputs: Any, indices: Array | None) -> Any:
    """``outputs ⊙ ∂t/∂outputs``: one-hot(target) × logit for class targets; for a callable target
    ``t(outputs)`` the same first-order share of each output in ``t``."""
    idx = problem.target.indices(outputs, indices)
    selector = jax.grad(lambda o: jnp.sum(problem.target.select(o, idx)))(outputs)
    return jax.tree_util.tree_map(lambda o, s: o * s, outputs, selector)


# ---------------------------------------------------------------------------------------------------
# custom_vjp plumbing
# ---------------------------------------------------------------------------------------------------


def _as_array(v: Any) -> Any:
    return v if isinstance(v, (jax.Array, np.ndarray)) else jnp.asarray(v)


def _zero_cotangent(v: Any) -> Any:
    v = jnp.asarray(v)
    if jnp.issubdtype(v.dtype, jnp.inexact):
        return jnp.zeros_like(v)
    return np.zeros(v.shape, dtype=jax.dtypes.float0)


def with_backward(
    forward: Callable[..., Array],
    backward: Callable[..., Sequence[Array | None]],
    primals: Sequence[Any],
    grad_mask: Sequence[bool],
) -> Array:
    """``forward(*primals)`` whose VJP is ``backward(primals, output, cotangent)``; ``backward``
    returns one cotangent per primal with ``grad_mask`` set (others get zeros)."""
    primals = [_as_array(p) for p in primals]

    @jax.custom_vjp
    def f(*args: Any) -> Array:
        return forward(*args)

    def fwd(*args: Any) -> tuple[Array, tuple[Any, ...]]:
        out = forward(*args)
        return out, (args, out)

    def bwd(res: tuple[Any, ...], g: Array) -> tuple[Any, ...]:
        args, out = res
        given = list(backward(args, out, g))
        cts = []
        for arg, masked in zip(args, grad_mask):
            if masked:
                ct = given.pop(0)
                cts.append(jnp.zeros_like(arg) if ct is None else ct.astype(arg.dtype))
            else:
                cts.append(_zero_cotangent(arg))
        return tuple(cts)

    f.defvjp(fwd, bwd)
    return f(*primals)


def linear_layer(step: Step, x: Array, rest: Sequence[Any], z: Array, *, zero_bias: bool = False) -> LinearLayer:
    """The :class:`LinearLayer` view of a conv/dense/pooling step at input ``x`` with output ``z``."""
    weight = rest[0] if step.has_weight else None
    consts = list(rest[1:] if step.has_weight else rest)
    folded = step.folded_weight(weight, consts) if step.has_weight else None
    if folded is not None:  # BatchNorm's per-channel scale merged into the kernel: rules see c·W directly
        weight = folded
    has_scale = step.has_scale and folded is None
    return LinearLayer(
        x=x,
        z=z,
        weight=weight,
        apply=step.apply,
        scale_fn=(lambda: step.chain(jnp.ones_like(z), consts, bias=False)) if has_scale else (lambda: None),
        bias_fn=(lambda: step.chain(jnp.zeros_like(z), consts)) if step.has_bias else (lambda: None),
        x_nonnegative=step.x_nonnegative,
        zero_bias=zero_bias,
    )


def pooling_as_average(step: Step, x: Array) -> LinearLayer:
    """A max-pooling step seen as the average pooling over the same windows (``z`` = the average)."""
    params = step.anchor.eqn.params
    if step.anchor.primitive == "reduce_window_max":

        def apply(v: Array, w: Any) -> Array:
            return lax.reduce_window_sum_p.bind(
                v,
                window_dimensions=tuple(params["window_dimensions"]),
                window_strides=tuple(params["window_strides"]),
                padding=tuple(map(tuple, params["padding"])),
                base_dilation=tuple(params["base_dilation"]),
                window_dilation=tuple(params["window_dilation"]),
            )

        n = float(np.prod(params["window_dimensions"]))
    else:  # reduce_max over axes
        axes = tuple(params["axes"])

        def apply(v: Array, w: Any) -> Array:
            return jnp.sum(v, axis=axes)

        n = float(np.prod([x.shape[a] for a in axes]))
    summed = apply(x, None)
    scale = jnp.full(summed.shape, 1.0 / n, x.dtype)
    return LinearLayer(
        x=x,
        z=summed * scale,
        weight=None,
        apply=apply,
        scale_fn=lambda: scale,
        bias_fn=lambda: None,
        x_nonnegative=step.x_nonnegative,
    )


def product_view(step: Step, operands: Sequence[Any], z: Array) -> Product:
    """The :class:`~xai_jax.propagation.rules.Product` view of a product step at ``operands``."""
    operands = list(operands)

    def backward(k: int, s: Array) -> Array:
        along = lambda v: step.forward([v if i == k else a for i, a in enumerate(operands)])[0]
        return jax.vjp(along, operands[k])[1](s)[0]

    return Product(operands, z, step.gates or (False,) * len(operands), step.anchor.primitive == "mul", backward)


def fast_max_pool(step: Step, invals: list[Any]) -> list[Any]:
    """Max pooling whose gradient goes to the first maximum of each window without XLA's scatter."""
    if step.anchor.primitive == "reduce_window_max":
        return [max_pool_first_max_gradient(invals[0], **step.anchor.eqn.params)]
    return step.forward(invals)


# ---------------------------------------------------------------------------------------------------
# LRP
# ---------------------------------------------------------------------------------------------------


def contexts(plan: Plan) -> Callable[..., LayerContext]:
    """``(step, kind) -> LayerContext`` for the plan's steps."""
    layers = plan.layers()
    first_conv = next((s.index for s in layers if s.kind == "conv"), None)
    first_dense = next((s.index for s in layers if s.kind == "dense"), None)

    def context(step: Step, kind: str | None = None) -> LayerContext:
        return LayerContext(
            step.name, kind or step.kind, step.module_type, step.index, len(layers), first_conv, first_dense
        )

    return context


def lrp_handle(plan: Plan, composite: Composite, max_pool: str) -> Callable[[Step, list[Any]], list[Any]]:
    """The step handler that gives every layer of ``plan`` its rule from ``composite``."""
    context = contexts(plan)

    def handle(step: Step, invals: list[Any]) -> list[Any]:
        kind = step.kind
        if kind in ("constant", "structural", "detach"):
            return step.forward(invals)
        if kind == "maxpool":
            if max_pool == "winner":
                return fast_max_pool(step, invals)
            rule = composite.resolve(context(step, "avgpool"))
            if rule is None:
                return fast_max_pool(step, invals)
            linear = rule.linear
            return [
                with_backward(
                    lambda x: step.forward([x])[0],
                    lambda args, out, R: [linear(pooling_as_average(step, args[0]), R)],
                    invals,
                    [True],
                )
            ]
        rule = composite.resolve(context(step, None))
        if kind == "quotient":
            raise UnsupportedError(
                "relevance propagation cannot pass a division by an input-dependent value in "
                f"{step.name or 'the model'!r} that is not a normaliser's statistic (LayerNorm/RMSNorm/GroupNorm "
                "scales are held constant; other divisions have no LRP rule). DeepLIFT handles it (its quotient rule "
                "keeps summation-to-delta)."
            )
        if rule is None and kind in ("softmax", "product"):
            raise UnsupportedError(
                f"{composite!r} has no rule for the {kind} in {step.name or 'the model'!r} "
                f"({'+'.join(e.primitive for e in step.eqns)}): a transformer needs rules for softmax and for "
                "products of input-dependent values. Use xj.composites.AttnLRP() or xj.composites.CPLRP(), or give "
                "the composite rules for the kinds 'softmax' and 'product'."
            )
        if rule is None:
            return step.forward(invals)
        if kind == "softmax":
            axes = step.softmax_axes
            return [
                with_backward(
                    lambda x: step.forward([x])[0],
                    lambda args, s_, R: [rule.softmax(args[0], s_, R, axes)],
                    invals,
                    [True],
                )
            ]
        if kind == "product":
            return [
                with_backward(
                    lambda *a: step.forward(list(a))[0],
                    lambda args, z, R: [
                        unbroadcast(r, a.shape) for r, a in zip(rule.product(product_view(step, args, z), R), args)
                    ],
                    invals,
                    [bool(d) for d in step.dependent],
                )
            ]
        if kind in ("conv", "dense", "avgpool"):
            zero_bias = bool(getattr(rule, "zero_params", None))

            def linear_backward(args: Sequence[Any], z: Array, R: Array, rule: Rule = rule) -> list[Array]:
                return [rule.linear(linear_layer(step, args[0], args[1:], z, zero_bias=zero_bias), R)]

            return [
                with_backward(
                    lambda *a: step.forward(list(a))[0], linear_backward, invals, [True] + [False] * (len(invals) - 1)
                )
            ]
        if kind == "sum":
            return [
                with_backward(
                    lambda *a: step.forward(list(a))[0],
                    lambda args, z, R: [
                        unbroadcast(r, a.shape) for r, a in zip(rule.sum(args, step.signs, z, R), args)
                    ],
                    invals,
                    [True, True],
                )
            ]
        if kind == "affine":
            pos = step.x_position
            mask = [i == pos for i in range(len(invals))]

            def affine_backward(args: Sequence[Any], y: Array, R: Array, rule: Rule = rule) -> list[Array]:
                x = args[pos]
                along = lambda v: step.forward([v if i == pos else a for i, a in enumerate(args)])[0]
                slope = jax.jvp(along, (x,), (jnp.ones_like(x),))[1]  # element-wise affine: dy/dx per element
                return [rule.affine(x, y, slope, R)]

            return [with_backward(lambda *a: step.forward(list(a))[0], affine_backward, invals, mask)]
        if kind == "activation":
            pos = step.x_position
            mask = [i == pos for i in range(len(invals))]
            return [
                with_backward(
                    lambda *a: step.forward(list(a))[0],
                    lambda args, y, R: [rule.elementwise(args[pos], y, R)],
                    invals,
                    mask,
                )
            ]
        raise UnsupportedError(f"no relevance handling for {step.describe()}")  # pragma: no cover

    return handle


def lrp_relevance(
    problem: Problem,
    inputs: Inputs,
    x: Array,
    indices: Array | None,
    composite: Composite,
    *,
    layer: str | None = None,
    max_pool: str = "winner",
) -> Array:
    """Relevance at the input (or at ``layer``) of the target outputs of ``problem`` at ``x``."""
    traced = trace_model(problem, inputs, x, layer=layer, merge_affine=composite.merge_batch_norm)
    if composite.activations is not None:
        found = {s.activation for s in traced.plan.steps if s.kind == "activation" and s.activation is not None}
        others = sorted(found - composite.activations)
        if others:
            raise InputError(
                f"{composite!r}: its rules are derived for networks with {sorted(composite.activations)} "
                f"activations; this model also has {others}. Use a composite without that restriction."
            )
    handle = lrp_handle(traced.plan, composite, max_pool)
    start = traced.start()
    if layer is None:
        outputs, pullback = jax.vjp(lambda v: traced.call(handle, v), start)
        relevance = pullback(initial_relevance(problem, outputs, indices))[0]
        return per_token(relevance, x) if traced.tokens else relevance
    probe = jnp.zeros(traced.probe_shape, start.dtype)
    outputs, pullback = jax.vjp(lambda p: traced.call(handle, start, p), probe)
    return pullback(initial_relevance(problem, outputs, indices))[0]


def describe(problem: Problem, inputs: Inputs) -> str:
    """The propagation plan of a model as a table (kind, layer, type, primitives)."""
    return str(trace_model(problem, inputs, inputs.x).plan)


__all__ = [
    "Traced",
    "contexts",
    "describe",
    "initial_relevance",
    "lrp_handle",
    "lrp_relevance",
    "trace_model",
    "with_backward",
]
