"""Bounded-memory evaluation of many expansions of a batch (IG steps, noise samples, windows).

An expansion of ``n`` elements (path points, noisy copies, occlusion windows), each a computation on
the whole batch, is vmapped within a chunk and the chunks run one after the other in a ``lax.scan``,
so peak memory is one chunk.  ``chunk_size="auto"`` picks the largest chunk whose estimated memory
fits the budget (:func:`memory_budget`, default 1 GiB, ``XAI_JAX_MEMORY_BUDGET_MB`` to change it):
the estimate is the total size of every intermediate value of one element's computation (an upper
bound on what XLA keeps alive), read from its jaxpr when the computation is traced -- no extra
compilation.  When everything fits, the whole expansion is one vmapped pass (fastest).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .errors import InputError

ChunkSize = int | str | None
DEFAULT_MEMORY_BUDGET_MB = 1024


_SHARDING: contextvars.ContextVar[tuple[Any, int] | None] = contextvars.ContextVar(
    "xai_jax_batch_sharding", default=None
)


def batch_sharding(x: Any) -> Any:
    """The sharding of ``x``'s batch axis when ``x`` is a concrete array split over several devices by a
    :class:`~jax.sharding.NamedSharding` (``NamedSharding(mesh, P(spec[0]))``), else ``None``."""
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, jax.sharding.NamedSharding) or len(sharding.device_set) < 2:
        return None
    spec = tuple(sharding.spec)
    if not spec or spec[0] is None:
        return None
    return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(spec[0]))


@contextlib.contextmanager
def sharded_batch(sharding: Any, batch: int) -> Iterator[None]:
    """While tracing: values with a leading axis of ``batch`` are constrained to ``sharding`` by
    :func:`constrain_batch` (and inside :func:`chunked_vmap` / :func:`chunked_sum`)."""
    token = _SHARDING.set(None if sharding is None else (sharding, batch))
    try:
        yield
    finally:
        _SHARDING.reset(token)


def constrain_batch(tree: Any) -> Any:
    """``tree`` with every array whose leading axis is the batch constrained to the batch sharding
    (a no-op outside :func:`sharded_batch`)."""
    active = _SHARDING.get()
    if active is None:
        return tree
    sharding, batch = active

    def one(leaf: Any) -> Any:
        if (
            isinstance(leaf, jax.Array)
            and leaf.ndim >= 1
            and leaf.shape[0] == batch
            and not jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
        ):
            return jax.lax.with_sharding_constraint(leaf, sharding)
        return leaf

    return jax.tree_util.tree_map(one, tree)


def _per_batch(fn: Callable[..., Any]) -> Callable[..., Any]:
    if _SHARDING.get() is None:
        return fn
    return lambda *args: constrain_batch(fn(*args))


def memory_budget() -> int:
    """Bytes one chunk may use: ``XAI_JAX_MEMORY_BUDGET_MB`` (MiB) or 1 GiB."""
    raw = os.environ.get("XAI_JAX_MEMORY_BUDGET_MB")
    if raw is None:
        return DEFAULT_MEMORY_BUDGET_MB * 2**20
    try:
        megabytes = float(raw)
    except ValueError:
        raise InputError(f"XAI_JAX_MEMORY_BUDGET_MB must be a number of MiB; got {raw!r}.") from None
    if not math.isfinite(megabytes) or megabytes <= 0:
        raise InputError(f"XAI_JAX_MEMORY_BUDGET_MB must be positive; got {raw!r}.")
    return int(megabytes * 2**20)


def _jaxprs(params: Any) -> Iterator[Any]:
    for value in params.values() if isinstance(params, dict) else ():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            inner = getattr(item, "jaxpr", None)
            if inner is not None and hasattr(inner, "eqns"):
                yield inner
            elif hasattr(item, "eqns"):
                yield item


def _itemsize(dtype: Any) -> int:
    try:
        return np.dtype(dtype).itemsize
    except TypeError:  # PRNG key arrays and other extended dtypes: count a key's raw data
        return 8


def _intermediate_bytes(jaxpr: Any, scale: int = 1) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            aval = getattr(var, "aval", None)
            shape, dtype = getattr(aval, "shape", None), getattr(aval, "dtype", None)
            if shape is not None and dtype is not None:
                total += int(np.prod(shape, dtype=np.int64)) * _itemsize(dtype) * scale
        for inner in _jaxprs(eqn.params):
            total += _intermediate_bytes(inner, scale)
    return total


def estimate_bytes(fn: Callable[..., Any], *args: Any) -> int:
    """Total size of every intermediate value of ``fn(*args)`` (traced, not run)."""
    closed = jax.make_jaxpr(fn)(*args)
    return _intermediate_bytes(closed.jaxpr)


def resolve_chunk_size(chunk_size: ChunkSize, fn: Callable[..., Any], xs: tuple[Any, ...]) -> int | None:
    """The chunk to use for ``fn`` over the leading axis of ``xs``: ``None`` means all at once."""
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if chunk_size is None:
        return None
    if chunk_size == "auto":
        one = jax.tree_util.tree_map(lambda a: a[0], xs)
        per_element = max(estimate_bytes(fn, *one), 1)
        chunk = memory_budget() // per_element
        return None if chunk >= n else max(1, int(chunk))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise InputError(f"chunk_size must be a positive integer, 'auto' or None; got {chunk_size!r}.")
    return None if chunk_size >= n else int(chunk_size)


def chunked_vmap(fn: Callable[..., Any], *xs: Any, chunk_size: ChunkSize = None) -> Any:
    """``jax.vmap(fn)(*xs)`` over the leading axis, at most ``chunk_size`` elements at a time.

    Within a chunk the elements are vmapped (one big batched computation); chunks run one after
    the other in a ``lax.map``, so peak memory is bounded by one chunk.  ``chunk_size=None`` vmaps
    everything at once; ``"auto"`` chooses from the memory budget.
    """
    fn = _per_batch(fn)
    chunk = resolve_chunk_size(chunk_size, fn, xs)
    if chunk is None:
        return jax.vmap(fn)(*xs)
    return jax.lax.map(lambda args: fn(*args), xs, batch_size=chunk)


def chunked_sum(fn: Callable[..., Any], *xs: Any, chunk_size: ChunkSize = None) -> Any:
    """``sum_i fn(x_i)`` over the leading axis without materialising every term at once."""
    fn = _per_batch(fn)
    chunk = resolve_chunk_size(chunk_size, fn, xs)
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if chunk is None:
        return jax.tree_util.tree_map(lambda a: jnp.sum(a, axis=0), jax.vmap(fn)(*xs))
    pad = (-n) % chunk
    # pad by repeating the last element (works for PRNG key arrays too); the mask drops the padding
    index = jnp.minimum(jnp.arange(n + pad), n - 1)
    chunks = jax.tree_util.tree_map(lambda a: a[index].reshape(-1, chunk, *a.shape[1:]), xs)
    valid = (jnp.arange(n + pad) < n).reshape(-1, chunk)

    def body(total: Any, chunk_args: Any) -> tuple[Any, None]:
        args, mask = chunk_args
        terms = jax.vmap(fn)(*args)
        part = jax.tree_util.tree_map(
            lambda t: jnp.sum(jnp.where(mask.reshape(-1, *[1] * (t.ndim - 1)), t, 0), axis=0), terms
        )
        return jax.tree_util.tree_map(jnp.add, total, part), None

    first = jax.eval_shape(lambda *a: fn(*a), *jax.tree_util.tree_map(lambda a: a[0], xs))
    zero = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), first)
    total, _ = jax.lax.scan(body, zero, (chunks, valid))
    return total
