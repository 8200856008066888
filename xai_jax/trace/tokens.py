"""Integer inputs (tokens): explaining a model from its embedding lookup on.

A language model's input is a batch of token ids ``(B, N)``, which cannot be differentiated.  What
can be explained is the *embedding* the model looks them up in, ``e = table[tokens]`` ``(B, N, D)``:
relevance propagation, DeepLIFT, integrated gradients and input × gradient run on the model as a
function of ``e`` and give one value per token, the sum over its embedding ([achtibat2024]_: the
relevance of a token is the sum of its embedding's relevances; LXT does the same).

The lookup is found in the trace, not by name: the one equation that turns a value computed from the
integer input into a floating value (a ``gather`` from a table, as ``nn.Embed`` and ``jnp.take``
trace to; a ``one_hot`` cast also counts when there is no gather).  Other floating values computed
from the tokens (a padding mask cast to float) are held constant.  The model is then rewritten, with
no change to its code, into a function of the embedding: the lookup's output becomes an input.

* :func:`split_at_embedding`: the rewrite on a flat graph (the propagation plan uses it);
* :class:`EmbeddingForward`: a model as ``(variables, e, kwargs) -> outputs`` with the tokens in
  ``kwargs[TOKENS]``, for gradient methods (integrated gradients, input × gradient);
* :func:`embedded`: a prepared call on tokens turned into the same call on their embedding;
* :func:`on_embedding`: the token adapter of the gradient methods (``@method(..., tokens=on_embedding)``):
  the call on the embedding, its result summed per token (what Captum's ``LayerIntegratedGradients``
  on the embedding layer, summed over the embedding axis, gives).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ..core import compat
from ..core.checks import is_traced
from ..core.errors import InputError, UnsupportedError
from ..core.problem import Inputs, Problem, cached_trace
from .activations import traced_graph
from .walker import Eqn, Graph, Var, evaluate_graph, is_literal

#: The key under which :class:`EmbeddingForward` finds the token ids in the model's kwargs.
TOKENS = "__xai_jax_tokens__"


def is_tokens(x: Any) -> bool:
    """``x`` is an integer array (token ids, or any index input)."""
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.integer)


@dataclasses.dataclass
class Embedding:
    """Where a model's integer input becomes floating: the lookup and how to compute its output."""

    var: Var  # the lookup's output (an input of the rewritten graph)
    eqns: list[Eqn]  # the equations that compute it from the graph's inputs, in order
    consts: list[tuple[Var, Any]]
    inputs: list[Var]
    name: str  # the layer the lookup is in ("embed_tokens")

    def value(self, args: Sequence[Any]) -> jax.Array:
        """The embedding for the flat arguments ``args`` of the original graph."""
        env: dict[int, Any] = {}
        for var, value in self.consts:
            env[var.id] = value
        for var, value in zip(self.inputs, args):
            env[var.id] = value
        for e in self.eqns:
            invals = [compat.literal_value(a) if is_literal(a) else env[a.id] for a in e.inputs]
            for var, out in zip(e.outputs, e.bind(invals)):
                env[var.id] = out
        return env[self.var.id]


def _floating(atom: Any) -> bool:
    return jnp.issubdtype(atom.aval.dtype, jnp.inexact)


def find_lookup(graph: Graph, x_index: int, name_of: Callable[[Eqn], str]) -> Eqn:
    """The equation where the integer input ``graph.inputs[x_index]`` becomes floating (see the
    module docstring), or :class:`UnsupportedError`."""
    x = graph.inputs[x_index]
    depends = {x.id}
    boundary: list[Eqn] = []
    for e in graph.eqns:
        if not any(isinstance(a, Var) and a.id in depends for a in e.inputs):
            continue
        if any(_floating(o) for o in e.outputs):
            boundary.append(e)  # the float side is not followed further: it is the embedding (or a constant)
            continue
        depends.update(o.id for o in e.outputs)
    lookups = [
        e
        for e in boundary
        if e.primitive == "gather"
        and _floating(e.inputs[0])
        and not (isinstance(e.inputs[0], Var) and e.inputs[0].id in depends)
    ]
    chosen = lookups if lookups else boundary
    if not lookups and any(_is_plain_cast(e, x) for e in chosen):
        raise InputError(
            f"x has dtype {x.aval.dtype} and the model casts it to floating point as it is (no embedding lookup): "
            "attributions need floating inputs in the model's input range (e.g. uint8 images / 255 as float32)."
        )
    if len(chosen) != 1:
        found = ", ".join(f"{e.primitive} in {name_of(e) or 'the model'!r}" for e in chosen) or "none"
        raise UnsupportedError(
            f"the model's input is integer (tokens), so methods explain the embedding it is looked up in; that needs "
            f"exactly one lookup (a gather from a table, as nn.Embed traces to), found: {found}. Pass the embeddings "
            "as a float input instead (a model taking inputs_embeds)."
        )
    return chosen[0]


def _is_plain_cast(eqn: Eqn, x: Var) -> bool:
    """``eqn`` casts the integer input's values (``x`` itself or a reshaped copy, no one-hot axis) to
    floating point: an image given as integers, not tokens."""
    return eqn.primitive == "convert_element_type" and math.prod(eqn.outputs[0].aval.shape) == math.prod(x.aval.shape)


def split_at_embedding(
    graph: Graph, x_index: int, *, name_of: Callable[[Eqn], str] = lambda e: e.scope
) -> tuple[Graph, Embedding]:
    """``graph`` with the lookup of its integer input ``x_index`` removed and its output appended as
    the last graph input, and the :class:`Embedding` that computes that input from the original
    arguments.  The integer input stays an input (masks computed from it stay constants)."""
    lookup = find_lookup(graph, x_index, name_of)
    var = lookup.outputs[0]
    if len(lookup.outputs) != 1:
        raise UnsupportedError(f"the embedding lookup {lookup.primitive!r} in {name_of(lookup)!r} has several outputs.")
    producer = graph.dataflow().producer
    needed, stack = [], [lookup]
    seen: set[int] = set()
    while stack:  # the equations the lookup needs (its own included)
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        needed.append(e)
        stack.extend(producer[a.id] for a in e.inputs if isinstance(a, Var) and a.id in producer)
    order = {id(e): i for i, e in enumerate(graph.eqns)}
    needed.sort(key=lambda e: order[id(e)])
    embedding = Embedding(var, needed, list(graph.consts), list(graph.inputs), name_of(lookup))
    eqns = [e for e in graph.eqns if e is not lookup]
    return Graph([*graph.inputs, var], graph.consts, eqns, graph.outputs), embedding


def _traced(fn: Callable[..., Any], args: tuple[Any, ...], x_argnum: int) -> tuple[Graph, Embedding, list[Any], Any]:
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    flat = jax.tree_util.tree_leaves(args)
    offset = sum(len(jax.tree_util.tree_leaves(a)) for a in args[:x_argnum])
    graph = traced_graph(closed.jaxpr, closed.consts, inline_custom=False)
    graph, embedding = split_at_embedding(graph, offset)
    return graph, embedding, flat, jax.tree_util.tree_structure(out_shape)


class EmbeddingForward:
    """A model of integer inputs as a function of its embedding: ``(variables, e, kwargs) ->
    outputs``, the token ids in ``kwargs[TOKENS]`` (for masks and anything else computed from them).
    Hashable by the model, so jitted methods compile once per model."""

    is_module = False

    def __init__(self, base: Any) -> None:
        self.base = base
        self.model = getattr(base, "model", base)

    def __hash__(self) -> int:
        return hash(("embedding", self.base))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EmbeddingForward) and other.base == self.base

    def _split(self, kwargs: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        if TOKENS not in kwargs:
            raise InputError("EmbeddingForward needs the token ids in its kwargs (see xai_jax.trace.tokens.embedded).")
        rest = {k: v for k, v in kwargs.items() if k != TOKENS}
        return kwargs[TOKENS], rest

    def embed(self, variables: Any, tokens: jax.Array, kwargs: Mapping[str, Any]) -> jax.Array:
        """The embedding of ``tokens``.  Called eagerly on every method call, so where the model is
        traced with concrete arguments the lookup's equations are found once per model and shapes."""
        args = (variables, tokens, dict(kwargs))

        def lookup(*traced: Any) -> Embedding:
            return _traced(self.base, traced, 1)[1]

        embedding = lookup(*args) if is_traced(args) else cached_trace("token-embedding", self.base, lookup, *args)
        return embedding.value(jax.tree_util.tree_leaves(args))

    def __call__(self, variables: Any, e: jax.Array, kwargs: Mapping[str, Any] | None = None) -> Any:
        tokens, rest = self._split(kwargs or {})
        graph, _, flat, treedef = _traced(self.base, (variables, tokens, rest), 1)
        return jax.tree_util.tree_unflatten(treedef, evaluate_graph(graph, [*flat, e], lambda eqn: None))

    def module(self, what: str = "this method") -> Any:
        raise InputError(
            f"{what} on integer inputs: pass layer names to the methods that take them (lrp, deeplift, "
            "xj.layer_gradient)."
        )


def embedded(problem: Problem, inputs: Inputs) -> tuple[Problem, Inputs]:
    """A call on token ids as the same call on their embedding: ``inputs.x`` becomes the embedding
    ``(B, N, D)`` and the model an :class:`EmbeddingForward` (the tokens travel in the kwargs)."""
    forward = EmbeddingForward(problem.forward)
    e = forward.embed(inputs.variables, inputs.x, inputs.kwargs)
    kwargs = {**inputs.kwargs, TOKENS: inputs.x}
    return Problem(forward, problem.target), inputs._replace(x=e, kwargs=kwargs)  # type: ignore[arg-type]


#: Options that hold a point in input space: token ids given there are looked up like the input.
_INPUT_SPACE_OPTIONS = ("baseline",)


def on_embedding(
    problem: Problem, inputs: Inputs, options: Mapping[str, Any]
) -> tuple[Problem, Inputs, Mapping[str, Any], Callable[[Any], Any]]:
    """A call on token ids ``(B, N)`` as the same call on their embedding ``(B, N, D)``; ``finish``
    sums each embedding-shaped result over the embedding axes, one value per token.

    A ``baseline`` given as token ids of the input's shape (a padding or mask token) is looked up like
    the input; a number is a constant embedding (0: the zero vector, the default).
    """
    tokens = inputs.x
    on_e, e_inputs = embedded(problem, inputs)
    e = e_inputs.x
    options = dict(options)
    for name in _INPUT_SPACE_OPTIONS:
        value = options.get(name)
        if value is not None and not callable(value) and is_tokens(value) and jnp.ndim(value) > 0:
            options[name] = baseline_embedding(problem, inputs, value, e)

    def finish(result: Any) -> Any:
        return jax.tree_util.tree_map(
            lambda leaf: per_token(leaf, tokens) if getattr(leaf, "shape", None) == e.shape else leaf, result
        )

    return on_e, e_inputs, options, finish


def baseline_embedding(problem: Problem, inputs: Inputs, baseline: Any, e: jax.Array) -> jax.Array:
    """A baseline for an embedding ``e``: a number is a constant embedding (0: the zero vector);
    token ids of the input's shape are looked up (a padding or mask token)."""
    baseline = jnp.asarray(baseline)
    if jnp.issubdtype(baseline.dtype, jnp.integer) and baseline.ndim > 0:
        return EmbeddingForward(problem.forward).embed(
            inputs.variables, jnp.broadcast_to(baseline, inputs.x.shape), inputs.kwargs
        )
    return jnp.broadcast_to(baseline.astype(e.dtype), e.shape)


def per_token(values: jax.Array, tokens: jax.Array) -> jax.Array:
    """Sum ``values`` (an embedding's shape) over the axes after the tokens' shape: one value per token."""
    return values.reshape(*tokens.shape, -1).sum(-1)


__all__ = [
    "TOKENS",
    "Embedding",
    "EmbeddingForward",
    "baseline_embedding",
    "embedded",
    "find_lookup",
    "is_tokens",
    "on_embedding",
    "per_token",
    "split_at_embedding",
]
