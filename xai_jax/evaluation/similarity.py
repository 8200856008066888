"""Similarity of explanations and scores: Pearson, Spearman (average ranks), SSIM.  All NaN-free:
a correlation with a constant vector is 0, the SSIM of two identical constant maps is 1."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def average_ranks(v: Array) -> Array:
    """0-based ranks along the last axis with ties given their average rank (SciPy's 'average')."""

    def one(u: Array) -> Array:
        s = jnp.sort(u)
        lo = jnp.searchsorted(s, u, side="left")
        hi = jnp.searchsorted(s, u, side="right")
        return (lo + hi - 1).astype(jnp.float32) / 2

    fn = one
    for _ in range(v.ndim - 1):
        fn = jax.vmap(fn)
    return fn(v)


def pearson(a: Array, b: Array) -> Array:
    """Pearson correlation along the last axis; 0 when either side is constant (never NaN)."""
    a = a - jnp.mean(a, axis=-1, keepdims=True)
    b = b - jnp.mean(b, axis=-1, keepdims=True)
    na = jnp.sqrt(jnp.sum(a * a, axis=-1))
    nb = jnp.sqrt(jnp.sum(b * b, axis=-1))
    ok = (na > 0) & (nb > 0)
    r = jnp.sum(a * b, axis=-1) / jnp.where(ok, na * nb, 1.0)
    return jnp.where(ok, jnp.clip(r, -1.0, 1.0), 0.0)


def spearman(a: Array, b: Array) -> Array:
    """Spearman rank correlation along the last axis (average ranks for ties); 0 for a constant side."""
    return pearson(average_ranks(a), average_ranks(b))


def _box_mean(v: Array, size: int) -> Array:
    """Mean over every ``size``×``size`` window lying inside the (H, W) map (a 'valid' box filter)."""
    c = jnp.cumsum(jnp.cumsum(jnp.pad(v, ((1, 0), (1, 0))), axis=0), axis=1)
    total = c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
    return total / (size * size)


def ssim(a: Array, b: Array, *, window: int = 7, k1: float = 0.01, k2: float = 0.03) -> Array:
    """Mean structural similarity (Wang et al. 2004, "Image Quality Assessment: From Error Visibility
    to Structural Similarity", Eq. 13) of two maps ``(H, W)`` or ``(H, W, C)`` (channels averaged)::

        SSIM = (2 μ_a μ_b + C₁)(2 σ_ab + C₂) / ((μ_a² + μ_b² + C₁)(σ_a² + σ_b² + C₂)),
        C_i = (k_i R)²,  R = max(a, b) − min(a, b)

    with ``window``² uniform windows and sample (co)variances, averaged over the windows that lie
    inside the map: scikit-image's ``structural_similarity(a, b, data_range=R)`` defaults (R as in
    Quantus' ``ssim``).  Two identical constant maps (R = 0) have SSIM 1.  A map smaller than the
    window uses the largest odd window that fits (at least 3 × 3)."""
    if a.ndim == 3:
        return jnp.mean(jax.vmap(lambda u, v: ssim(u, v, window=window, k1=k1, k2=k2), in_axes=2)(a, b))
    fits = min(window, a.shape[0], a.shape[1])
    window = fits if fits % 2 else fits - 1
    if window < 3:
        raise ValueError(f"ssim needs maps of at least 3 × 3 pixels; got {tuple(a.shape)}.")
    a = a.astype(jnp.float32)
    b = b.astype(jnp.float32)
    data_range = jnp.max(jnp.maximum(a, b)) - jnp.min(jnp.minimum(a, b))
    data_range = jnp.where(data_range > 0, data_range, 1.0)
    ua, ub = _box_mean(a, window), _box_mean(b, window)
    n = window * window
    unbiased = n / (n - 1)
    va = unbiased * (_box_mean(a * a, window) - ua * ua)
    vb = unbiased * (_box_mean(b * b, window) - ub * ub)
    vab = unbiased * (_box_mean(a * b, window) - ua * ub)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    s = ((2 * ua * ub + c1) * (2 * vab + c2)) / ((ua * ua + ub * ub + c1) * (va + vb + c2))
    return jnp.mean(s)
