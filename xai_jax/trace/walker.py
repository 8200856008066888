"""The one walk over a traced model: flattening nested calls, def-use, evaluation with rules.

Every part of xai_jax that reads a model's jaxpr -- the gradient interpreter
(:mod:`xai_jax.trace.interpreter`), the relevance propagation graph (:mod:`xai_jax.trace.graph`)
and the layer listing and probing (:mod:`xai_jax.trace.layers`) -- reads it as the flat
:class:`Graph` that :func:`flatten` builds, so all of them see the same equations and the same
activations (:mod:`xai_jax.trace.activations` annotates them once, on this graph).

Flattening inlines nested calls so that rules and analyses apply inside them:

* ``jit``/``pjit``, ``closed_call``, ``core_call`` and ``remat``/``checkpoint`` (:data:`INLINABLE_CALLS`)
  are always inlined;
* the *primal* of ``custom_jvp``/``custom_vjp`` calls (:data:`CUSTOM_DERIVATIVE_CALLS`) only with
  ``inline_custom=True``.  Relevance propagation needs it (it replaces every backward pass anyway);
  gradient methods must not (the custom derivative is the function's gradient: ``nn.relu``'s is
  0 at 0, a user's ``custom_vjp`` layer may have any);
* an equation for which ``keep_whole(eqn)`` is true is kept as one equation (named activation
  functions such as ``jax.nn.silu``, a ``jit`` named ``silu``, are units of their own).

Each flat equation keeps its Flax module path, joined across nesting levels from
``eqn.source_info.name_stack``.  :func:`evaluate_graph` re-evaluates the graph with a rule chosen
per equation; everything not given a rule is bound as it was traced.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ..core import compat

# rule(eqn, invals) -> outvals (a list when eqn.primitive.multiple_results, else one value); ``eqn``
# is the original jaxpr equation (primitive, params, context).
Rule = Callable[[Any, Sequence[Any]], Any]

#: Calls always inlined: jit/pjit, closed_call, and rematerialisation wrappers (``nn.remat``).
INLINABLE_CALLS = compat.INLINABLE_CALLS
#: Functions with a custom derivative: their primal is inlined only with ``inline_custom=True``.
CUSTOM_DERIVATIVE_CALLS = compat.CUSTOM_DERIVATIVE_CALLS
#: Higher-order primitives a walk cannot see inside (bound unchanged by gradient methods).
OPAQUE_HIGHER_ORDER = frozenset(
    {"scan", "while", "cond", "custom_vjp_call", "custom_vjp_call_jaxpr", "shard_map", "xla_pmap"}
)


def bind_original(eqn: Any, invals: Sequence[Any]) -> Any:
    """Apply ``eqn``'s own primitive to ``invals`` (what a rule does for equations it leaves alone)."""
    return compat.bind_equation(eqn, invals)


def inner_jaxpr(eqn: Any, *, inline_custom: bool) -> tuple[Any, Sequence[Any]] | None:
    """``(jaxpr, consts)`` of the body that flattening inlines in place of ``eqn``, or ``None``."""
    body = compat.call_body(eqn)
    if body is None and inline_custom:
        body = compat.custom_call_primal(eqn)
    return body


def is_literal(atom: Any) -> bool:
    return compat.is_literal(atom)


def is_zero_literal(atom: Any) -> bool:
    """A scalar literal equal to zero (``0``, ``0.0``, ``-0.0``), as in ``jnp.maximum(x, 0)``."""
    if not is_literal(atom):
        return False
    value = compat.literal_value(atom)
    return getattr(value, "ndim", 0) == 0 and float(value) == 0.0


def join_scope(outer: str, inner: str) -> str:
    return "/".join(p for p in (outer, inner) if p)


# ---------------------------------------------------------------------------------------------------
# The flat graph
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Var:
    """A value of the flattened graph (identity-compared)."""

    id: int
    aval: Any

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.aval.shape)

    def __repr__(self) -> str:
        return f"v{self.id}{list(self.shape)}"


Atom = Any  # Var | a jaxpr literal


@dataclasses.dataclass(eq=False)
class Eqn:
    """One equation of the flattened graph.

    ``activation`` is the activation's kind (``"relu"``, ``"tanh"``, ``"silu"``...) when this
    equation is an activation, and ``activation_input`` the position of the activation's input
    among ``inputs``; both are set by :func:`xai_jax.trace.activations.annotate`.
    """

    eqn: Any  # the original jaxpr equation (primitive, params, context)
    inputs: list[Atom]
    outputs: list[Var]
    scope: str  # joined name stack, e.g. "Model/block/conv1"
    depth: int = 0  # how many inlined calls it was nested in (0: the traced function's own equation)
    activation: str | None = None
    activation_input: int | None = None
    #: set on the last equation of a multi-equation unit (an element-wise function of one tensor
    #: spread over several equations, a softmax): see :mod:`xai_jax.trace.activations`
    unit: Unit | None = None
    #: set on the other equations of a unit: the unit's last equation
    member_of: Eqn | None = None

    @property
    def primitive(self) -> str:
        return self.eqn.primitive.name

    @property
    def params(self) -> dict[str, Any]:
        return self.eqn.params

    def bind(self, invals: Sequence[Any]) -> list[Any]:
        out = bind_original(self.eqn, invals)
        return list(out) if self.eqn.primitive.multiple_results else [out]


@dataclasses.dataclass(eq=False)
class Unit:
    """Several equations that together compute one function of one tensor ``input``.

    ``kind`` is ``"softmax"`` (``axes``: the normalised axes) or an element-wise activation's kind
    (``"gelu"``, ``"silu"``..., ``"elementwise"`` when it matches no known function).  ``eqns`` are
    the members in program order; ``output`` is the one value used outside the unit.  ``consts``
    are the non-literal values the members read besides ``input`` and each other (none for the
    recognisers here, which accept literals only).
    """

    kind: str
    eqns: list[Eqn]
    input: Var
    output: Var
    axes: tuple[int, ...] = ()

    def evaluate(self, value: Any) -> Any:
        """The unit's function applied to ``value`` (in place of :attr:`input`).  A softmax is
        computed as ``jax.nn.softmax`` does (its shift, a stop-gradient maximum, may be computed
        from another view of the input, so it is recomputed here)."""
        if self.kind == "softmax":
            shift = jax.lax.stop_gradient(jnp.max(value, axis=self.axes, keepdims=True))
            unnormalized = jnp.exp(value - shift)
            return unnormalized / jnp.sum(unnormalized, axis=self.axes, keepdims=True)
        env: dict[int, Any] = {self.input.id: value}
        for e in self.eqns:
            invals = [compat.literal_value(a) if is_literal(a) else env[a.id] for a in e.inputs]
            for var, out in zip(e.outputs, e.bind(invals)):
                env[var.id] = out
        return env[self.output.id]


@dataclasses.dataclass
class Graph:
    """A traced function as one flat list of equations over :class:`Var` values."""

    inputs: list[Var]
    consts: list[tuple[Var, Any]]
    eqns: list[Eqn]
    outputs: list[Atom]

    def dataflow(self) -> Dataflow:
        return Dataflow.of(self)


@dataclasses.dataclass
class Dataflow:
    """Def-use index of a :class:`Graph`: the equation producing each value and those reading it."""

    producer: dict[int, Eqn]
    consumers: dict[int, list[Eqn]]

    @classmethod
    def of(cls, graph: Graph) -> Dataflow:
        producer: dict[int, Eqn] = {}
        consumers: dict[int, list[Eqn]] = {}
        for e in graph.eqns:
            for o in e.outputs:
                producer[o.id] = e
            for a in e.inputs:
                if isinstance(a, Var):
                    consumers.setdefault(a.id, []).append(e)
        return cls(producer, consumers)

    def producer_of(self, atom: Atom) -> Eqn | None:
        return self.producer.get(atom.id) if isinstance(atom, Var) else None

    def consumers_of(self, atom: Atom) -> list[Eqn]:
        return self.consumers.get(atom.id, []) if isinstance(atom, Var) else []


def flatten(
    jaxpr: Any,
    consts: Sequence[Any],
    *,
    inline_custom: bool,
    keep_whole: Callable[[Any], bool] = lambda eqn: False,
) -> Graph:
    """Inline every nested call of ``jaxpr`` (with ``consts``) into one flat :class:`Graph`."""
    counter = itertools.count()
    eqns: list[Eqn] = []
    graph_consts: list[tuple[Var, Any]] = []

    def const_vars(inner: Any, values: Sequence[Any]) -> list[Var]:
        made = []
        for constvar, value in zip(inner.constvars, values):
            var = Var(next(counter), constvar.aval)
            graph_consts.append((var, value))
            made.append(var)
        return made

    def inline(
        inner: Any, const_atoms: Sequence[Atom], arg_atoms: Sequence[Atom], scope: str, depth: int
    ) -> list[Atom]:
        env: dict[Any, Atom] = {}

        def read(v: Any) -> Atom:
            return v if is_literal(v) else env[v]

        for v, a in zip(inner.constvars, const_atoms):
            env[v] = a
        for v, a in zip(inner.invars, arg_atoms):
            env[v] = a
        for eqn in inner.eqns:
            ins = [read(v) for v in eqn.invars]
            here = join_scope(scope, compat.name_stack(eqn))
            body = None if keep_whole(eqn) else inner_jaxpr(eqn, inline_custom=inline_custom)
            if body is not None:
                outs = inline(body[0], const_vars(body[0], body[1]), ins, here, depth + 1)
            else:
                outs = [Var(next(counter), v.aval) for v in eqn.outvars]
                eqns.append(Eqn(eqn, ins, outs, here, depth))
            for v, a in zip(eqn.outvars, outs):
                if not compat.is_drop_var(v):
                    env[v] = a
        return [read(v) for v in inner.outvars]

    top_consts = const_vars(jaxpr, consts)
    inputs = [Var(next(counter), v.aval) for v in jaxpr.invars]
    outputs = inline(jaxpr, top_consts, inputs, "", 0)
    return Graph(inputs, graph_consts, eqns, outputs)


def evaluate_graph(graph: Graph, args: Sequence[Any], rule_for: Callable[[Eqn], Rule | None]) -> list[Any]:
    """Evaluate ``graph`` on its flat inputs ``args``; each equation runs ``rule_for(eqn)`` if that is
    not ``None`` (called with the original jaxpr equation and the input values), else itself."""
    env: dict[int, Any] = {}

    def read(atom: Atom) -> Any:
        return compat.literal_value(atom) if is_literal(atom) else env[atom.id]

    for var, value in graph.consts:
        env[var.id] = value
    for var, value in zip(graph.inputs, args):
        env[var.id] = value
    for e in graph.eqns:
        invals = [read(a) for a in e.inputs]
        rule = rule_for(e)
        if rule is None:
            outvals = e.bind(invals)
        else:
            outvals = rule(e.eqn, invals)
            if not e.eqn.primitive.multiple_results:
                outvals = [outvals]
        for var, value in zip(e.outputs, outvals):
            env[var.id] = value
    return [read(a) for a in graph.outputs]
