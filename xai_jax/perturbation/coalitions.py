"""Coalitions of features: sampling, enumeration, and scoring them with the model.

A coalition ``z ∈ {0, 1}^M`` keeps the features with ``z_j = 1`` (see :mod:`.features`); its value
is the target score of the composed input, ``v(z) = f_c(b + z[labels] ⊙ (x - b))``.  Every method
of this package scores many coalitions of every sample; :func:`scores` runs them as vmapped forward
passes in chunks (``batch_size``), so memory is bounded by one chunk.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import InputError, Inputs, Problem, chunked_vmap
from ..core.batching import ChunkSize
from ..core.checks import is_traced
from .features import FeatureMask, compose

#: Largest number of features whose 2^M coalitions are enumerated (about a million forward passes).
MAX_EXACT_FEATURES = 20


def scores(
    problem: Problem,
    inputs: Inputs,
    indices: jax.Array | None,
    mask: FeatureMask,
    baseline: jax.Array,
    z: jax.Array,
    batch_size: ChunkSize,
) -> jax.Array:
    """``(n, B)`` target scores of the coalitions ``z`` (``(n, B, M)``), ``batch_size`` coalitions at a time."""
    f = problem.scalar_fn(inputs, indices)
    return chunked_vmap(lambda zb: f(compose(mask, inputs.x, baseline, zb)), z, chunk_size=batch_size)


def kernel_size_logits(count: jax.Array, num_features: int) -> jax.Array:
    """``(M+1,)`` log-probabilities of the coalition size ``k`` under the Shapley kernel for a sample
    with ``count`` features: ``p(k) ∝ (m-1) / (k (m-k))`` for ``1 ≤ k ≤ m-1`` ([lundberg2017]_; Captum's
    ``KernelShap`` sampler).  A sample with fewer than two features has no proper coalition: every
    size is equally (un)likely and the caller gives its draws weight 0."""
    k = jnp.arange(num_features + 1, dtype=jnp.float32)
    m = count.astype(jnp.float32)
    valid = (k >= 1) & (k <= m - 1)
    safe = jnp.where(valid, k * (m - k), 1.0)
    return jnp.where(valid, jnp.log(jnp.maximum(m - 1, 1.0)) - jnp.log(safe), jnp.where(count < 2, 0.0, -jnp.inf))


def kernel_coalition(key: jax.Array, active: jax.Array) -> jax.Array:
    """One coalition drawn from the Shapley kernel: a size ``k`` from :func:`kernel_size_logits`, then
    ``k`` of the sample's features uniformly (the ``k`` largest of i.i.d. normal draws)."""
    size_key, pick_key = jax.random.split(key)
    k = jax.random.categorical(size_key, kernel_size_logits(active.sum(), active.shape[0]))
    draws = jnp.where(active, jax.random.normal(pick_key, active.shape), -jnp.inf)
    rank = jnp.argsort(jnp.argsort(-draws))
    return (rank < k).astype(jnp.float32)


def bernoulli_coalition(key: jax.Array, active: jax.Array) -> jax.Array:
    """One coalition with every feature kept with probability 1/2 (LIME's sampler)."""
    return (jax.random.bernoulli(key, 0.5, active.shape) & active).astype(jnp.float32)


def draw(key: jax.Array, active: jax.Array, samples: int, sampler: Any) -> jax.Array:
    """``(samples, B, M)`` coalitions, one independent draw per (coalition, sample)."""
    keys = jax.random.split(key, (samples, active.shape[0]))
    return jax.vmap(jax.vmap(sampler))(keys, jnp.broadcast_to(active, (samples, *active.shape)))


def subset_bits(index: jax.Array, num_features: int) -> jax.Array:
    """The coalition numbered ``index`` (bit ``j`` = feature ``j``), as ``(M,)`` float."""
    return ((index >> jnp.arange(num_features)) & 1).astype(jnp.float32)


def shapley_coefficients(num_features: int) -> np.ndarray:
    """``w(s) = s! (M-s-1)! / M!`` for ``s = 0..M-1``: the weight of a coalition of size ``s`` in a
    feature's Shapley value ([shapley1953]_)."""
    m = num_features
    return np.array([1.0 / (m * math.comb(m - 1, s)) for s in range(m)], np.float64)


def shapley_kernel_weights(sizes: np.ndarray, num_features: int) -> np.ndarray:
    """KernelSHAP's weight of a coalition of size ``k``: ``(M-1) / (C(M, k) k (M-k))`` ([lundberg2017]_,
    Theorem 2); infinite at ``k = 0`` and ``k = M``."""
    m = num_features
    out = np.full(np.shape(sizes), np.inf)
    for i, k in np.ndenumerate(np.asarray(sizes)):
        if 0 < k < m:
            out[i] = (m - 1) / (math.comb(m, int(k)) * k * (m - k))
    return out


def check_coalitions(name: str, value: Any, batch: int, num_features: int) -> jax.Array:
    """Explicit coalitions: ``(n, M)`` shared by every sample or ``(B, n, M)``, values 0/1; returned as
    ``(n, B, M)``."""
    array = jnp.asarray(value)
    if array.ndim == 2:
        array = jnp.broadcast_to(array[:, None, :], (array.shape[0], batch, array.shape[1]))
    elif array.ndim == 3 and array.shape[0] == batch:
        array = jnp.swapaxes(array, 0, 1)
    else:
        raise InputError(
            f"{name} must be (n, M) (shared by every sample) or (B, n, M) = ({batch}, n, {num_features}); "
            f"got shape {tuple(array.shape)}."
        )
    if array.shape[-1] != num_features:
        raise InputError(f"{name} has {array.shape[-1]} columns but the feature mask has {num_features} features.")
    if not is_traced(array):
        values = np.asarray(array)
        if not np.isin(values, (0, 1)).all():
            raise InputError(f"{name} must hold 0/1 values (1 keeps a feature).")
    return array.astype(jnp.float32)


__all__ = [
    "MAX_EXACT_FEATURES",
    "bernoulli_coalition",
    "check_coalitions",
    "draw",
    "kernel_coalition",
    "kernel_size_logits",
    "scores",
    "shapley_coefficients",
    "shapley_kernel_weights",
    "subset_bits",
]
