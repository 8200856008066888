"""The jaxpr interpreter: re-evaluate a traced model with chosen equations replaced.

This is how xai_jax changes a model's backward pass without touching the model.  The model is
traced with :func:`jax.make_jaxpr`; :func:`evaluate` walks the equations and, for each primitive
named in ``rules``, calls the rule instead of the primitive.  A rule is usually a
:func:`jax.custom_vjp` function whose forward pass is the original computation and whose backward
pass is the modified one (first-max pooling gradient, guided ReLU, an LRP rule), so ``jax.vjp`` of
the rewritten function yields the modified backward pass in one sweep.

Nested calls (``jit``/``pjit``, ``closed_call``, ``remat``/``checkpoint``) are inlined, so rules
apply inside them.  Other higher-order primitives (``scan``, ``while``, ``cond``, custom
derivatives other than activation functions) are bound unchanged; a caller that must see every
equation (a relevance rule) passes ``strict=True`` and gets :class:`UnsupportedError` naming them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
from jax.extend import core as jcore

from ..core.errors import UnsupportedError

# rule(eqn, invals) -> outvals (a list when eqn.primitive.multiple_results, else one value)
Rule = Callable[[Any, Sequence[Any]], Any]

_INLINED_CLOSED = frozenset({"jit", "pjit", "closed_call", "core_call"})
_INLINED_OPEN = frozenset({"remat", "remat2", "checkpoint"})
_OPAQUE_HIGHER_ORDER = frozenset({"scan", "while", "cond", "custom_vjp_call", "custom_vjp_call_jaxpr", "shard_map", "xla_pmap"})


def _inner_jaxpr(eqn: Any) -> tuple[Any, Sequence[Any]] | None:
    name = eqn.primitive.name
    if name in _INLINED_CLOSED:
        closed = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
        return closed.jaxpr, closed.consts
    if name in _INLINED_OPEN:
        inner = eqn.params["jaxpr"]
        return (inner.jaxpr, inner.consts) if hasattr(inner, "consts") else (inner, ())
    return None


def bind_original(eqn: Any, invals: Sequence[Any]) -> Any:
    """Apply ``eqn``'s own primitive to ``invals`` (what a rule does for equations it leaves alone)."""
    with eqn.ctx.manager:
        return eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))


def evaluate(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any], rules: Mapping[str, Rule], *, strict: bool = False) -> list[Any]:
    """Evaluate ``jaxpr`` on ``args`` with the equations named in ``rules`` replaced."""
    env: dict[Any, Any] = {}

    def read(var: Any) -> Any:
        return var.val if isinstance(var, jcore.Literal) else env[var]

    def write(var: Any, value: Any) -> None:
        if not isinstance(var, jcore.DropVar):
            env[var] = value

    for var, value in zip(jaxpr.constvars, consts):
        write(var, value)
    for var, value in zip(jaxpr.invars, args):
        write(var, value)
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        inner = _inner_jaxpr(eqn)
        if name in rules:
            outvals = rules[name](eqn, invals)
        elif inner is not None:
            outvals = evaluate(inner[0], inner[1], invals, rules, strict=strict)
        else:
            if strict and name in _OPAQUE_HIGHER_ORDER:
                raise UnsupportedError(
                    f"the model contains a {name!r} operation, which this method cannot see inside; "
                    f"supported nested calls are {sorted(_INLINED_CLOSED | _INLINED_OPEN)}."
                )
            outvals = bind_original(eqn, invals)
        if not eqn.primitive.multiple_results:
            outvals = [outvals]
        for var, value in zip(eqn.outvars, outvals):
            write(var, value)
    return [read(v) for v in jaxpr.outvars]


def rewrite(fn: Callable[..., Any], rules: Mapping[str, Rule], *, strict: bool = False) -> Callable[..., Any]:
    """``fn`` with the primitives named in ``rules`` replaced by the rules (see :func:`evaluate`).

    The result traces ``fn`` afresh on each call (cheap; done once per compilation under ``jit``)
    and composes with ``jit``, ``vmap`` and ``grad``.
    """

    def rewritten(*args: Any) -> Any:
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        flat_args = jax.tree_util.tree_leaves(args)
        out = evaluate(closed.jaxpr, closed.consts, flat_args, rules, strict=strict)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), out)

    return rewritten
