"""Guard against XLA:CPU's silent wrong answers (jaxlib 0.10.x).

jaxlib 0.10's CPU backend fuses reductions through YNNPACK by default.  That fusion loses NaNs
(``jnp.max`` over >= 4096 float32 values containing a NaN returns ``-inf``) and, for a fused
``dot`` + ``sum``, reads the wrong rows (``jnp.sum(M @ x.T, axis=0)`` with ``x`` of shape
(40000, 3) returns 7230 wrong values).  Setting ``--xla_cpu_experimental_ynn_fusion_type=`` (empty
value) turns the fusion off; it is also faster on small CPUs.  See ``docs/design.md`` ("Numerics
on CPU") for the measurements.

XLA reads ``XLA_FLAGS`` once, when the CPU backend starts (the first array or computation), not at
``import jax``.  So :func:`install` runs at ``import xai_jax``:

* backend not started yet -> append the flag to ``XLA_FLAGS`` (mode ``"env"``);
* the user already names the flag -> leave it; warn once if its value keeps the reduce fusion
  (mode ``"user"`` or ``"user-conflict"``);
* backend already started -> the library's own top-level jitted entry points compile with
  ``compiler_options={"xla_cpu_experimental_ynn_fusion_type": ""}`` and one warning tells the user
  what to set (mode ``"late"``);
* a jaxlib version not known to accept the flag -> do nothing (an unknown flag aborts the process
  at backend start) (mode ``"unknown-version"``);
* ``XAI_JAX_DISABLE_CPU_GUARD=1`` -> do nothing (mode ``"disabled"``; for benchmarks of the guard).
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import warnings
from collections.abc import Callable
from typing import Any

FLAG_NAME = "xla_cpu_experimental_ynn_fusion_type"
FLAG = f"--{FLAG_NAME}="
# jaxlib releases that are known to accept the flag (checked on 0.10.2).  An unknown flag kills
# the process when the backend starts, so never set it for versions we have not seen.
_KNOWN_JAXLIB = re.compile(r"^0\.10\.")

_mode: str = "unset"


class NumericsWarning(UserWarning):
    """XLA:CPU may return wrong numbers in this process; the message says how to fix it."""


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - jax moved its internals; assume the worst.
        return True
    return bool(getattr(xla_bridge, "_backends", {"?": None}))


def _flag_value(xla_flags: str) -> str | None:
    """Value the user gave to the flag in ``xla_flags``, or ``None`` when absent (last one wins)."""
    matches = re.findall(rf"--{FLAG_NAME}=(\S*)", xla_flags)
    return matches[-1] if matches else None


def _value_is_safe(value: str) -> bool:
    # Empty disables every YNN fusion; a list that removes "reduce" is the minimum for correctness.
    tokens = [t.strip() for t in value.split(",") if t.strip()]
    return not tokens or "-reduce" in tokens


def install() -> str:
    """Protect this process if still possible; returns the mode chosen (idempotent)."""
    global _mode
    if _mode != "unset":
        return _mode
    try:
        version = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        version = ""
    flags = os.environ.get("XLA_FLAGS", "")
    user_value = _flag_value(flags)
    if os.environ.get("XAI_JAX_DISABLE_CPU_GUARD") == "1":  # for benchmarks that measure the guard
        _mode = "disabled"
    elif user_value is not None:
        _mode = "user" if _value_is_safe(user_value) else "user-conflict"
        if _mode == "user-conflict":
            warnings.warn(
                f"XLA_FLAGS sets --{FLAG_NAME}={user_value}; xai_jax respects it, but with the "
                "YNNPACK reduce fusion on, jaxlib 0.10's CPU backend can return wrong numbers "
                "(NaN lost in reductions, wrong rows in dot+sum). To fix it, set "
                f"XLA_FLAGS='{FLAG}' before the first JAX array is created.",
                NumericsWarning,
                stacklevel=3,
            )
    elif not _KNOWN_JAXLIB.match(version):
        _mode = "unknown-version"
    elif not _backend_started():
        os.environ["XLA_FLAGS"] = (flags + " " + FLAG).strip()
        _mode = "env"
    else:
        _mode = "late"
        warnings.warn(
            "xai_jax was imported after JAX's CPU backend had started, so it could not turn off "
            "the YNNPACK reduce fusion that makes jaxlib 0.10 return wrong numbers on CPU (NaN "
            "lost in reductions, wrong rows in dot+sum). xai_jax's own entry points are compiled "
            "with the fix, but your own JAX code is not: set "
            f"XLA_FLAGS='{FLAG}' in the environment (or import xai_jax before creating any "
            "JAX array).",
            NumericsWarning,
            stacklevel=3,
        )
    return _mode


def mode() -> str:
    """The guard's mode for this process (see the module docstring)."""
    return _mode


def compiler_options() -> dict[str, Any] | None:
    """Per-computation compiler options our top-level jits need, or ``None``."""
    if _mode != "late":
        return None
    import jax

    return {FLAG_NAME: ""} if jax.default_backend() == "cpu" else None


def _is_traced(tree: Any) -> bool:
    import jax

    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def guarded_jit(fun: Callable[..., Any], **jit_kwargs: Any) -> Callable[..., Any]:
    """``jax.jit(fun)`` that also carries the guard's compiler options when they are needed.

    Compiler options are only accepted at the top level, so under a caller's own ``jit``/``grad``
    the plain jitted function is used (it is inlined into the caller's computation anyway).
    """
    import jax

    plain = jax.jit(fun, **jit_kwargs)
    guarded: list[Callable[..., Any]] = []

    def select(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[..., Any]:
        options = compiler_options()
        if options is None or _is_traced((args, kwargs)):
            return plain
        if not guarded:
            guarded.append(jax.jit(fun, compiler_options=options, **jit_kwargs))
        return guarded[0]

    @functools.wraps(fun)
    def call(*args: Any, **kwargs: Any) -> Any:
        return select(args, kwargs)(*args, **kwargs)

    call.lower = lambda *a, **k: select(a, k).lower(*a, **k)  # type: ignore[attr-defined]
    return call
