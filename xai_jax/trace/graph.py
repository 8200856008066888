"""A traced model as a propagation graph: layers found in the jaxpr, with no change to the model.

Relevance methods (LRP, DeepLIFT, Taylor) need more than a rule per primitive: they need *layers*
-- a convolution together with its bias and the BatchNorm that follows it, a residual sum, a pooling
step -- and they need to know which values depend on the input.  This module turns
``jax.make_jaxpr(fn)`` into a :class:`Plan`:

1. **Flatten.**  The model is read as one flat graph by the walker shared with the gradient
   interpreter and the layer listing (:func:`xai_jax.trace.activations.traced_graph`): nested calls
   (``jit``/``pjit``, ``closed_call``, ``remat``, and here also the primal of ``custom_jvp``/
   ``custom_vjp`` functions) are inlined, so a model wrapped in ``nn.remat`` or an already-jitted
   ``apply`` looks like any other.  Activations are those the one detector marks: named activation
   functions kept whole (``nn.relu``, ``jax.nn.silu``...), ``tanh``/``logistic`` and
   ``jnp.maximum(x, 0)`` -- never a normaliser's variance clamp.  Each equation keeps its Flax
   module path from ``eqn.source_info.name_stack`` (nested stacks are relative; they are joined).
2. **Input dependence.**  A value depends on ``x`` if any operand of its equation does.  Parameters,
   running statistics and everything computed from them alone are *constants*.
3. **Layers.**  A ``conv_general_dilated`` or ``dot_general`` with one input-dependent operand is a
   *linear layer*; ``reduce_sum``/``reduce_window_sum`` (sum, mean and average pooling) is a
   weight-free linear layer.  The chain of element-wise ``add``/``sub``/``mul``/``div``/``neg`` with a
   constant operand that follows it (the bias add, an inference-mode BatchNorm's ``sub``/``mul``/
   ``add``, a constant scaling) is absorbed into the layer, which is then affine,
   ``z = c ⊙ A_W(x) + b`` -- BatchNorm merged into the preceding layer without any canonizer pass
   over parameters.  An ``add``/``sub`` of two input-dependent values is a residual *sum*;
   ``reduce_window_max``/``reduce_max`` a *max pool*; reshapes, transposes, slices, pads,
   concatenations and broadcasts are *structural* (relevance follows the gradient).
4. **Everything else** that depends on the input and reaches the output (``exp``, a product of two
   input-dependent values, ``select_n`` on an input-dependent mask, ``scan``/``while``/``cond``)
   raises :class:`~xai_jax.core.errors.UnsupportedError` naming the primitive, its module path and
   the supported set: a relevance map is never silently wrong.

:func:`run` evaluates a plan, calling a *handler* for every step; a relevance method supplies the
handler (a ``jax.custom_vjp`` per layer whose forward is the step's own computation), and every
step has :meth:`Step.forward`, the original computation, to fall back on.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ..core import compat
from ..core.errors import UnsupportedError
from .activations import (  # noqa: F401  (ACTIVATION_* and activation_name are re-exported for callers)
    ACTIVATION_NAMES,
    ACTIVATION_PRIMITIVES,
    NONNEGATIVE_ACTIVATIONS,
    activation_form,
    is_normaliser_scale,
    traced_graph,
)
from .walker import Atom, Eqn, Graph, Unit, Var, is_literal

# ---------------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------------

LINEAR_ANCHORS = frozenset({"conv_general_dilated", "dot_general"})
SUM_ANCHORS = frozenset({"reduce_sum", "reduce_window_sum"})
MAX_POOLS = frozenset({"reduce_window_max", "reduce_max"})
AFFINE = frozenset({"add", "add_any", "sub", "mul", "div", "neg"})
#: layout steps that may follow a layer's anchor as part of its linear map
LAYOUT = frozenset({"transpose", "reshape", "squeeze", "expand_dims", "broadcast_in_dim"})
#: Input-dependent primitives through which relevance follows the gradient (linear, no weights).
STRUCTURAL = frozenset(
    {
        "reshape",
        "transpose",
        "squeeze",
        "expand_dims",
        "broadcast_in_dim",
        "slice",
        "concatenate",
        "pad",
        "rev",
        "copy",
        "copy_p",
        "convert_element_type",
        "reduce_precision",
        "dynamic_slice",
        "gather",
        "optimization_barrier",
        "split",
    }
)
#: Structural primitives that keep a non-negative value non-negative (one output: ``split`` is left out).
SIGN_KEEPING = STRUCTURAL - {"pad", "split"}

KINDS = (
    "conv",
    "dense",
    "avgpool",
    "sum",
    "activation",
    "maxpool",
    "affine",
    "structural",
    "constant",
    "softmax",
    "product",
    "quotient",
    "detach",
)
#: How a plan treats a normaliser's statistics (the ``rsqrt(var + ε)`` of LayerNorm/RMSNorm/GroupNorm):
#: ``"constant"`` (relevance propagation: the identity rule on the normalisation, [achtibat2024]_,
#: [ali2022]_; ``stop_gradient`` values are constants too) or ``"traced"`` (DeepLIFT: every operation is
#: propagated, so summation-to-delta stays exact).
STATISTICS = ("constant", "traced")
#: Primitives of fused attention kernels (cuDNN, Pallas): opaque to a trace.
FUSED_KERNELS = ("dot_product_attention", "cudnn", "pallas_call", "mosaic", "triton", "custom_call")


def supported_summary() -> str:
    """One line naming what the propagation engine understands (for error messages and docs)."""
    return (
        "linear layers (conv_general_dilated, dot_general with one input-dependent operand) with their "
        "bias/BatchNorm chain (add, sub, mul, div, neg by constants); sum/average pooling (reduce_sum, "
        "reduce_window_sum); max pooling (reduce_window_max, reduce_max); residual sums (add/sub of two "
        "input-dependent values, broadcasting allowed); activations (nn.relu, jnp.maximum(x, 0), tanh, logistic, the "
        f"named jax.nn functions {sorted(ACTIVATION_NAMES)} and any element-wise function of one tensor such as "
        "jax.nn.gelu); softmax over any axes; normalisation (LayerNorm, RMSNorm, GroupNorm: statistics held "
        "constant); products of two input-dependent values (mul, dot_general: attention, gates); embedding "
        f"lookups of integer inputs; jnp.where with a constant condition; structural ops {sorted(STRUCTURAL)}; "
        "nested jit/pjit/closed_call/remat calls"
    )


# ---------------------------------------------------------------------------------------------------
# Flattening (the shared walker)
# ---------------------------------------------------------------------------------------------------

#: The activation kind of one equation by its form (kept under its former name).
activation_name = activation_form


def flatten(closed: Any) -> Graph:
    """``closed`` (a ``ClosedJaxpr``) as one flat :class:`Graph` with the primal of custom-derivative
    functions inlined, its activations marked and its multi-equation units (softmax, GELU...)
    grouped (:func:`xai_jax.trace.activations.traced_graph`)."""
    return traced_graph(closed.jaxpr, closed.consts, inline_custom=True, units=True)


# ---------------------------------------------------------------------------------------------------
# Steps and plans
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Step:
    """One unit of propagation: a layer (an anchor equation and its absorbed chain) or one equation.

    ``kind`` is one of :data:`KINDS`.  ``inputs`` are the atoms the step reads; for layers they are
    ``[x, weight?, chain constants...]`` (``x`` first).  ``name`` is the Flax module path of the layer
    (``"block/conv1"``; ``""`` at the top level) and ``module_type`` the Flax class name when known.
    """

    kind: str
    eqns: list[Eqn]
    inputs: list[Atom]
    outputs: list[Var]
    name: str = ""
    module_type: str | None = None
    dependent: tuple[bool, ...] = ()  # per input: does it depend on x?
    index: int | None = None  # position among conv/dense layers (forward order)
    x_nonnegative: bool = False  # the layer input is provably >= 0 (after a ReLU)
    activation: str | None = None
    signs: tuple[float, ...] = ()  # for sums: +1/-1 per operand
    has_weight: bool = False
    x_position: int = 0  # where x is: among the anchor's operands (layers), among the inputs (activation, affine)
    chain_slots: tuple[
        tuple[int, int], ...
    ] = ()  # per chain eqn: (position of the running value, input index of the const or -1)
    layout: int = 0  # transposes/reshapes right after the anchor that belong to its linear map (a vmapped ``W @ x``)
    unit: Unit | None = None  # a multi-equation activation or softmax (its input is ``inputs[0]``)
    gates: tuple[
        bool, ...
    ] = ()  # products: per operand, is it an attention weight / a gate (a softmax's or activation's output)?

    # ---- evaluation -------------------------------------------------------------------------------
    @property
    def anchor(self) -> Eqn:
        return self.eqns[0]

    @property
    def softmax_axes(self) -> tuple[int, ...]:
        """The normalised axes of a softmax step (its unit holds them)."""
        if self.unit is None:
            raise AssertionError(f"step {self.name!r} of kind {self.kind!r} has no unit, so no softmax axes")
        return self.unit.axes

    def forward(self, invals: Sequence[Any]) -> list[Any]:
        """The step's original computation on ``invals`` (a list of output values)."""
        if self.unit is not None:
            return [self.unit.evaluate(invals[0])]
        if self.kind == "detach":
            return [jax.lax.stop_gradient(v) for v in self.eqns[0].bind(invals)]
        if self.kind in ("conv", "dense", "avgpool"):
            x = invals[0]
            weight = invals[1] if self.has_weight else None
            consts = invals[2:] if self.has_weight else invals[1:]
            return [self.chain(self.apply(x, weight), consts)]
        return self.eqns[0].bind(invals)

    def apply(self, x: Any, weight: Any | None) -> Any:
        """The anchor alone, ``A_W(x)`` (linear in ``x``), with ``weight`` in place of the layer's own."""
        if not self.has_weight:
            return self.anchor.bind([x])[0]
        operands = [None, None]
        operands[self.x_position] = x
        operands[1 - self.x_position] = weight
        value = self.anchor.bind(operands)[0]
        for eqn in self.eqns[1 : 1 + self.layout]:
            value = eqn.bind([value])[0]
        return value

    @property
    def chain_eqns(self) -> list[Eqn]:
        """The absorbed constant chain (after the anchor and its layout steps)."""
        return self.eqns[1 + self.layout :]

    def chain(self, value: Any, consts: Sequence[Any], *, bias: bool = True) -> Any:
        """Apply the absorbed chain to the anchor's output ``value``; ``bias=False`` drops the
        additive constants, so ``chain(ones, bias=False)`` is the layer's output scale ``c`` and
        ``chain(zeros)`` its bias ``b`` (``z = c ⊙ A_W(x) + b``)."""
        for eqn, (pos, k) in zip(self.chain_eqns, self.chain_slots):
            prim = eqn.primitive
            if prim == "neg":
                value = eqn.bind([value])[0]
                continue
            const = consts[k]
            if prim in ("add", "add_any", "sub"):
                if prim == "sub" and pos == 1:  # const - value
                    value = eqn.bind([const, value])[0] if bias else -value
                elif bias:
                    value = eqn.bind([value, const] if pos == 0 else [const, value])[0]
                continue
            value = eqn.bind([value, const] if pos == 0 else [const, value])[0]
        return value

    def folded_weight(self, weight: Any, consts: Sequence[Any]) -> Any | None:
        """``c·W`` with the chain's scale folded into the weight's output-feature axis, when every
        constant scale of the chain varies along the output's feature axis only (BatchNorm, a
        per-channel or scalar scaling); ``None`` otherwise (rules then apply ``c`` in output space).
        """
        if not self.has_weight or not self.has_scale or self.layout:
            return None  # (after a layout step the output's feature axis is not the anchor's: scale in output space)
        anchor, out_ndim = self.anchor, len(self.outputs[0].shape)
        params = anchor.eqn.params
        if anchor.primitive == "conv_general_dilated":
            if params.get("batch_group_count", 1) != 1:
                return None
            numbers = params["dimension_numbers"]
            out_axis, w_axis = numbers.out_spec[1], numbers.rhs_spec[0]
        else:  # dot_general with x as lhs and one free weight axis, mapped to the last output axis
            (_, rhs_contract), (_, rhs_batch) = params["dimension_numbers"]
            free = [a for a in range(weight.ndim) if a not in rhs_contract and a not in rhs_batch]
            if self.x_position != 0 or rhs_batch or len(free) != 1:
                return None
            out_axis, w_axis = out_ndim - 1, free[0]
        for eqn, (_, k) in zip(self.chain_eqns, self.chain_slots):
            if eqn.primitive in ("mul", "div"):  # (const − value and neg scale by −1 everywhere)
                shape = jnp.shape(consts[k])
                if len(shape) not in (0, out_ndim) or any(n != 1 for i, n in enumerate(shape) if i != out_axis):
                    return None
        features = self.outputs[0].shape[out_axis]
        small = [1] * out_ndim
        small[out_axis] = features
        c = self.chain(jnp.ones(small, weight.dtype), consts, bias=False).reshape(features)
        w_shape = [1] * weight.ndim
        w_shape[w_axis] = features
        return weight * c.reshape(w_shape)

    def chain_constants(self, invals: Sequence[Any]) -> list[Any]:
        return list(invals[2:] if self.has_weight else invals[1:])

    @property
    def has_scale(self) -> bool:
        return any(
            e.primitive in ("mul", "div", "neg") or (e.primitive == "sub" and p == 1)
            for e, (p, _) in zip(self.chain_eqns, self.chain_slots)
        )

    @property
    def has_bias(self) -> bool:
        return any(e.primitive in ("add", "add_any", "sub") for e in self.chain_eqns)

    def describe(self) -> str:
        where = f" in {self.name!r}" if self.name else ""
        return f"{self.kind} step {'+'.join(e.primitive for e in self.eqns)}{where}"


@dataclasses.dataclass
class Plan:
    """The propagation graph of one traced function: steps in execution order."""

    graph: Graph
    steps: list[Step]
    x: Var  # the input attributions are taken with respect to
    tap: Var | None = None  # where an intermediate layer's relevance is read (see ``probe``)
    probe: Var | None = None
    depends: frozenset[int] = frozenset()
    #: for integer inputs (tokens): how to compute the embedding the plan starts at (``x`` is then
    #: that embedding, an extra input after the flat arguments); see :mod:`xai_jax.trace.tokens`
    embedding: Any = None

    def layers(self) -> list[Step]:
        """The linear layers (conv/dense), in forward order."""
        return [s for s in self.steps if s.kind in ("conv", "dense")]

    def __str__(self) -> str:
        rows = [f"{'kind':<11} {'name':<24} {'type':<10} ops"]
        for s in self.steps:
            if s.kind != "constant":
                rows.append(
                    f"{s.kind:<11} {s.name:<24} {s.module_type or '':<10} {'+'.join(e.primitive for e in s.eqns)}"
                )
        return "\n".join(rows)


def layer_name(scope: str, root: str | None) -> str:
    """Flax layer name from a joined name stack: drop the root module's class name and transform
    wrappers (``jit(f)``, ``vmap(g)``...)."""
    parts = [p for p in scope.split("/") if p and "(" not in p]
    if parts and root is not None and parts[0] == root:
        parts = parts[1:]
    return "/".join(parts)


def analyse(
    graph: Graph,
    x_index: int,
    *,
    probe_index: int | None = None,
    merge_affine: bool = True,
    root: str | None = None,
    module_types: Mapping[str, str] | None = None,
    statistics: str = "constant",
) -> Plan:
    """Group ``graph`` into steps; ``x_index`` is the position of the input among ``graph.inputs``.

    ``probe_index`` names an input added (``out + probe``) to a layer's output by
    :func:`xai_jax.trace.layers.probed_forward`: that ``add`` is removed and its position becomes the
    plan's ``tap`` (moved to the end of the layer it falls inside).  ``merge_affine=False`` keeps
    constant ``add``/``mul`` chains from other modules (BatchNorm) out of the layer before them (no
    BatchNorm merging; they become ``affine`` steps).  ``statistics`` (:data:`STATISTICS`):
    ``"constant"`` holds normaliser statistics and ``stop_gradient`` values constant (relevance
    propagation), ``"traced"`` propagates through them (DeepLIFT).

    The steps: remove the probe, compute input dependence and liveness (:class:`Flow`), group
    layers with their constant chains (:func:`find_layers`), emit every step in execution order
    with its name, index and sign information (:func:`order_steps`), move the tap to its layer's end.
    """
    x = graph.inputs[x_index]
    probe = graph.inputs[probe_index] if probe_index is not None else None
    graph, tap = remove_probe(graph, probe)
    if statistics not in STATISTICS:
        raise ValueError(f"statistics must be one of {STATISTICS}; got {statistics!r}")
    flow = Flow.of(graph, x, tap, constant_statistics=statistics == "constant")

    def name_of(e: Eqn) -> str:
        return layer_name(e.scope, root)

    layers = find_layers(graph.eqns, flow, name_of, merge_affine=merge_affine)
    steps = order_steps(graph.eqns, layers, flow, name_of, dict(module_types or {}))
    mark_gates(steps)
    return Plan(graph, steps, x, tap_at_layer_end(steps, tap), probe, frozenset(flow.depends))


def remove_probe(graph: Graph, probe: Var | None) -> tuple[Graph, Var | None]:
    """``graph`` without the ``out + probe`` equations (``out`` takes their place), and the first such
    ``out`` (the tap), or ``None``."""
    tap: Var | None = None
    alias: dict[int, Atom] = {}
    eqns: list[Eqn] = []
    for e in graph.eqns:
        e.inputs = [alias.get(a.id, a) if isinstance(a, Var) else a for a in e.inputs]
        if probe is not None and e.primitive in ("add", "add_any") and any(a is probe for a in e.inputs):
            other = next(a for a in e.inputs if a is not probe)
            alias[e.outputs[0].id] = other
            if tap is None:
                tap = other
            continue
        eqns.append(e)
    outputs = [alias.get(a.id, a) if isinstance(a, Var) else a for a in graph.outputs]
    return Graph(graph.inputs, graph.consts, eqns, outputs), tap


@dataclasses.dataclass
class Flow:
    """Which values depend on the input, which reach an output (or the tap), and who reads them.

    ``detached`` are the equations whose outputs are held constant although computed from the
    input (a normaliser's ``rsqrt(var + ε)``, a ``stop_gradient``); ``relevant`` the values through
    which relevance can reach an output (not through a detached value).  A multi-equation unit is
    one equation here: its members are read through the unit (its input reaches its output).
    """

    depends: set[int]  # ids of values that depend on x
    live: set[int]  # ids of values that reach an output or the tap
    consumers: dict[int, list[Eqn]]  # value id -> the live equations reading it
    output_ids: set[int]
    relevant: set[int] = dataclasses.field(default_factory=set)
    detached: set[int] = dataclasses.field(default_factory=set)  # id(eqn)

    @classmethod
    def of(cls, graph: Graph, x: Var, tap: Var | None, *, constant_statistics: bool = True) -> Flow:
        flow = graph.dataflow()
        detached: set[int] = set()
        depends: set[int] = {x.id}
        for e in graph.eqns:
            if not any(isinstance(a, Var) and a.id in depends for a in e.inputs):
                continue
            if constant_statistics and (e.primitive == "stop_gradient" or is_normaliser_scale(e, flow)):
                detached.add(id(e))
                continue
            depends.update(o.id for o in e.outputs)
        output_ids = {a.id for a in graph.outputs if isinstance(a, Var)}
        ends = set(output_ids) | ({tap.id} if tap is not None else set())
        live, relevant = set(ends), set(ends)
        for e in reversed(graph.eqns):
            if e.member_of is not None:
                continue
            reads = [e.unit.input] if e.unit is not None else [a for a in e.inputs if isinstance(a, Var)]
            if any(o.id in live for o in e.outputs):
                live.update(a.id for a in reads)
            if id(e) not in detached and any(o.id in relevant for o in e.outputs):
                relevant.update(a.id for a in reads if a.id in depends)
        consumers: dict[int, list[Eqn]] = {}
        for e in graph.eqns:
            if e.member_of is None and any(o.id in live for o in e.outputs):
                for a in [e.unit.input] if e.unit is not None else e.inputs:
                    if isinstance(a, Var):
                        consumers.setdefault(a.id, []).append(e)
        return cls(depends, live, consumers, output_ids, relevant, detached)

    def dep(self, a: Atom) -> bool:
        """``a`` depends on the input."""
        return isinstance(a, Var) and a.id in self.depends

    def is_live(self, e: Eqn) -> bool:
        return e.member_of is None and any(o.id in self.live for o in e.outputs)

    def is_relevant(self, e: Eqn) -> bool:
        """Relevance can flow from ``e``'s outputs to an output."""
        return any(o.id in self.relevant for o in e.outputs)


@dataclasses.dataclass
class Layers:
    """The layer steps of a graph: each anchor equation with its absorbed constant chain."""

    by_anchor: dict[int, Step] = dataclasses.field(default_factory=dict)  # id(anchor eqn) -> step
    by_last: dict[int, Step] = dataclasses.field(default_factory=dict)  # id(last eqn of its chain) -> step
    absorbed: set[int] = dataclasses.field(default_factory=set)  # id of every chain eqn

    def add(self, step: Step) -> None:
        self.by_anchor[id(step.anchor)] = step
        self.by_last[id(step.eqns[-1])] = step
        self.absorbed.update(id(c) for c in step.eqns[1:])

    def covers(self, e: Eqn) -> bool:
        return id(e) in self.by_anchor or id(e) in self.absorbed


def find_layers(eqns: Sequence[Eqn], flow: Flow, name_of: Callable[[Eqn], str], *, merge_affine: bool) -> Layers:
    """Every linear layer (conv/dense, sum/average pooling) with the constant affine chain after it."""
    layers = Layers()
    for e in eqns:
        if (
            not flow.is_live(e)
            or not flow.is_relevant(e)
            or e.unit is not None
            or not any(flow.dep(a) for a in e.inputs)
        ):
            continue
        step = layer_anchor(e, flow, name_of)
        if step is not None:
            absorb_chain(step, flow, name_of, merge_affine=merge_affine)
            layers.add(step)
    return layers


def layer_anchor(e: Eqn, flow: Flow, name_of: Callable[[Eqn], str]) -> Step | None:
    """The (chain-less) layer step ``e`` starts, or ``None`` if ``e`` starts no layer."""
    prim = e.primitive
    if prim in LINEAR_ANCHORS:
        dep_pos = [i for i, a in enumerate(e.inputs) if flow.dep(a)]
        if len(dep_pos) != 1:  # two input-dependent operands: a product step (attention), not a layer
            return None
        kind = "conv" if prim == "conv_general_dilated" else "dense"
        position = dep_pos[0]
        return Step(kind, [e], [e.inputs[position], e.inputs[1 - position]], [], has_weight=True, x_position=position)
    if prim in SUM_ANCHORS and len(e.inputs) == 1:
        return Step("avgpool", [e], [e.inputs[0]], [])
    return None


def affine_slot(e: Eqn, value: Var, flow: Flow) -> tuple[int, Atom | None] | None:
    """(position of ``value``, the constant operand) if ``e`` is ``value (op) constant`` keeping the
    value's shape; ``None`` otherwise."""
    if e.primitive not in AFFINE:
        return None
    if e.primitive == "neg":
        return (0, None) if e.inputs[0] is value else None
    a, b = e.inputs
    if a is value and not flow.dep(b):
        pos, const = 0, b
    elif b is value and not flow.dep(a) and e.primitive != "div":
        pos, const = 1, a
    else:
        return None
    if tuple(e.outputs[0].shape) != tuple(value.shape):  # the constant must broadcast into the value
        return None
    return pos, const


def absorb_chain(step: Step, flow: Flow, name_of: Callable[[Eqn], str], *, merge_affine: bool) -> None:
    """Extend ``step`` by the chain of constant ``add``/``sub``/``mul``/``div``/``neg`` that follows its
    anchor (the bias, an inference BatchNorm, a constant scale), and set its output."""
    anchor = step.anchor
    value = anchor.outputs[0]
    slots: list[tuple[int, int]] = []
    # A vmapped ``W @ x + b`` traces to dot_general -> transpose -> add: the transpose is part of the
    # linear map (so the bias after it is the layer's bias, not a separate step).
    while step.has_weight:
        users = flow.consumers.get(value.id, [])
        if value.id in flow.output_ids or len(users) != 1:
            break
        nxt = users[0]
        if nxt.primitive not in LAYOUT or nxt.unit is not None or id(nxt) in flow.detached:
            break
        if len(nxt.inputs) != 1 or nxt.inputs[0] is not value:
            break
        if math.prod(nxt.outputs[0].shape) != math.prod(value.shape):
            break  # a broadcast that copies values is not a change of layout
        step.eqns.append(nxt)
        step.layout += 1
        value = nxt.outputs[0]
    while True:
        users = flow.consumers.get(value.id, [])
        if value.id in flow.output_ids or len(users) != 1:
            break
        nxt = users[0]
        if nxt.unit is not None or id(nxt) in flow.detached:
            break
        slot = affine_slot(nxt, value, flow)
        if slot is None:
            break
        if not merge_affine and name_of(nxt) != name_of(anchor):
            break
        if step.kind == "avgpool" and nxt.primitive in ("add", "add_any", "sub"):
            break  # a pooled value plus a constant is not pooling; keep it separate
        pos, const = slot
        if const is None:
            slots.append((pos, -1))
        else:
            step.inputs.append(const)
            slots.append((pos, len(step.inputs) - (3 if step.has_weight else 2)))
        step.eqns.append(nxt)
        value = nxt.outputs[0]
    step.chain_slots = tuple(slots)
    step.outputs = [value]


def order_steps(
    eqns: Sequence[Eqn], layers: Layers, flow: Flow, name_of: Callable[[Eqn], str], module_types: Mapping[str, str]
) -> list[Step]:
    """Every step in execution order (a layer where its chain ends), named, indexed, and with its
    input's non-negativity (a layer after a ReLU) worked out along the way."""
    steps: list[Step] = []
    nonneg: set[int] = set()
    linear_index = 0
    for e in eqns:
        if id(e) in layers.by_last:
            step = layers.by_last[id(e)]
        elif layers.covers(e) or e.member_of is not None or not flow.is_live(e):
            continue
        elif id(e) in flow.detached:
            step = Step("detach", [e], list(e.inputs), list(e.outputs))
        elif any(flow.dep(o) for o in e.outputs) and not flow.is_relevant(e):
            # computed from the input but only feeding a detached value (a normaliser's statistic)
            step = Step(
                "constant", [e], [e.unit.input] if e.unit is not None else list(e.inputs), list(e.outputs), unit=e.unit
            )
        else:
            classified = _classify(e, flow.dep, flow.live, name_of)
            if classified is None:
                continue
            step = classified
        step.name = name_of(step.anchor)
        step.module_type = module_types.get(step.name)
        step.dependent = tuple(flow.dep(a) for a in step.inputs)
        if step.kind in ("conv", "dense"):
            step.index = linear_index
            linear_index += 1
        if step.kind in ("conv", "dense", "avgpool"):
            step.x_nonnegative = _nonnegative(step.inputs[0] if step.inputs else None, nonneg)
        if output_nonnegative(step, nonneg):
            nonneg.update(o.id for o in step.outputs)
        steps.append(step)
    return steps


def _nonnegative(a: Atom | None, nonneg: set[int]) -> bool:
    return isinstance(a, Var) and a.id in nonneg


def output_nonnegative(step: Step, nonneg: set[int]) -> bool:
    """The step's output is provably ``>= 0``, given the ids of values already known to be."""
    x_in = step.inputs[0] if step.inputs else None
    if step.kind == "activation":
        return step.activation in NONNEGATIVE_ACTIVATIONS
    if step.kind == "softmax":
        return True
    if step.kind == "maxpool" or (step.kind == "avgpool" and not step.has_scale and not step.has_bias):
        return _nonnegative(x_in, nonneg)
    if step.kind == "structural":
        prim = step.anchor.primitive
        if prim == "concatenate":
            return all(_nonnegative(a, nonneg) for a in step.inputs)
        if prim == "pad":
            pad_value = step.inputs[1]
            return _nonnegative(x_in, nonneg) and is_literal(pad_value) and float(compat.literal_value(pad_value)) >= 0
        if prim in SIGN_KEEPING:
            return _nonnegative(x_in, nonneg)
    return False


def tap_at_layer_end(steps: Sequence[Step], tap: Var | None) -> Var | None:
    """The tap, moved to the output of the layer whose equations produce it (after its BatchNorm)."""
    if tap is not None:
        for step in steps:
            if step.kind in ("conv", "dense", "avgpool") and any(tap is o for e in step.eqns for o in e.outputs):
                return step.outputs[0]
    return tap


def _inner_scope(e: Eqn) -> str:
    """For a higher-order equation at the top level (``nn.scan`` over layers puts the ``scan`` itself
    at the root): the Flax scope of the first equation of its body (``"layers"``)."""
    for param in e.eqn.params.values():
        body = getattr(param, "jaxpr", param)
        for inner in getattr(body, "eqns", ()):
            scope = str(inner.source_info.name_stack)
            if scope:
                return scope
    return ""


def _classify(e: Eqn, dep: Callable[[Atom], bool], live: set[int], name_of: Callable[[Eqn], str]) -> Step | None:
    """The step of a single (non-layer) equation or unit, or an error for an unsupported one."""
    outs = list(e.outputs)
    if not any(o.id in live for o in outs):
        return None
    if e.unit is not None:
        unit = e.unit
        if not dep(unit.input):
            return Step("constant", [e], [unit.input], outs, unit=unit)
        if unit.kind == "softmax":
            return Step("softmax", [e], [unit.input], outs, unit=unit)
        return Step("activation", [e], [unit.input], outs, activation=unit.kind, unit=unit)
    dependent = [dep(a) for a in e.inputs]
    if not any(dependent):
        return Step("constant", [e], list(e.inputs), outs)
    prim = e.primitive
    if e.activation is not None:
        positions = [i for i, d in enumerate(dependent) if d]
        if len(positions) != 1 or outs[0].shape != e.inputs[positions[0]].shape or len(outs) != 1:
            raise UnsupportedError(f"activation {e.activation!r} in {name_of(e)!r} is not element-wise on one input.")
        step = Step("activation", [e], list(e.inputs), outs, activation=e.activation)
        step.x_position = positions[0]
        return step
    if prim in MAX_POOLS:
        return Step("maxpool", [e], list(e.inputs), outs)
    if prim in ("add", "add_any", "sub") and all(dependent):
        return Step("sum", [e], list(e.inputs), outs, signs=(1.0, -1.0 if prim == "sub" else 1.0))
    if (prim == "mul" and all(dependent)) or (prim == "dot_general" and all(dependent)):
        return Step("product", [e], list(e.inputs), outs)
    if prim == "div" and dependent[1]:  # a / b with b computed from the input (and not a normaliser's statistic)
        return Step("quotient", [e], list(e.inputs), outs)
    elementwise_affine = (
        prim in AFFINE and not (prim == "div" and dependent[1]) and not (prim == "mul" and all(dependent))
    )
    if elementwise_affine:  # a constant shift/scale not absorbed into a layer (e.g. input normalisation)
        position = dependent.index(True)
        step = Step("affine", [e], list(e.inputs), outs)
        step.x_position = position
        if e.inputs[position].shape != outs[0].shape:
            step.kind = "structural"  # broadcasting: the gradient distributes it
        return step
    if prim == "select_n" and not dependent[0]:  # jnp.where with a constant condition (a mask)
        return Step("structural", [e], list(e.inputs), outs)
    if prim in STRUCTURAL and not (prim in ("dynamic_slice", "gather") and any(dependent[1:])):
        return Step("structural", [e], list(e.inputs), outs)
    where = name_of(e) or _inner_scope(e) or "the model (top level)"
    if any(k in prim for k in FUSED_KERNELS):
        raise UnsupportedError(
            f"relevance propagation cannot see inside the fused kernel {prim!r} in {where!r}: a fused attention "
            "kernel (jax.nn.dot_product_attention with implementation='cudnn', a Pallas/Triton kernel) is opaque to "
            "the trace. Use the XLA implementation (jax.nn.dot_product_attention(..., implementation='xla'), or "
            "flax.linen.dot_product_attention) when explaining the model."
        )
    what = {
        "mul": "a product of two input-dependent values",
        "div": "a division by an input-dependent value that is not a normaliser's statistic",
        "select_n": "a selection on an input-dependent condition "
        "(jnp.where on the input; write activations as nn.relu/jax.nn calls)",
    }.get(prim, f"the primitive {prim!r}")
    raise UnsupportedError(
        f"relevance propagation cannot pass {what} in {where!r}. "
        f"Supported: {supported_summary()}. Unsupported higher-order primitives (scan, while, cond, custom kernels) "
        "raise this error rather than give a silently wrong map."
    )


#: Single-input steps through which an attention weight or a gate keeps its identity (reshapes, masks...).
_GATE_PASSTHROUGH = frozenset({"structural", "affine"})


def mark_gates(steps: Sequence[Step]) -> None:
    """Set ``Step.gates`` of every product: an operand is a *gate* when it is the output of a softmax
    (attention weights) or of an activation (a gated MLP's ``act(gate)``), through reshapes,
    transposes, masks and constant scalings.  CP-LRP ([ali2022]_) holds gates constant."""
    source: dict[int, bool] = {}
    for step in steps:
        if step.kind in ("softmax", "activation"):
            source.update((o.id, True) for o in step.outputs)
        elif step.kind in _GATE_PASSTHROUGH:
            dependent = [a for a, d in zip(step.inputs, step.dependent) if d]
            if len(dependent) == 1 and isinstance(dependent[0], Var) and source.get(dependent[0].id):
                source.update((o.id, True) for o in step.outputs)
        elif step.kind == "product":
            step.gates = tuple(isinstance(a, Var) and source.get(a.id, False) for a in step.inputs)


def run(
    plan: Plan,
    args: Sequence[Any],
    handle: Callable[[Step, list[Any]], list[Any]],
    *,
    probe: Any = None,
    record: dict[int, Any] | None = None,
) -> list[Any]:
    """Evaluate ``plan`` on ``args`` (the flat inputs of the traced function), calling
    ``handle(step, invals) -> outvals`` for every step.  When the plan has a tap, ``probe`` (an array
    of the tap's shape, or ``None``) is added to the tapped value; the cotangent of ``probe`` is then
    the relevance at that layer.  ``record``, when given, receives every value by variable id."""
    env: dict[int, Any] = {} if record is None else record

    def read(a: Atom) -> Any:
        return compat.literal_value(a) if is_literal(a) else env[a.id]

    for var, value in plan.graph.consts:
        env[var.id] = value
    for var, value in zip(plan.graph.inputs, args):
        env[var.id] = value
    if plan.tap is not None and plan.tap.id in env and probe is not None:  # tap on the input itself
        env[plan.tap.id] = env[plan.tap.id] + probe
    for step in plan.steps:
        outs = handle(step, [read(a) for a in step.inputs])
        for var, value in zip(step.outputs, outs):
            if plan.tap is not None and var is plan.tap and probe is not None:
                value = value + probe
            env[var.id] = value
    return [read(a) for a in plan.graph.outputs]


def default_handle(step: Step, invals: list[Any]) -> list[Any]:
    """Evaluate a step as the model does (the plain forward pass)."""
    return step.forward(invals)


def trace_plan(
    fn: Callable[..., Any],
    args: Sequence[Any],
    x_argnum: int,
    *,
    probe_argnum: int | None = None,
    **options: Any,
) -> tuple[Plan, Any, list[Any]]:
    """Trace ``fn(*args)`` and analyse it: ``(plan, output treedef, flat args)``.

    ``x_argnum`` (and ``probe_argnum``) index ``args``; each must be a single array.
    """
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    flat_args, _ = jax.tree_util.tree_flatten(args)
    offsets = list(itertools.accumulate([len(jax.tree_util.tree_leaves(a)) for a in args], initial=0))
    graph = flatten(closed)
    x_index = offsets[x_argnum]
    embedding = None
    if not jnp.issubdtype(graph.inputs[x_index].aval.dtype, jnp.inexact):
        from .tokens import split_at_embedding  # integer inputs: the plan starts at the embedding lookup

        graph, embedding = split_at_embedding(
            graph, x_index, name_of=lambda e: layer_name(e.scope, options.get("root"))
        )
        x_index = len(graph.inputs) - 1
    plan = analyse(graph, x_index, probe_index=None if probe_argnum is None else offsets[probe_argnum], **options)
    plan.embedding = embedding
    return plan, jax.tree_util.tree_structure(out_shape), flat_args
