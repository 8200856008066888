"""The one place where xai_jax touches JAX beyond its stable public API.

Every access that depends on the JAX release lives here, so a release that moves or renames an
internal breaks this adapter (and its tests in ``tests/core/test_compat.py``), not the trace
engine, the propagation rules or the guard.  Checked on jax/jaxlib 0.10.2 (Python 3.11) and
0.12.0.1 (Python 3.12), with ``-W error``: nothing here warns on either.

What is public and what is not:

* ``jax.extend.core`` (``Literal``, ``DropVar``, ``Var``, ``ClosedJaxpr``, ``JaxprEqn``,
  ``Primitive``) is JAX's supported home for what ``jax.core`` used to export; ``jax.core.Tracer``
  is still public and does not warn on 0.12.
* Equation internals that have no public accessor -- the context manager that re-binds an equation
  under its original mesh/compute-type context (``eqn.ctx.manager``), the name stack
  (``eqn.source_info.name_stack``), the wrapped function's name of a ``custom_jvp_call``
  (``params["call_jaxpr"].jaxpr.debug_info.func_name``) and the body of a nested call (its
  parameter names, and ``ClosedJaxpr`` vs ``Jaxpr``: the two are one class on jax 0.12) -- are
  read through the functions below.
* Whether the XLA backend has started has no public query (``jax.extend.backend.backends()``
  *starts* them); :func:`backend_started` reads ``jax._src.xla_bridge``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import jax
from jax.core import Tracer as _Tracer  # public; does not warn on 0.12
from jax.extend import core as _jcore

#: Types of jaxpr atoms (re-exported so callers need not import ``jax.extend.core`` themselves).
Literal = _jcore.Literal
DropVar = _jcore.DropVar
JaxprVar = _jcore.Var

#: Names under which a nested ``jax.jit`` appears in a jaxpr ("pjit" before jax 0.7, "jit" after).
JIT_PRIMITIVES = frozenset({"jit", "pjit"})
#: Nested calls whose body :func:`call_body` returns: they compute exactly their body, so an
#: interpreter may inline them.
INLINABLE_CALLS = JIT_PRIMITIVES | {"closed_call", "core_call", "remat", "remat2", "checkpoint"}
#: Calls with a custom derivative; :func:`custom_call_primal` returns the function they wrap.
CUSTOM_DERIVATIVE_CALLS = frozenset({"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"})


def is_tracer(x: Any) -> bool:
    """True when ``x`` is an abstract value under a JAX transformation (jit/grad/vmap)."""
    return isinstance(x, _Tracer)


def any_tracer(tree: Any) -> bool:
    """True when some leaf of ``tree`` is a tracer."""
    return any(is_tracer(leaf) for leaf in jax.tree_util.tree_leaves(tree))


def is_literal(atom: Any) -> bool:
    """True for a constant written into a jaxpr (``max x 0.0``), as opposed to a variable."""
    return isinstance(atom, Literal)


def literal_value(atom: Any) -> Any:
    """The value of a jaxpr literal."""
    return atom.val


def is_drop_var(var: Any) -> bool:
    """True for an output variable nothing reads (``_`` in a printed jaxpr)."""
    return isinstance(var, DropVar)


def is_jaxpr_var(atom: Any) -> bool:
    """True for a jaxpr variable (neither a literal nor a dropped output)."""
    return isinstance(atom, JaxprVar) and not isinstance(atom, DropVar)


def equation_context(eqn: Any) -> contextlib.AbstractContextManager[Any]:
    """Context under which ``eqn`` was traced (mesh, compute type, XLA metadata), to re-bind it.

    Older equations (or ones built by hand) may have none; re-binding then uses the caller's
    context, which is what an equation without a recorded context means.
    """
    ctx = getattr(eqn, "ctx", None)
    manager = getattr(ctx, "manager", None)
    return manager if manager is not None else contextlib.nullcontext()


def bind_equation(eqn: Any, invals: Sequence[Any]) -> Any:
    """Apply ``eqn``'s own primitive to ``invals``: one value, or a list for multiple results."""
    with equation_context(eqn):
        return eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))


def name_stack(eqn: Any) -> str:
    """The module path under which ``eqn`` was traced, e.g. ``"Model/block/conv1"`` ("" if none)."""
    source_info = getattr(eqn, "source_info", None)
    stack = getattr(source_info, "name_stack", None)
    return "" if stack is None else str(stack)


def custom_jvp_function_name(eqn: Any) -> str | None:
    """Name of the function a ``custom_jvp_call`` wraps (``"relu"`` for ``jax.nn.relu``), or ``None``."""
    if eqn.primitive.name != "custom_jvp_call":
        return None
    closed = eqn.params.get("call_jaxpr")
    jaxpr = getattr(closed, "jaxpr", closed)
    debug = getattr(jaxpr, "debug_info", None)
    name = getattr(debug, "func_name", None)
    return name if isinstance(name, str) else None


def _open(jaxpr: Any) -> tuple[Any, Sequence[Any]]:
    # jax 0.10 gives a ClosedJaxpr (``.jaxpr`` + ``.consts``) or, for remat, an open Jaxpr; on 0.12
    # the two classes are one and every body carries its (possibly empty) ``consts``.
    if hasattr(jaxpr, "consts") and hasattr(jaxpr, "jaxpr"):
        return jaxpr.jaxpr, tuple(jaxpr.consts)
    return jaxpr, ()


def call_body(eqn: Any) -> tuple[Any, Sequence[Any]] | None:
    """``(jaxpr, consts)`` of a nested call in :data:`INLINABLE_CALLS`, else ``None``.

    Evaluating ``jaxpr`` with ``consts`` and the equation's inputs gives the equation's outputs.
    """
    if eqn.primitive.name not in INLINABLE_CALLS:
        return None
    body = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    return None if body is None else _open(body)


def custom_call_primal(eqn: Any) -> tuple[Any, Sequence[Any]] | None:
    """``(jaxpr, consts)`` of the function a custom-derivative call wraps (its forward pass)."""
    if eqn.primitive.name not in CUSTOM_DERIVATIVE_CALLS:
        return None
    body = eqn.params.get("call_jaxpr", eqn.params.get("fun_jaxpr"))
    return None if body is None else _open(body)


def backend_started() -> bool:
    """Whether an XLA backend (CPU included) has been created in this process.

    XLA reads ``XLA_FLAGS`` exactly once, when the first backend starts, so this tells whether
    setting the environment variable can still have an effect.  JAX has no public query that does
    not itself start the backends; if the internal one moves, assume it has started (the caller
    then takes its "too late" path, which is safe).
    """
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - depends on a future jax
        return True
    query = getattr(xla_bridge, "backends_are_initialized", None)
    if callable(query):
        return bool(query())
    return bool(getattr(xla_bridge, "_backends", {"?": None}))  # pragma: no cover - older jax
