"""Bounded-memory evaluation of many expansions of a batch (IG steps, noise samples, windows)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def chunked_vmap(fn: Callable[..., Any], *xs: Any, chunk_size: int | None = None) -> Any:
    """``jax.vmap(fn)(*xs)`` over the leading axis, at most ``chunk_size`` elements at a time.

    Within a chunk the elements are vmapped (one big batched computation); chunks run one after
    the other in a ``lax.map``, so peak memory is bounded by one chunk.  ``chunk_size=None`` (or
    larger than the axis) vmaps everything at once, which is fastest when it fits.
    """
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if chunk_size is None or chunk_size >= n:
        return jax.vmap(fn)(*xs)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None; got {chunk_size}.")
    return jax.lax.map(lambda args: fn(*args), xs, batch_size=int(chunk_size))


def chunked_sum(fn: Callable[..., Any], *xs: Any, chunk_size: int | None = None) -> Any:
    """``sum_i fn(x_i)`` over the leading axis without materialising every term at once."""
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if chunk_size is None or chunk_size >= n:
        return jax.tree_util.tree_map(lambda a: jnp.sum(a, axis=0), jax.vmap(fn)(*xs))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None; got {chunk_size}.")
    pad = (-n) % chunk_size
    chunks = jax.tree_util.tree_map(
        lambda a: jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]).reshape(-1, chunk_size, *a.shape[1:]), xs
    )
    valid = (jnp.arange(n + pad) < n).reshape(-1, chunk_size)

    def body(total: Any, chunk: Any) -> tuple[Any, None]:
        args, mask = chunk
        terms = jax.vmap(fn)(*args)
        part = jax.tree_util.tree_map(
            lambda t: jnp.sum(jnp.where(mask.reshape(-1, *[1] * (t.ndim - 1)), t, 0), axis=0), terms
        )
        return jax.tree_util.tree_map(jnp.add, total, part), None

    first = jax.eval_shape(lambda *a: fn(*a), *jax.tree_util.tree_map(lambda a: a[0], xs))
    zero = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), first)
    total, _ = jax.lax.scan(body, zero, (chunks, valid))
    return total
