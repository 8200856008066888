"""Complexity: how concentrated is an explanation?  Functions of the attributions alone, jitted and
batched (one score per sample).  Quantus applies these to the absolute map normalised by its
maximum (``absolute=True, normalise="max"``, the defaults here; per sample, see ``_common``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..core.errors import InputError
from ..core.numerics import guarded_jit
from . import _common as c

Array = jax.Array


def _checked(attributions: Any, absolute: bool, normalise: str | None) -> Array:
    a = jnp.asarray(attributions, jnp.float32) if hasattr(attributions, "shape") else None
    if a is None or a.ndim < 2:
        shape = getattr(attributions, "shape", None)
        raise InputError(
            f"attributions must be a batch (B, ...) of maps; got {type(attributions).__name__}"
            f"{'' if shape is None else ' of shape ' + str(tuple(shape))}. For one map pass a[None]."
        )
    if c.is_concrete(a) and not bool(jnp.all(jnp.isfinite(a))):
        raise InputError("attributions contain NaN or infinite values.")
    c.check_choice("normalise", normalise, c.NORMALISATIONS)
    return c.preprocess(a, absolute=bool(absolute), normalise_by=normalise)


@guarded_jit
def _gini(a: Array) -> Array:
    v = jnp.sort(c.flat(a), axis=1)
    n = v.shape[1]
    weights = 2 * jnp.arange(1, n + 1, dtype=v.dtype) - n - 1
    total = jnp.sum(v, axis=1)
    return jnp.where(total > 0, jnp.sum(weights * v, axis=1) / (n * jnp.where(total > 0, total, 1.0)), 0.0)


def sparseness(attributions: Any, *, absolute: bool = True, normalise: str | None = "max") -> Array:
    """Sparseness (Chalasani et al. 2020, "Concise Explanations of Neural Networks using Adversarial
    Training", Eq. 9): the Gini index of the (absolute) map sorted in increasing order,

        G(a) = Σ_{i=1}^{n} (2i − n − 1) a_(i) / (n Σ_i a_(i))

    per sample ``(B,)``: 1 when all relevance sits on one feature, 0 when it is uniform.  A zero map
    scores 0 (no concentration).  Quantus adds 1e-7 to every value first (to dodge 0/0), which
    changes the score by ~1e-6 on a max-normalised map; here 0/0 is defined instead.  Needs
    non-negative values (``absolute=True``)."""
    a = _checked(attributions, absolute, normalise)
    if c.is_concrete(a) and bool(jnp.any(a < 0)):
        raise InputError("sparseness needs non-negative maps: keep absolute=True or pass magnitudes.")
    return _gini(a)


@guarded_jit
def _entropy(a: Array) -> Array:
    v = c.flat(a)
    n = v.shape[1]
    total = jnp.sum(v, axis=1, keepdims=True)
    p = jnp.where(total > 0, v / jnp.where(total > 0, total, 1.0), 1.0 / n)  # zero map: uniform
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=1)


def complexity(attributions: Any, *, absolute: bool = True, normalise: str | None = "max") -> Array:
    """Complexity (Bhatt, Weller & Moura 2020, "Evaluating and Aggregating Feature-based Model
    Explanations", Eq. 4): the entropy of the fractional contributions,

        μ_C(a) = −Σ_i p_i ln p_i,   p_i = |a_i| / Σ_j |a_j|

    per sample ``(B,)`` in nats: 0 for one feature, ln n for a uniform map.  An all-zero map is
    treated as uniform (ln n, the limit of a constant map).  Quantus computes p ln(p + 1e-12); here
    0 ln 0 = 0 exactly (the difference is < 1e-9)."""
    a = _checked(attributions, absolute, normalise)
    if c.is_concrete(a) and bool(jnp.any(a < 0)):
        raise InputError("complexity needs non-negative maps: keep absolute=True or pass magnitudes.")
    return _entropy(a)


@guarded_jit
def _count_above(a: Array, eps: Array) -> Array:
    return jnp.sum(c.flat(a) > eps, axis=1)


def effective_complexity(
    attributions: Any, *, eps: float = 1e-5, absolute: bool = True, normalise: str | None = "max"
) -> Array:
    """Effective complexity (Nguyen & Martínez 2020, "On Quantitative Aspects of Model
    Interpretability", §3.2): the number of features whose (absolute, max-normalised) attribution
    exceeds ``eps``, ``|{i : a_i > ε}|``, per sample ``(B,)`` (int).  Quantus default ε = 1e-5."""
    a = _checked(attributions, absolute, normalise)
    return _count_above(a, jnp.float32(c.check_non_negative("eps", eps)))
