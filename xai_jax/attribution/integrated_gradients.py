"""Integrated gradients.

Sundararajan, Taly & Yan (2017), "Axiomatic Attribution for Deep Networks":

    IG_i(x) = (x_i - x'_i) · ∫_0^1 ∂f_c(x' + α (x - x')) / ∂x_i dα  ≈  (x_i - x'_i) · Σ_k w_k g_i(α_k)

with baseline ``x'``.  Completeness: ``Σ_i IG_i(x) = f_c(x) - f_c(x')`` up to the quadrature error.
The quadrature rules are Captum's (``riemann_left``, ``riemann_right``, ``riemann_middle``,
``riemann_trapezoid``, ``gausslegendre``) with one correction: Captum's ``riemann_trapezoid``
weights sum to ``(n-1)/n`` (step ``1/n`` on ``linspace(0, 1, n)`` with halved ends), so its result
undershoots by ``1/n``; ours is the true trapezoid rule (weights sum to 1), which equals Captum's
result × ``n/(n-1)``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import (
    Baseline,
    Choice,
    ChunkSize,
    Flag,
    InputError,
    Inputs,
    OptionContext,
    PositiveInt,
    Problem,
    chunked_sum,
    method,
)
from ..core.batching import ChunkSize as ChunkSizeValue
from ..core.batching import resolve_chunk_size
from ..trace.gradients import target_gradient
from ..trace.tokens import on_embedding
from ..trace.xla_cpu import LOOP_GRADIENT_RULES

QUADRATURES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points ``α_k`` in [0, 1] and weights ``w_k`` (summing to 1) of a quadrature rule."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InputError(f"steps must be a positive integer; got {steps!r}.")
    n = int(steps)
    if method == "riemann_left":
        alphas = np.arange(n) / n
    elif method == "riemann_right":
        alphas = np.arange(1, n + 1) / n
    elif method == "riemann_middle":
        alphas = (np.arange(n) + 0.5) / n
    elif method == "riemann_trapezoid":
        if n < 2:
            raise InputError("riemann_trapezoid needs steps >= 2.")
        alphas = np.linspace(0.0, 1.0, n)
        weights = np.full(n, 1.0 / (n - 1))
        weights[[0, -1]] /= 2
        return alphas, weights
    elif method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return (nodes + 1) / 2, weights / 2
    else:
        raise InputError(f"unknown quadrature {method!r}; choose one of {', '.join(QUADRATURES)}.")
    return alphas, np.full(n, 1.0 / n)


def path_integral(
    problem: Problem,
    inputs: Inputs,
    baseline: jax.Array,
    alphas: jax.Array,
    weights: jax.Array,
    batch_size: ChunkSizeValue,
) -> jax.Array:
    """``(x - x') · Σ_k w_k ∂f/∂x(x' + α_k (x - x'))`` with the classes fixed at ``x``.

    Path points are vmapped in chunks (``batch_size``; ``"auto"`` from the memory budget).  Inside
    the chunk loop the convolution gradient uses the loop-friendly rule, so a bounded chunk costs
    about what one vmapped pass does.
    """
    indices = problem.class_indices(inputs)
    delta = inputs.x - baseline

    def weighted_gradient(alpha: jax.Array, weight: jax.Array, rules: Any = None) -> jax.Array:
        return weight * target_gradient(problem, inputs, baseline + alpha * delta, indices, rules)

    chunk = resolve_chunk_size(batch_size, weighted_gradient, (alphas, weights))
    if chunk is None:
        return delta * chunked_sum(weighted_gradient, alphas, weights)
    in_loop = functools.partial(weighted_gradient, rules=LOOP_GRADIENT_RULES)
    return delta * chunked_sum(in_loop, alphas, weights, chunk_size=chunk)


def completeness_error(problem: Problem, inputs: Inputs, baseline: jax.Array, attribution: jax.Array) -> jax.Array:
    """``Σ attribution - (f_c(x) - f_c(x'))`` per sample (the classes fixed at ``x``)."""
    indices = problem.class_indices(inputs)
    f = problem.scalar_fn(inputs, indices)
    return attribution.reshape(attribution.shape[0], -1).sum(-1) - (f(inputs.x) - f(baseline))


def _check_quadrature(ctx: OptionContext) -> None:
    quadrature(ctx.options["method"], ctx.options["steps"])


@method(
    "integrated_gradients",
    family="path",
    signed=True,
    report_options={"steps": 32, "return_error": True},
    validate=_check_quadrature,
    tokens=on_embedding,
)
def integrated_gradients(
    problem: Problem,
    inputs: Inputs,
    *,
    baseline: Baseline = 0.0,
    steps: PositiveInt = 50,
    method: Choice(*QUADRATURES, what="quadrature") = "gausslegendre",  # type: ignore[valid-type]
    batch_size: ChunkSize = "auto",
    return_error: Flag = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Integrated gradients ([sundararajan2017]_) along the straight path from ``baseline``.

    ``IG_i(x) = (x_i - x'_i) · Σ_k w_k ∂f_c(x' + α_k (x - x'))/∂x_i`` with the nodes ``α_k`` and
    weights ``w_k`` of the quadrature ``method``; completeness ``Σ_i IG_i = f_c(x) - f_c(x')`` holds up
    to the quadrature error (``return_error=True`` returns it per sample).

    Args:
      baseline: a scalar, an array broadcastable to ``x`` (one sample, or one per sample), or a
        callable ``x -> baseline``.
      steps: number of path points (quadrature nodes).
      method: ``"riemann_left" | "riemann_right" | "riemann_middle" | "riemann_trapezoid" |
        "gausslegendre"`` (Captum's names; the trapezoid is the true rule, see the module docstring).
        On ReLU networks ``riemann_middle`` is often more accurate than Gauss–Legendre at few steps
        (the integrand has kinks); README "Integrated gradients: which quadrature" has measurements.
      batch_size: path points evaluated at once (each on the whole batch): ``"auto"`` (default)
        chooses the largest chunk that fits the memory budget, ``None`` evaluates all at once, an int
        bounds it.
      return_error: also return the completeness error ``Σ IG - (f_c(x) - f_c(x'))`` per sample.

    Returns:
      The attribution with ``x``'s shape, or ``(attribution, error)`` with ``error`` of shape ``(B,)``.

    Example:
      >>> attr, error = xj.integrated_gradients(model, variables, x, steps=16, return_error=True)
      >>> attr.shape == x.shape, error.shape
      (True, (4,))
    """
    alphas, weights = quadrature(method, steps)
    x = inputs.x
    attribution = path_integral(
        problem, inputs, baseline, jnp.asarray(alphas, x.dtype), jnp.asarray(weights, x.dtype), batch_size
    )
    if return_error:
        return attribution, completeness_error(problem, inputs, baseline, attribution)
    return attribution
