"""The jaxpr interpreter: re-evaluate a traced model with chosen equations replaced.

This is how xai_jax changes a model's backward pass without touching the model.  The model is
traced with :func:`jax.make_jaxpr` and read as one flat graph (:mod:`xai_jax.trace.walker`, with
its activations marked by :mod:`xai_jax.trace.activations`); :func:`evaluate` runs the equations
and, for each one a rule targets, calls the rule instead.  A rule table is keyed by primitive name
(``"reduce_window_max"``) or by activation kind (``Activation("relu")``: every ReLU, whatever its
form; an activation rule wins over a primitive-name rule).  A rule is usually a
:func:`jax.custom_vjp` function whose forward pass is the original computation and whose backward
pass is the modified one (first-max pooling gradient, guided ReLU), so ``jax.vjp`` of the
rewritten function yields the modified backward pass in one sweep.

Nested calls (``jit``/``pjit``, ``closed_call``, ``remat``/``checkpoint``) are inlined, so rules
apply inside them; named activation calls (``jax.nn.silu``, a ``jit`` named ``silu``) stay one
unit.  Functions with a custom derivative (``custom_jvp``/``custom_vjp``) keep it: gradient methods
must not differentiate their primal.  Other higher-order primitives (``scan``, ``while``, ``cond``)
are bound unchanged; a caller that must see every equation passes ``strict=True`` and gets
:class:`UnsupportedError` naming them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from ..core.errors import UnsupportedError
from .activations import Activation, traced_graph
from .walker import INLINABLE_CALLS, OPAQUE_HIGHER_ORDER, Eqn, Rule, bind_original, evaluate_graph

#: A rule table: primitive name or :class:`~xai_jax.trace.activations.Activation` -> rule.
Rules = Mapping[Any, Rule]

__all__ = ["Activation", "Rule", "Rules", "bind_original", "evaluate", "rewrite", "rule_resolver"]


def rule_resolver(rules: Rules, *, strict: bool = False) -> Callable[[Eqn], Rule | None]:
    """``eqn -> rule or None`` for a rule table: the rule of the equation's activation kind, else of
    its primitive; with ``strict``, an opaque higher-order primitive without a rule is an error."""
    by_kind = {key.kind: rule for key, rule in rules.items() if isinstance(key, Activation)}

    def resolve(e: Eqn) -> Rule | None:
        if e.activation is not None and e.activation in by_kind:
            return by_kind[e.activation]
        rule = rules.get(e.primitive)
        if rule is None and strict and e.primitive in OPAQUE_HIGHER_ORDER:
            raise UnsupportedError(
                f"the model contains a {e.primitive!r} operation, which this method cannot see inside; "
                f"supported nested calls are {sorted(INLINABLE_CALLS)}."
            )
        return rule

    return resolve


def evaluate(
    jaxpr: Any, consts: Sequence[Any], args: Sequence[Any], rules: Rules, *, strict: bool = False
) -> list[Any]:
    """Evaluate ``jaxpr`` on ``args`` with the equations targeted by ``rules`` replaced."""
    # an equation whose primitive has a rule of its own is not inlined (a rule for "pjit" sees the call)
    graph = traced_graph(jaxpr, consts, inline_custom=False, keep_whole=lambda eqn: eqn.primitive.name in rules)
    return evaluate_graph(graph, args, rule_resolver(rules, strict=strict))


def rewrite(fn: Callable[..., Any], rules: Rules, *, strict: bool = False) -> Callable[..., Any]:
    """``fn`` with the equations targeted by ``rules`` replaced by the rules (see :func:`evaluate`).

    The result traces ``fn`` afresh on each call (cheap; done once per compilation under ``jit``)
    and composes with ``jit``, ``vmap`` and ``grad``.
    """

    def rewritten(*args: Any) -> Any:
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        flat_args = jax.tree_util.tree_leaves(args)
        out = evaluate(closed.jaxpr, closed.consts, flat_args, rules, strict=strict)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), out)

    return rewritten
