"""The one activation detector, and rules that target an activation kind.

An *activation* is an element-wise function applied to a value the model computed (a layer's
output, a residual sum, a pooled map).  It reaches the jaxpr in three forms, none of them a module:

* a named call: ``nn.relu``/``jax.nn.relu`` (and ``relu6``) trace to a ``custom_jvp_call`` named
  after the function; ``jax.nn.silu``, ``leaky_relu``, ``elu``, ``softplus``... to a ``jit`` with
  that name.  Such a call is one unit (:func:`traced_graph` keeps it whole), so the ``max(x, 0)``
  inside ``jax.nn.celu`` or the ``max`` inside ``softplus`` is never taken for a ReLU;
* an element-wise primitive: ``tanh``, ``logistic`` (kind ``"sigmoid"``);
* ``jnp.maximum(x, 0)`` / ``jnp.maximum(0, x)``: a ``max`` with a scalar literal zero (kind ``"relu"``).

**Not an activation: a normaliser's statistic.**  Flax's and Equinox's LayerNorm and GroupNorm, and
BatchNorm with batch statistics, clamp the variance, ``var = max(0, mean(x²) - mean(x)²)``: the same
``max`` with a literal zero.  :func:`is_normaliser_statistic` recognises it by what it is -- a clamp
of a value computed from a reduction (``reduce_sum``) of squares, whose result then scales a value
(it reaches ``rsqrt``/``sqrt``, a divisor, or a negative power) -- and :func:`annotate` does not mark
it.  Known limits: a statistic built from ``dot_general`` instead of ``reduce_sum`` (an ``einsum``
mean), or whose use as a scale is more than a few broadcasts/additions away from the clamp, is not
recognised and would still count as a ReLU; a genuine ReLU of a mean square that then divides
something would not count.

Every reader of a traced model gets its activations from :func:`annotate`, on the flat graph of
:mod:`xai_jax.trace.walker`: the gradient interpreter (so rules such as the guided ReLU apply to
exactly these), the relevance propagation graph and the layer listing (``"conv4+relu"``).

**Rules by activation kind.**  An interpreter rule table (:func:`xai_jax.trace.rewrite`) is keyed by
primitive name or by :class:`Activation`: ``{Activation("relu"): rule}`` gives every ReLU, in every
form, the rule (called with the original equation and its input values; :func:`activation_input`
tells which input is the activation's).  :func:`relu_rules` builds such a table from a backward
function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import compat
from .walker import Dataflow, Eqn, Graph, Rule, Unit, Var, flatten, is_literal, is_zero_literal

# ---------------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------------

#: Named activation functions (a ``custom_jvp_call`` or ``jit`` with this name), kept whole.
ACTIVATION_NAMES = frozenset(
    {
        "relu",
        "relu6",
        "leaky_relu",
        "elu",
        "celu",
        "selu",
        "silu",
        "swish",
        "sigmoid",
        "hard_sigmoid",
        "hard_silu",
        "hard_swish",
        "hard_tanh",
        "softplus",
        "soft_sign",
        "log_sigmoid",
        "mish",
        "tanh",
        "squareplus",
        "sparse_plus",
    }
)
#: Activations whose output is never negative (used to skip terms of sign-split rules).
NONNEGATIVE_ACTIVATIONS = frozenset(
    {"relu", "relu6", "sigmoid", "hard_sigmoid", "softplus", "squareplus", "sparse_plus"}
)
#: Element-wise primitives that are activations, and their kind.
ACTIVATION_PRIMITIVES = {"tanh": "tanh", "logistic": "sigmoid"}

# ReLU's gradient for a modified ReLU rule: backward(x, g) -> the cotangent passed to x, given the
# ReLU's input x and incoming cotangent g.
ReluBackward = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Activation:
    """Key of an interpreter rule that applies to every activation of this kind (``"relu"``...),
    whatever its form (named call, primitive, ``jnp.maximum(x, 0)``)."""

    kind: str


# ---------------------------------------------------------------------------------------------------
# Recognition by form (one equation)
# ---------------------------------------------------------------------------------------------------


def named_activation(eqn: Any) -> str | None:
    """The name of a named activation call (``custom_jvp_call`` named ``relu``, ``jit`` named
    ``silu``...), else ``None``."""
    name = eqn.primitive.name
    if name == "custom_jvp_call":
        fn = compat.custom_jvp_function_name(eqn)
        return fn if fn in ACTIVATION_NAMES else None
    if name in compat.JIT_PRIMITIVES:
        fn = eqn.params.get("name")
        return fn if fn in ACTIVATION_NAMES else None
    return None


def activation_form(eqn: Any) -> str | None:
    """The activation kind ``eqn`` has by its form alone (a named call, ``tanh``/``logistic``, a
    ``max`` with exactly one scalar zero literal), else ``None``.  :func:`annotate` adds the
    exclusion of normaliser statistics, which needs the equation's neighbours."""
    named = named_activation(eqn)
    if named is not None:
        return named
    name = eqn.primitive.name
    if name in ACTIVATION_PRIMITIVES:
        return ACTIVATION_PRIMITIVES[name]
    if name == "max" and len(eqn.invars) == 2 and is_zero_literal(eqn.invars[0]) != is_zero_literal(eqn.invars[1]):
        return "relu"
    return None


def activation_input(eqn: Any) -> int:
    """Position of the activation's input among ``eqn.invars`` (the operand that is not the literal
    zero of ``max(x, 0)``; the first non-literal input of a named call)."""
    if eqn.primitive.name == "max":
        return 1 if is_zero_literal(eqn.invars[0]) else 0
    return next((i for i, v in enumerate(eqn.invars) if not is_literal(v)), 0)


def is_relu_call(eqn: Any) -> bool:
    """True for the ``custom_jvp_call`` that ``nn.relu``/``jax.nn.relu`` trace to."""
    return eqn.primitive.name == "custom_jvp_call" and named_activation(eqn) == "relu"


def relu_input(eqn: Any) -> int | None:
    """Index of the ReLU's input among ``eqn.invars`` if ``eqn`` has a ReLU's form, else ``None``
    (by form only: whether it is a normaliser's statistic is decided on the graph, :func:`annotate`)."""
    return activation_input(eqn) if activation_form(eqn) == "relu" else None


# ---------------------------------------------------------------------------------------------------
# Normaliser statistics
# ---------------------------------------------------------------------------------------------------

#: What a statistic passes through between its reduction and its clamp: the division by the count,
#: ``mean(x²) - mean(x)²``, broadcasts, casts, a cross-device sum, the ``where`` Equinox's
#: ``jnp.var`` puts around an empty reduction.
_STATISTIC_ARITHMETIC = frozenset(
    {
        "add",
        "sub",
        "mul",
        "div",
        "neg",
        "broadcast_in_dim",
        "reshape",
        "squeeze",
        "expand_dims",
        "convert_element_type",
        "copy",
        "transpose",
        "select_n",
        "psum",
        "reduce_precision",
        "max",
    }
)
#: What the clamped statistic passes through before it scales a value (``var + eps``, broadcasts).
_SCALE_PASSTHROUGH = frozenset(
    {
        "add",
        "mul",
        "broadcast_in_dim",
        "reshape",
        "squeeze",
        "expand_dims",
        "convert_element_type",
        "copy",
        "transpose",
        "reduce_precision",
    }
)
_SHAPE_ONLY = frozenset(
    {"reshape", "transpose", "convert_element_type", "copy", "broadcast_in_dim", "reduce_precision"}
)
_SEARCH_DEPTH = 8  # equations between the reduction and the clamp, or between the clamp and the scale


def _is_square(e: Eqn | None) -> bool:
    """``square(v)``, ``v ** 2`` (``integer_pow``/``pow``) or ``v * v``."""
    if e is None:
        return False
    p = e.primitive
    if p == "square":
        return True
    if p == "integer_pow":
        return e.params.get("y") == 2
    if p == "pow":
        return is_literal(e.inputs[1]) and float(compat.literal_value(e.inputs[1])) == 2.0
    return p == "mul" and isinstance(e.inputs[0], Var) and e.inputs[0] is e.inputs[1]


def _reduces_squares(e: Eqn, flow: Dataflow) -> bool:
    """``e`` is a ``reduce_sum`` of squares (through reshapes and casts)."""
    if e.primitive != "reduce_sum":
        return False
    source = flow.producer_of(e.inputs[0])
    while source is not None and source.primitive in _SHAPE_ONLY:
        source = flow.producer_of(source.inputs[0])
    return _is_square(source)


def _computed_from_mean_square(atom: Any, flow: Dataflow) -> bool:
    """``atom`` is computed, through statistic arithmetic only, from a reduction of squares."""
    frontier, seen = [atom], set()
    for _ in range(_SEARCH_DEPTH):
        following: list[Any] = []
        for value in frontier:
            e = flow.producer_of(value)
            if e is None or id(e) in seen:
                continue
            seen.add(id(e))
            if _reduces_squares(e, flow):
                return True
            if e.primitive in _STATISTIC_ARITHMETIC:
                following.extend(a for a in e.inputs if isinstance(a, Var))
        frontier = following
    return False


def _is_scale(e: Eqn, value: Var) -> bool:
    p = e.primitive
    if p in ("rsqrt", "sqrt"):
        return True
    if p == "div":
        return e.inputs[1] is value
    if p == "integer_pow":
        return e.params.get("y", 0) < 0
    if p == "pow":
        return e.inputs[0] is value and is_literal(e.inputs[1]) and float(compat.literal_value(e.inputs[1])) < 0
    return False


def _scales_a_value(atom: Var, flow: Dataflow) -> bool:
    """``atom`` goes on (through ``+ eps``, broadcasts, casts) to ``rsqrt``/``sqrt``, a divisor or a
    negative power: it is used to scale something."""
    frontier, seen = [atom], set()
    for _ in range(_SEARCH_DEPTH):
        following: list[Any] = []
        for value in frontier:
            for e in flow.consumers_of(value):
                if id(e) in seen:
                    continue
                seen.add(id(e))
                if _is_scale(e, value):
                    return True
                if e.primitive in _SCALE_PASSTHROUGH:
                    following.extend(e.outputs)
        frontier = following
    return False


def is_normaliser_statistic(e: Eqn, flow: Dataflow) -> bool:
    """``e`` (a ReLU by its form) clamps a normaliser's statistic: its input is computed from a
    reduction of squares and its output scales a value -- the variance clamp of LayerNorm, GroupNorm
    and batch-statistics BatchNorm in Flax and Equinox, ``max(0, mean(x²) - mean(x)²)``."""
    source = e.inputs[activation_input(e.eqn)]
    return (
        isinstance(source, Var)
        and len(e.outputs) == 1
        and _computed_from_mean_square(source, flow)
        and _scales_a_value(e.outputs[0], flow)
    )


def is_normaliser_scale(e: Eqn, flow: Dataflow) -> bool:
    """``e`` computes a normaliser's scale from its statistics: ``rsqrt``/``sqrt`` or a negative power
    of a value computed from a reduction of squares -- ``rsqrt(var + ε)`` of LayerNorm, RMSNorm and
    GroupNorm (Flax, Equinox, hand-written ``(x - μ) / sqrt(var + ε)``).  Relevance propagation holds
    it constant (the identity rule on the normalisation, [achtibat2024]_, [ali2022]_)."""
    p = e.primitive
    if p in ("rsqrt", "sqrt"):
        pass
    elif p == "integer_pow":
        if e.params.get("y", 0) >= 0:
            return False
    elif p == "pow":
        if not (is_literal(e.inputs[1]) and float(compat.literal_value(e.inputs[1])) < 0):
            return False
    else:
        return False
    return isinstance(e.inputs[0], Var) and _computed_from_mean_square(e.inputs[0], flow)


# ---------------------------------------------------------------------------------------------------
# The detector on a flat graph
# ---------------------------------------------------------------------------------------------------

#: A recogniser: ``(equation, dataflow) -> (kind, position of the activation's input)`` or ``None``.
Recogniser = Callable[[Eqn, Dataflow], tuple[str, int] | None]
#: An exclusion: ``(equation, kind, dataflow) -> True`` when a match is not an activation after all.
Exclusion = Callable[[Eqn, str, Dataflow], bool]


def by_form(e: Eqn, flow: Dataflow) -> tuple[str, int] | None:
    """Named calls, ``tanh``/``logistic`` and ``max(x, 0)`` (:func:`activation_form`)."""
    kind = activation_form(e.eqn)
    return None if kind is None else (kind, activation_input(e.eqn))


def normaliser_statistic(e: Eqn, kind: str, flow: Dataflow) -> bool:
    """A ReLU-shaped clamp of a normaliser's variance (:func:`is_normaliser_statistic`)."""
    return kind == "relu" and is_normaliser_statistic(e, flow)


#: How activations are recognised, in order (the first match wins).  A new form -- an activation
#: spread over several equations, such as the exact GELU ``x * Φ(x)`` -- is one more recogniser.
RECOGNISERS: tuple[Recogniser, ...] = (by_form,)
#: What is never an activation, whatever its form.
EXCLUSIONS: tuple[Exclusion, ...] = (normaliser_statistic,)


# ---------------------------------------------------------------------------------------------------
# Units: functions of one tensor spread over several equations (GELU, a hand-written softmax...)
# ---------------------------------------------------------------------------------------------------

#: Element-wise primitives (every operand of the output's shape, or a scalar literal).
ELEMENTWISE = frozenset(
    {
        "neg",
        "exp",
        "exp2",
        "log",
        "log1p",
        "expm1",
        "tanh",
        "logistic",
        "erf",
        "erfc",
        "erf_inv",
        "sin",
        "cos",
        "sqrt",
        "rsqrt",
        "cbrt",
        "integer_pow",
        "square",
        "abs",
        "sign",
        "copy",
        "copy_p",
        "reduce_precision",
        "add",
        "add_any",
        "sub",
        "mul",
        "div",
        "max",
        "min",
        "pow",
        "select_n",
        "gt",
        "ge",
        "lt",
        "le",
        "eq",
        "ne",
        "convert_element_type",
    }
)
#: Element-wise primitives that are affine in their one non-literal operand (trimmed off a unit's ends,
#: so a scale or shift after an activation stays a step of its own).
_AFFINE_LITERAL = frozenset(
    {"add", "add_any", "sub", "mul", "div", "neg", "copy", "copy_p", "convert_element_type", "reduce_precision"}
)
_COMPARISONS = frozenset({"gt", "ge", "lt", "le", "eq", "ne"})

#: Known element-wise functions a unit is compared with (on sample points) to name its kind.
_KNOWN_FUNCTIONS: tuple[tuple[str, Callable[[jax.Array], jax.Array]], ...] = (
    ("gelu", lambda v: jax.nn.gelu(v, approximate=False)),
    ("gelu", lambda v: jax.nn.gelu(v, approximate=True)),
    ("silu", jax.nn.silu),
    ("sigmoid", jax.nn.sigmoid),
    ("tanh", jnp.tanh),
    ("softplus", jax.nn.softplus),
    ("mish", jax.nn.mish),
    ("relu", jax.nn.relu),
    ("leaky_relu", jax.nn.leaky_relu),
    ("elu", jax.nn.elu),
)


def _float(atom: Any) -> bool:
    return jnp.issubdtype(atom.aval.dtype, jnp.inexact)


def _elementwise_on(e: Eqn, members: set[int], shape: tuple[int, ...]) -> bool:
    """``e`` is element-wise, every non-literal operand is in ``members`` (value ids), and it keeps
    ``shape`` (a named activation call counts as element-wise)."""
    if len(e.outputs) != 1 or e.outputs[0].shape != shape:
        return False
    if e.primitive not in ELEMENTWISE and named_activation(e.eqn) is None:
        return False
    operands = [a for a in e.inputs if not is_literal(a)]
    return bool(operands) and all(isinstance(a, Var) and a.id in members and a.shape == shape for a in operands)


def _is_affine_literal(e: Eqn) -> bool:
    return e.primitive in _AFFINE_LITERAL and sum(not is_literal(a) for a in e.inputs) == 1


def elementwise_unit(start: Var, flow: Dataflow, claimed: set[int], index: dict[int, int]) -> Unit | None:
    """The largest element-wise function of the single tensor ``start`` that its consumers compute
    with literals only (``x * Φ(x)``, ``0.5 x (1 + tanh(...))``, ``x * sigmoid(x)``, ``x ** 2``...), as
    a :class:`Unit` with one value used outside it; ``None`` if there is none, if it is one equation
    already recognised by its form, or if it is affine (a scale or shift is not an activation)."""
    shape = start.shape
    if not _float(start):
        return None
    members: set[int] = {start.id}
    eqns: list[Eqn] = []
    frontier = sorted({id(c): c for c in flow.consumers_of(start)}.values(), key=lambda c: index[id(c)])
    while frontier:
        grown = False
        for e in frontier:
            if id(e) in claimed or any(e is m for m in eqns) or not _elementwise_on(e, members, shape):
                continue
            eqns.append(e)
            members.add(e.outputs[0].id)
            grown = True
        if not grown:
            break
        candidates = {id(c): c for m in eqns for c in flow.consumers_of(m.outputs[0])}
        frontier = sorted((c for c in candidates.values() if not any(c is m for m in eqns)), key=lambda c: index[id(c)])
    eqns.sort(key=lambda e: index[id(e)])
    # trim the ends: a trailing scale/shift (its input then becomes the unit's output), a leading
    # scale/shift that alone reads the start (its output then becomes the start)
    while len(eqns) > 1 and _is_affine_literal(eqns[-1]) and _escapes(eqns, flow) == [eqns[-1].outputs[0]]:
        operand = next(a for a in eqns[-1].inputs if not is_literal(a))
        if len(flow.consumers_of(operand)) != 1:
            break
        eqns.pop()
    while len(eqns) > 1 and _is_affine_literal(eqns[0]):
        readers = [e for e in eqns if any(a is start for a in e.inputs)]
        if readers != [eqns[0]]:
            break
        start = eqns.pop(0).outputs[0]
    escaping = _escapes(eqns, flow)
    if not eqns or len(escaping) != 1:
        return None
    if all(_is_affine_literal(e) for e in eqns):
        return None
    if len(eqns) == 1 and activation_form(eqns[0].eqn) is not None and eqns[0].primitive != "max":
        return None  # a lone tanh/logistic/named call: already an activation by its form
    if all(e.primitive in _COMPARISONS or _is_affine_literal(e) for e in eqns):
        return None
    return Unit("elementwise", eqns, start, escaping[0])


def _escapes(eqns: Sequence[Eqn], flow: Dataflow) -> list[Var]:
    """Values made by ``eqns`` that something outside them reads (or that the graph returns)."""
    inside = {id(e) for e in eqns}
    out = []
    for e in eqns:
        v = e.outputs[0]
        users = flow.consumers_of(v)
        if not users or any(id(u) not in inside for u in users):
            out.append(v)
    return out


def name_unit(unit: Unit) -> str:
    """The kind of an element-wise unit: the known function it equals on sample points (``"gelu"``,
    ``"silu"``...), else ``"elementwise"``."""
    shape = unit.input.shape
    points = np.linspace(-4.0, 4.0, 41, dtype=np.float32)[: max(1, int(np.prod(shape)))]
    try:
        with jax.ensure_compile_time_eval():
            values = jnp.asarray(np.resize(points, shape).astype(unit.input.aval.dtype))
            got = np.asarray(unit.evaluate(values), np.float32).reshape(-1)[: points.size]
            for kind, fn in _KNOWN_FUNCTIONS:
                if np.allclose(got, np.asarray(fn(jnp.asarray(points))), rtol=1e-4, atol=1e-5):
                    return kind
    except Exception:
        return "elementwise"
    return "elementwise"


_SOFTMAX_SHAPE = frozenset({"broadcast_in_dim", "reshape", "convert_element_type", "expand_dims"})


def softmax_unit(e: Eqn, flow: Dataflow) -> Unit | None:
    """``e`` is the division of ``softmax(a) = exp(a - m) / Σ exp(a - m)`` (``m`` the stop-gradient
    maximum of ``a``, or nothing): the whole softmax as a :class:`Unit` with input ``a``.  This is
    how ``jax.nn.softmax`` traces (it is inlined, not a named call)."""
    if e.primitive != "div" or not all(isinstance(a, Var) for a in e.inputs):
        return None
    numerator, denominator = e.inputs
    exp = flow.producer_of(numerator)
    if exp is None or exp.primitive != "exp":
        return None
    members = [e, exp]
    chain = flow.producer_of(denominator)
    while chain is not None and chain.primitive in _SOFTMAX_SHAPE:
        members.append(chain)
        chain = flow.producer_of(chain.inputs[0])
    if chain is None or chain.primitive != "reduce_sum" or chain.inputs[0] is not numerator:
        return None
    members.append(chain)
    axes = tuple(int(a) for a in chain.params["axes"])
    a = exp.inputs[0]
    source = flow.producer_of(a)
    if (
        source is not None
        and source.primitive == "sub"
        and isinstance(source.inputs[0], Var)
        and _is_constant_shift(source.inputs[1], flow)
    ):
        members.append(source)  # exp(a - m) with m a stop-gradient value (the maximum): softmax is shift-invariant
        a = source.inputs[0]
    inside = {id(m) for m in members}
    for m in members:  # nothing else may read the softmax's intermediate values
        if m is not e and any(id(u) not in inside for u in flow.consumers_of(m.outputs[0])):
            return None
    if not isinstance(a, Var) or a.shape != e.outputs[0].shape:
        return None
    return Unit("softmax", members, a, e.outputs[0], axes)


def _is_constant_shift(atom: Any, flow: Dataflow) -> bool:
    """``atom`` is a literal or reaches a ``stop_gradient`` through broadcasts/reshapes/casts."""
    for _ in range(_SEARCH_DEPTH):
        if is_literal(atom):
            return True
        p = flow.producer_of(atom)
        if p is None:
            return False
        if p.primitive == "stop_gradient":
            return True
        if p.primitive not in _SOFTMAX_SHAPE and p.primitive != "transpose":
            return False
        atom = p.inputs[0]
    return False


def annotate_units(graph: Graph) -> Graph:
    """Mark the multi-equation units of ``graph`` (softmaxes first, then element-wise functions of
    one tensor: :func:`softmax_unit`, :func:`elementwise_unit`): the last equation of each gets
    ``Eqn.unit``, the others ``Eqn.member_of``.  A unit's members lose any single-equation
    activation mark (the ``tanh`` inside a tanh-approximated GELU is part of the GELU).  Used by the
    relevance propagation graph; the gradient interpreter keeps single equations."""
    flow = graph.dataflow()
    index = {id(e): i for i, e in enumerate(graph.eqns)}
    claimed: set[int] = set()

    def claim(unit: Unit) -> None:
        unit.eqns.sort(key=lambda m: index[id(m)])
        last = next(m for m in unit.eqns if m.outputs[0] is unit.output)
        for m in unit.eqns:
            claimed.add(id(m))
            if m is not last:
                m.member_of = last
                m.activation = m.activation_input = None
        last.unit = unit
        last.activation = last.activation_input = None

    for e in graph.eqns:
        unit = softmax_unit(e, flow)
        if unit is not None and not any(id(m) in claimed for m in unit.eqns):
            claim(unit)
    for e in graph.eqns:
        if id(e) in claimed:
            continue
        if e.primitive not in ELEMENTWISE:
            continue
        for start in [a for a in e.inputs if isinstance(a, Var)]:
            unit = elementwise_unit(start, flow, claimed, index)
            if unit is not None and any(m is e for m in unit.eqns):
                if len(unit.eqns) == 1 and unit.eqns[0].activation is not None:
                    break  # a recognised single-equation activation (jnp.maximum(x, 0): a ReLU) keeps its kind
                unit.kind = name_unit(unit) if len(unit.eqns) > 1 else "elementwise"
                claim(unit)
                break
    return graph


def annotate(graph: Graph) -> Graph:
    """Mark every activation of ``graph`` (``Eqn.activation``: its kind, ``Eqn.activation_input``:
    the position of its input) by :data:`RECOGNISERS`, minus :data:`EXCLUSIONS` (normaliser
    statistics).  Returns ``graph``."""
    flow = graph.dataflow()
    for e in graph.eqns:
        match = next((m for m in (recognise(e, flow) for recognise in RECOGNISERS) if m is not None), None)
        if match is None or any(exclude(e, match[0], flow) for exclude in EXCLUSIONS):
            continue
        e.activation, e.activation_input = match
    return graph


def traced_graph(
    jaxpr: Any,
    consts: Sequence[Any],
    *,
    inline_custom: bool,
    keep_whole: Callable[[Any], bool] | None = None,
    units: bool = False,
) -> Graph:
    """``jaxpr`` flattened (:func:`xai_jax.trace.walker.flatten`, named activation calls kept whole,
    and any equation ``keep_whole`` selects) with its activations marked (:func:`annotate`).
    The one way the interpreter, the propagation graph and the layer listing read a model."""

    def whole(eqn: Any) -> bool:
        return named_activation(eqn) is not None or (keep_whole is not None and keep_whole(eqn))

    graph = annotate(flatten(jaxpr, consts, inline_custom=inline_custom, keep_whole=whole))
    return annotate_units(graph) if units else graph


def find_activations(fn: Callable[..., Any], *args: Any, inline_custom: bool = False) -> list[Eqn]:
    """The activation equations of ``fn(*args)`` (arrays or ``jax.ShapeDtypeStruct``s), in order, as
    the gradient interpreter sees them (``inline_custom=True``: as relevance propagation does)."""
    closed = jax.make_jaxpr(fn)(*args)
    graph = traced_graph(closed.jaxpr, closed.consts, inline_custom=inline_custom)
    return [e for e in graph.eqns if e.activation is not None]


def count_relus(fn: Callable[..., Any], *args: Any) -> int:
    """Number of ReLUs the interpreter recognises in ``fn(*args)``, nested calls included."""
    return sum(e.activation == "relu" for e in find_activations(fn, *args))


# ---------------------------------------------------------------------------------------------------
# Modified ReLU backward passes
# ---------------------------------------------------------------------------------------------------


def relu_with_backward(backward: ReluBackward) -> Callable[[jax.Array], jax.Array]:
    """``max(x, 0)`` whose vector-Jacobian product is ``backward(x, g)``."""

    @jax.custom_vjp
    def relu(x: jax.Array) -> jax.Array:
        return jnp.maximum(x, jnp.zeros((), x.dtype))

    relu.defvjp(lambda x: (relu(x), x), lambda x, g: (backward(x, g),))
    return relu


def relu_rules(backward: ReluBackward) -> dict[Any, Rule]:
    """Interpreter rules giving every ReLU of a model the backward pass ``backward``: one
    ``jax.custom_vjp`` function whose forward is ``max(x, 0)``, so a shared ``nn.relu``, an inline
    ``jax.nn.relu`` and a ``jnp.maximum(x, 0)`` get the same rule."""
    relu = relu_with_backward(backward)

    def rule(eqn: Any, invals: Sequence[Any]) -> Any:
        out = relu(invals[activation_input(eqn)])
        return [out] if eqn.primitive.multiple_results else out

    return {Activation("relu"): rule}


__all__ = [
    "ACTIVATION_NAMES",
    "ACTIVATION_PRIMITIVES",
    "ELEMENTWISE",
    "EXCLUSIONS",
    "NONNEGATIVE_ACTIVATIONS",
    "RECOGNISERS",
    "Activation",
    "activation_form",
    "activation_input",
    "annotate",
    "annotate_units",
    "by_form",
    "count_relus",
    "elementwise_unit",
    "find_activations",
    "is_normaliser_scale",
    "is_normaliser_statistic",
    "is_relu_call",
    "name_unit",
    "named_activation",
    "normaliser_statistic",
    "relu_input",
    "relu_rules",
    "relu_with_backward",
    "softmax_unit",
    "traced_graph",
]
