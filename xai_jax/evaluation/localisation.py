"""Localisation: does the explanation point at the ground-truth region?  Functions of the attributions
and one boolean mask per sample, jitted and batched.

Masks have ``x``'s shape, ``x``'s shape without the channel axis, or ``(B, H, W, 1)``; an empty mask
is an error (Quantus returns NaN for it).  A mask over pixels and attributions with channels: the
attribution of a pixel is the sum over its channels.  Ties between attribution values are counted
fractionally, as the expectation over a uniformly random tie break, so a constant map scores exactly
at chance (the mask's share of the image) instead of depending on where the mask sits.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..core.errors import InputError
from ..core.numerics import guarded_jit
from . import _common as c

Array = jax.Array


def _prepare(attributions: Any, masks: Any, absolute: bool, normalise: str | None) -> tuple[Array, Array]:
    """``(B, n)`` attributions and boolean masks over the same n features (pixels or elements)."""
    if not hasattr(attributions, "shape") or len(attributions.shape) < 2:
        raise InputError("attributions must be a batch (B, ...) of maps.")
    a = jnp.asarray(attributions, jnp.float32)
    if c.is_concrete(a) and not bool(jnp.all(jnp.isfinite(a))):
        raise InputError("attributions contain NaN or infinite values.")
    if masks is None:
        raise InputError("masks are missing: localisation metrics need one ground-truth mask per sample.")
    m = jnp.asarray(masks)
    a = c.preprocess(a, absolute=bool(absolute), normalise_by=c.check_choice("normalise", normalise, c.NORMALISATIONS))
    if m.shape == a.shape:
        pass
    elif a.ndim >= 4 and m.shape in (a.shape[:-1], (*a.shape[:-1], 1)):  # a pixel mask: a pixel's channels summed
        a = jnp.sum(a, axis=-1)
        m = m.reshape(a.shape)
    elif m.shape == (*a.shape, 1):
        m = m[..., 0]
    else:
        allowed = [tuple(a.shape)] + ([tuple(a.shape[:-1]), (*a.shape[:-1], 1)] if a.ndim >= 4 else [(*a.shape, 1)])
        raise InputError(
            f"masks have shape {tuple(m.shape)}; expected one of {allowed} for attributions of shape "
            f"{tuple(a.shape)} (one mask per sample)."
        )
    m = m.astype(bool)
    if c.is_concrete(m):
        empty = jnp.flatnonzero(~jnp.any(c.flat(m), axis=1))
        if empty.size:
            raise InputError(
                f"masks of sample(s) {empty.tolist()[:10]} are empty: a localisation score needs at least "
                "one pixel inside the mask."
            )
    return c.flat(a), c.flat(m)


def _expected_hits(a: Array, m: Array, k: Array) -> Array:
    """Expected number of mask features among the ``k`` highest-scoring features of each row, with
    ties at the cut broken uniformly at random."""
    v = jnp.sort(a, axis=1)[:, ::-1]
    threshold = jnp.take_along_axis(v, jnp.clip(k - 1, 0, a.shape[1] - 1)[:, None], axis=1)
    above = a > threshold
    tied = a == threshold
    slots = k - jnp.sum(above, axis=1)
    tied_in_mask = jnp.sum(tied & m, axis=1)
    return jnp.sum(above & m, axis=1) + slots * tied_in_mask / jnp.maximum(jnp.sum(tied, axis=1), 1)


@guarded_jit
def _pointing_game(a: Array, m: Array) -> Array:
    best = a == jnp.max(a, axis=1, keepdims=True)
    return jnp.sum(best & m, axis=1) / jnp.sum(best, axis=1)


def pointing_game(attributions: Any, masks: Any, *, absolute: bool = False, normalise: str | None = "max") -> Array:
    """Pointing game (Zhang et al. 2018, "Top-down Neural Attention by Excitation Backprop", §4.1): a hit
    when the map's maximum lies inside the mask,

        PG_b = 1[argmax_i a_{b,i} ∈ M_b]

    per sample ``(B,)``.  With several tied maxima the score is the fraction of them inside the mask
    (Quantus counts a hit if *any* is inside, so a constant map always hits).  No tolerance margin
    (Zhang's 15-pixel margin is Quantus' off-by-default too)."""
    a, m = _prepare(attributions, masks, absolute, normalise)
    return _pointing_game(a, m)


@guarded_jit
def _mass(a: Array, m: Array) -> Array:
    inside = jnp.sum(jnp.where(m, a, 0.0), axis=1)
    total = jnp.sum(a, axis=1)
    share = jnp.sum(m, axis=1) / m.shape[1]
    return jnp.where(total != 0, inside / jnp.where(total != 0, total, 1.0), share)


def relevance_mass_accuracy(
    attributions: Any, masks: Any, *, absolute: bool = False, normalise: str | None = "max"
) -> Array:
    """Relevance mass accuracy (Arras, Osman & Samek 2022, "CLEVR-XAI: A benchmark dataset for the
    ground truth evaluation of neural network explanations", Eq. 5)::

        RMA_b = Σ_{i ∈ M_b} a_{b,i} / Σ_i a_{b,i}

    per sample ``(B,)``.  A map with zero total relevance scores the mask's share of the image (the
    value of any constant map).  Quantus defaults: signed, max-normalised (the ratio is scale-free)."""
    a, m = _prepare(attributions, masks, absolute, normalise)
    return _mass(a, m)


@guarded_jit
def _rank(a: Array, m: Array) -> Array:
    k = jnp.sum(m, axis=1)
    return _expected_hits(a, m, k) / k


def relevance_rank_accuracy(
    attributions: Any, masks: Any, *, absolute: bool = False, normalise: str | None = "max"
) -> Array:
    """Relevance rank accuracy (Arras, Osman & Samek 2022, Eq. 6): with K = |M_b|, the share of the K
    highest-ranked features that lie inside the mask,

        RRA_b = |top_K(a_b) ∩ M_b| / K

    per sample ``(B,)``; ties at the K-th value counted fractionally (see the module doc)."""
    a, m = _prepare(attributions, masks, absolute, normalise)
    return _rank(a, m)


@guarded_jit
def _top_k(a: Array, m: Array, k: Array, concept_influence: bool) -> Array:
    ks = jnp.full((a.shape[0],), k)
    share = _expected_hits(a, m, ks) / k
    return jnp.where(concept_influence, share * m.shape[1] / jnp.sum(m, axis=1), share)


def top_k_intersection(
    attributions: Any,
    masks: Any,
    *,
    k: int = 1000,
    concept_influence: bool = False,
    absolute: bool = False,
    normalise: str | None = "max",
) -> Array:
    """Top-k intersection (Theiner, Müller-Budack & Ewerth 2021, "Interpretable Semantic Photo
    Geolocation", §4.3): the share of the ``k`` highest-ranked features inside the mask,

        TKI_b = |top_k(a_b) ∩ M_b| / k,   × n / |M_b| with ``concept_influence``

    per sample ``(B,)``; ties at the cut counted fractionally.  Quantus' default k = 1000 needs
    images of more than 1000 features (not MNIST's 784)."""
    a, m = _prepare(attributions, masks, absolute, normalise)
    kk = c.check_positive_int("k", k)
    if kk > a.shape[1]:
        raise InputError(f"k = {kk} is larger than the number of features {a.shape[1]}.")
    return _top_k(a, m, jnp.int32(kk), bool(concept_influence))
