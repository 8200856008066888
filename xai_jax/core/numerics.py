"""Guard against XLA:CPU's silent wrong answers, decided by what the installed jaxlib does.

jaxlib's CPU backend fuses reductions through YNNPACK by default.  That fusion loses NaNs
(``jnp.max`` over >= 4096 float32 values containing a NaN returns ``-inf``; jaxlib 0.10.2 and
0.12.0.1) and, on 0.10, reads the wrong rows of a fused ``dot`` + ``sum`` (``jnp.sum(M @ x.T,
axis=0)`` with ``x`` of shape (40000, 3) returns 7230 wrong values).  Setting
``--xla_cpu_experimental_ynn_fusion_type=`` (empty value) turns the fusion off; it is also faster on
small CPUs.  See ``docs/design.md`` ("Numerics on CPU") for the measurements.

XLA reads ``XLA_FLAGS`` once, when the first backend starts (the first array or computation), not
at ``import jax``, and a flag it does not know aborts the process right there.  So whether the flag
may be set is not decided by a list of versions but by a **probe**: two short subprocesses (one
with ``XLA_FLAGS`` naming the flag, one with default flags) start JAX's backends and run the
reproducers on the CPU.  The answer is cached per jaxlib/jax version, platform, ``JAX_PLATFORMS``
and installed PJRT plugins in ``$XDG_CACHE_HOME/xai_jax/`` (default ``~/.cache/xai_jax/``), so the
subprocesses run once per installation; when the cache cannot be written the probe runs at every
import (about as long as two ``import jax``; measured in docs/design.md section 5).

:func:`install` runs at ``import xai_jax`` and picks one mode:

* ``XAI_JAX_DISABLE_CPU_GUARD=1`` -> do nothing (``"disabled"``; for benchmarks of the guard);
* the user already names the flag in ``XLA_FLAGS`` -> leave it; warn once if its value keeps the
  reduce fusion (``"user"`` or ``"user-conflict"``);
* the probe says jaxlib accepts the flag and no backend has started -> append the flag to
  ``XLA_FLAGS`` (``"env"``), whether or not the defaults are wrong on this jaxlib, since the flag
  is also faster;
* jaxlib accepts the flag but a backend already started -> the library's own top-level jitted
  entry points compile with ``compiler_options={"xla_cpu_experimental_ynn_fusion_type": ""}``
  and, if the default backend is wrong here, one warning tells the user what to set (``"late"``);
* jaxlib rejects the flag -> nothing can be set: ``"not-needed"`` when its defaults keep NaN and
  read the right rows, otherwise ``"unprotected"`` with a warning;
* the probe could not run (no interpreter, timeout, JAX failed to start for another reason) ->
  ``"probe-failed"`` with a warning; the flag is not set, since an unknown flag would abort.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import pkgutil
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any, Protocol, cast

from . import compat

FLAG_NAME = "xla_cpu_experimental_ynn_fusion_type"
FLAG = f"--{FLAG_NAME}="
MODES = ("unset", "disabled", "user", "user-conflict", "env", "late", "not-needed", "unprotected", "probe-failed")

# Version of the probe's script and of the cache's layout: bump it when either changes, so an old
# answer is not trusted for a new question.
_PROBE_FORMAT = 1
_PROBE_TIMEOUT_S = 120.0
_CACHE_ENTRIES = 16  # one per jaxlib/platform combination seen; old ones are dropped
_PROBE_MARK = "XAI_JAX_PROBE "

# Runs in a fresh interpreter that imports only numpy and jax.  ``jax.devices()`` starts every
# backend this installation would start in the user's process, so a flag that any of them (CPU or
# a GPU/TPU plugin) rejects aborts here, not there.  The reproducers then run on the CPU device.
_PROBE_SCRIPT = r"""
import json, numpy as np, jax, jax.numpy as jnp
out = {"jax": jax.__version__, "platforms": sorted({d.platform for d in jax.devices()})}
try:
    cpu = jax.devices("cpu")[0]
except RuntimeError:  # JAX_PLATFORMS excludes the CPU: nothing of this bug can reach the user
    cpu = None
if cpu is not None:
    with jax.default_device(cpu):
        x = np.ones(4096, np.float32); x[-1] = np.nan
        a = np.ones((64, 256), np.float32); a[5, 7] = np.nan
        m = np.random.RandomState(0).randn(2, 3).astype(np.float32)
        xs = np.random.RandomState(1).randn(40000, 3).astype(np.float32)
        ref = (m.astype(np.float64) @ xs.T.astype(np.float64)).sum(0)
        got = np.asarray(jax.jit(lambda m, x: jnp.sum(m @ x.T, axis=0))(m, xs))
        out.update(
            max_is_nan=bool(np.isnan(jnp.max(x))),
            relu_sum_is_nan=bool(np.isnan(jax.jit(lambda a: jnp.sum(jax.nn.relu(a)))(a))),
            wrong_rows=int(np.sum(np.abs(got - ref) > 1e-3 * (1 + np.abs(ref)))),
        )
print("XAI_JAX_PROBE " + json.dumps(out))
"""


class NumericsWarning(UserWarning):
    """XLA:CPU may return wrong numbers in this process; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """What the installed jaxlib does, measured in subprocesses (see the module docstring).

    ``accepted``: a process with ``XLA_FLAGS`` naming the flag started its backends (``None`` when
    the probe failed).  ``fixed``: with the flag, NaN stays NaN through ``max``/``sum`` and the fused
    dot+sum has 0 wrong rows (``None`` when not accepted or there is no CPU backend).
    ``default_correct``: the same checks on default flags.  ``runs``: the raw outcome of each
    subprocess.  ``cached``: read from the cache rather than measured in this process.
    """

    key: str
    accepted: bool | None
    fixed: bool | None
    default_correct: bool | None
    runs: dict[str, Any]
    seconds: float
    cached: bool = False
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class _Guard:
    mode: str
    probe: ProbeResult | None = None


# The guard's state for this process: the mode chosen at import, and the probe it was based on.
_guard = _Guard("unset")


# ---------------------------------------------------------------------------------------------------
# XLA_FLAGS parsing
# ---------------------------------------------------------------------------------------------------


def _flag_value(xla_flags: str) -> str | None:
    """Value the user gave to the flag in ``xla_flags``, or ``None`` when absent (last one wins)."""
    matches = re.findall(rf"--{FLAG_NAME}=(\S*)", xla_flags)
    return matches[-1] if matches else None


def _value_is_safe(value: str) -> bool:
    # Empty disables every YNN fusion; a list that removes "reduce" is the minimum for correctness.
    tokens = [t.strip() for t in value.split(",") if t.strip()]
    return not tokens or "-reduce" in tokens


# ---------------------------------------------------------------------------------------------------
# The probe and its cache
# ---------------------------------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _plugins() -> list[str]:
    """Installed PJRT plugins (jax-cuda*/rocm* under ``jax_plugins``, libtpu): each starts a backend
    that parses XLA_FLAGS.  Names only: a plugin's version follows jaxlib's, which is in the key.
    (Scanning every distribution's entry points would cost ~12 ms per import.)"""
    names: list[str] = []
    try:
        spec = importlib.util.find_spec("jax_plugins")
        if spec is not None and spec.submodule_search_locations:
            names = [module.name for module in pkgutil.iter_modules(spec.submodule_search_locations)]
        if importlib.util.find_spec("libtpu") is not None:
            names.append("libtpu")
    except (ImportError, ValueError):  # a broken environment must not break the import of xai_jax
        pass
    return sorted(names)


def probe_key() -> str:
    """What the probe's answer depends on: the flag, jaxlib/jax versions, platform, the backends
    that will start."""
    parts = [
        f"format={_PROBE_FORMAT}",
        f"flag={FLAG_NAME}",
        f"jaxlib={_version('jaxlib')}",
        f"jax={_version('jax')}",
        f"platform={sys.platform}-{platform.machine()}",
        f"JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS', '')}",
        f"plugins={','.join(_plugins())}",
    ]
    return ";".join(parts)


def cache_path() -> pathlib.Path | None:
    """``$XDG_CACHE_HOME/xai_jax/xla_cpu_probe.json`` (``~/.cache`` when unset), or ``None``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: an unset, empty or relative value is ignored
        try:
            base = str(pathlib.Path.home() / ".cache")
        except RuntimeError:  # no home directory: run without a cache
            return None
    return pathlib.Path(base) / "xai_jax" / "xla_cpu_probe.json"


def _read_cache(path: pathlib.Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    entries = data.get("entries") if isinstance(data, dict) and data.get("format") == _PROBE_FORMAT else None
    return entries if isinstance(entries, dict) else {}


def _write_cache(path: pathlib.Path | None, key: str, entry: dict[str, Any]) -> bool:
    """Store ``entry`` under ``key``; ``False`` (and nothing raised) when the cache is not writable."""
    if path is None:
        return False
    entries = _read_cache(path)
    entries.pop(key, None)
    entries[key] = entry  # most recent last; drop the oldest beyond the limit
    entries = dict(list(entries.items())[-_CACHE_ENTRIES:])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write a temporary file and rename it: readers in other processes never see half a file.
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=".probe-", suffix=".json", delete=False
        ) as handle:
            json.dump({"format": _PROBE_FORMAT, "entries": entries}, handle, indent=1, sort_keys=True)
        try:
            os.replace(handle.name, path)
        except OSError:
            os.unlink(handle.name)
            raise
        return True
    except OSError:
        return False


def _spawn(xla_flags: str | None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    # A probe must not grab most of a GPU's memory next to the user's process, nor recurse into
    # this guard if something in the environment imports xai_jax.
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    env["XAI_JAX_DISABLE_CPU_GUARD"] = "1"
    # -P: do not put the current directory first on sys.path (a local "jax" folder must not shadow
    # the installed one).  Run from the temp dir for the same reason.
    return subprocess.Popen(
        [sys.executable, "-P", "-c", _PROBE_SCRIPT],
        env=env,
        cwd=tempfile.gettempdir(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _collect(proc: subprocess.Popen[str], deadline: float) -> dict[str, Any]:
    try:
        stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"returncode": None, "error": f"timed out after {_PROBE_TIMEOUT_S:.0f} s"}
    run: dict[str, Any] = {"returncode": proc.returncode}
    lines = [line for line in stdout.splitlines() if line.startswith(_PROBE_MARK)]
    try:
        answer = json.loads(lines[-1][len(_PROBE_MARK) :]) if proc.returncode == 0 and lines else None
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        run.update(answer)
    else:
        run["stderr"] = stderr[-2000:]
        run["returncode"] = proc.returncode or "no answer"  # exit 0 without an answer is no success
    return run


def _correct(run: dict[str, Any]) -> bool | None:
    if "max_is_nan" not in run:
        return None
    return bool(run["max_is_nan"] and run["relu_sum_is_nan"] and run["wrong_rows"] == 0)


def _measure(key: str) -> ProbeResult:
    start = time.monotonic()
    if not sys.executable:  # embedded interpreters may have none: no way to probe safely
        return ProbeResult(key, None, None, None, {}, 0.0, error="sys.executable is empty")
    deadline = start + _PROBE_TIMEOUT_S
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        # Both run at once: together they cost about one "import jax" of wall time on 2 cores.
        procs["flag"] = _spawn(FLAG)
        procs["default"] = _spawn(None)
    except OSError as exc:
        for proc in procs.values():
            proc.kill()
            proc.communicate()
        return ProbeResult(
            key, None, None, None, {}, time.monotonic() - start, error=f"could not start {sys.executable}: {exc}"
        )
    runs = {name: _collect(proc, deadline) for name, proc in procs.items()}
    seconds = time.monotonic() - start
    flag_run, default_run = runs["flag"], runs["default"]
    if flag_run["returncode"] == 0:
        return ProbeResult(key, True, _correct(flag_run), _correct(default_run), runs, seconds)
    # Rejected only when the same process starts fine without the flag and XLA named the flag when
    # it stopped ("Unknown flag in XLA_FLAGS: --xla_..."); anything else (a timeout, a crash, JAX
    # itself broken) is a failed probe and is not cached, so the next import asks again.
    if default_run["returncode"] == 0 and FLAG_NAME in flag_run.get("stderr", ""):
        return ProbeResult(key, False, None, _correct(default_run), runs, seconds)
    reason = (
        flag_run.get("error")
        or default_run.get("error")
        or (flag_run.get("stderr") or default_run.get("stderr") or "")[-500:]
    )
    return ProbeResult(key, None, None, None, runs, seconds, error=f"the probe subprocess failed: {reason}")


def probe(*, refresh: bool = False) -> ProbeResult:
    """The installed jaxlib's answer (from the cache, or measured now in subprocesses and cached).

    Never starts a backend in this process.  ``refresh=True`` ignores the cached answer.
    """
    key = probe_key()
    path = cache_path()
    entry = None if refresh else _read_cache(path).get(key)
    fields = {f.name for f in dataclasses.fields(ProbeResult)} - {"cached"}
    if isinstance(entry, dict) and fields <= set(entry) and isinstance(entry["accepted"], bool):
        return ProbeResult(**{name: entry[name] for name in fields}, cached=True)
    try:
        result = _measure(key)
    except Exception as exc:
        result = ProbeResult(key, None, None, None, {}, 0.0, error=f"{type(exc).__name__}: {exc}")
    if result.accepted is not None:  # a failed probe is not an answer: ask again next time
        entry = {f.name: getattr(result, f.name) for f in dataclasses.fields(ProbeResult) if f.name != "cached"}
        _write_cache(path, key, entry)
    return result


# ---------------------------------------------------------------------------------------------------
# The guard
# ---------------------------------------------------------------------------------------------------


def _warn(message: str) -> None:
    # stacklevel 4: _warn <- _decide <- install <- the caller of install() (xai_jax/__init__.py)
    warnings.warn(message, NumericsWarning, stacklevel=4)


_SET_IT = f"set XLA_FLAGS='{FLAG}' in the environment before the first JAX array is created"


def _decide(flags: str) -> _Guard:
    if os.environ.get("XAI_JAX_DISABLE_CPU_GUARD") == "1":  # for benchmarks that measure the guard
        return _Guard("disabled")
    user_value = _flag_value(flags)
    if user_value is not None:
        if _value_is_safe(user_value):
            return _Guard("user")
        _warn(
            f"XLA_FLAGS sets --{FLAG_NAME}={user_value}; xai_jax respects it, but with the YNNPACK "
            "reduce fusion on, jaxlib's CPU backend can return wrong numbers (NaN lost in "
            f"reductions, wrong rows in dot+sum). To fix it, {_SET_IT}."
        )
        return _Guard("user-conflict")
    started = compat.backend_started()
    result = probe()
    jaxlib = _version("jaxlib")
    if result.accepted is None:
        _warn(
            f"xai_jax could not check whether jaxlib {jaxlib}'s CPU backend needs --{FLAG_NAME} "
            f"({result.error}), so it did not set it; on CPU, reductions may lose NaNs. If this "
            f"jaxlib knows the flag, {_SET_IT}; set XAI_JAX_DISABLE_CPU_GUARD=1 to skip this check."
        )
        return _Guard("probe-failed", result)
    if not result.accepted:
        if result.default_correct is False:
            _warn(
                f"jaxlib {jaxlib}'s CPU backend returns wrong numbers on default flags (NaN lost "
                f"in max/sum or wrong rows in a fused dot+sum: {result.runs.get('default')}) and "
                f"does not know --{FLAG_NAME}, so xai_jax cannot turn the fusion off. Install a "
                "jaxlib version whose CPU backend is correct or that accepts the flag, or run on "
                "another backend."
            )
            return _Guard("unprotected", result)
        return _Guard("not-needed", result)
    if result.fixed is False:
        _warn(
            f"jaxlib {jaxlib}'s CPU backend still returns wrong numbers with --{FLAG_NAME} set "
            f"({result.runs.get('flag')}); results on CPU may be wrong. Install another jaxlib "
            "version or run on another backend."
        )
    if not started:
        os.environ["XLA_FLAGS"] = (flags + " " + FLAG).strip()
        return _Guard("env", result)
    if result.default_correct is not True:
        _warn(
            "xai_jax was imported after JAX's CPU backend had started, so it could not turn off "
            "the YNNPACK reduce fusion that makes jaxlib's CPU backend return wrong numbers (NaN "
            "lost in reductions, wrong rows in dot+sum). xai_jax's own entry points are compiled "
            f"with the fix, but your own JAX code is not: {_SET_IT} (or import xai_jax before "
            "creating any JAX array)."
        )
    return _Guard("late", result)


def install() -> str:
    """Protect this process if still possible; returns the mode chosen (idempotent)."""
    global _guard
    if _guard.mode == "unset":
        _guard = _decide(os.environ.get("XLA_FLAGS", ""))
    return _guard.mode


def mode() -> str:
    """The guard's mode for this process (see the module docstring)."""
    return _guard.mode


def probe_result() -> ProbeResult | None:
    """The probe :func:`install` based its decision on (``None`` when it needed none)."""
    return _guard.probe


def compiler_options() -> dict[str, Any] | None:
    """Per-computation compiler options our top-level jits need, or ``None``."""
    if _guard.mode != "late":
        return None
    import jax

    return {FLAG_NAME: ""} if jax.default_backend() == "cpu" else None


class GuardedJitted(Protocol):
    """What :func:`guarded_jit` returns: called like ``jax.jit(fun)``, and lowered with ``.lower``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    def lower(self, *args: Any, **kwargs: Any) -> Any: ...


def guarded_jit(fun: Callable[..., Any], **jit_kwargs: Any) -> GuardedJitted:
    """``jax.jit(fun)`` that also carries the guard's compiler options when they are needed.

    Compiler options are only accepted at the top level, so under a caller's own ``jit``/``grad``
    the plain jitted function is used (it is inlined into the caller's computation anyway).
    """
    import jax

    plain = jax.jit(fun, **jit_kwargs)
    guarded: list[Callable[..., Any]] = []

    def select(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[..., Any]:
        options = compiler_options()
        if options is None or compat.any_tracer((args, kwargs)):
            return plain
        if not guarded:
            guarded.append(jax.jit(fun, compiler_options=options, **jit_kwargs))
        return guarded[0]

    @functools.wraps(fun)
    def call(*args: Any, **kwargs: Any) -> Any:
        return select(args, kwargs)(*args, **kwargs)

    call.lower = lambda *a, **k: select(a, k).lower(*a, **k)  # type: ignore[attr-defined]  # attribute on a function
    return cast(GuardedJitted, call)
