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

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import InputError, Inputs, Problem, Target, chunked_sum, compiled, prepare, register
from ..core.model import Model
from .gradient import target_gradient

Baseline = float | jax.Array | np.ndarray | Callable[[jax.Array], jax.Array]
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


def resolve_baseline(baseline: Baseline, x: jax.Array) -> jax.Array:
    """A baseline array with ``x``'s shape from a scalar, a broadcastable array or ``x -> array``."""
    value = baseline(x) if callable(baseline) else baseline
    value = jnp.asarray(value, x.dtype)
    try:
        return jnp.broadcast_to(value, x.shape)
    except ValueError:
        raise InputError(f"baseline of shape {tuple(value.shape)} does not broadcast to x's shape {tuple(x.shape)}.") from None


def path_integral(
    problem: Problem, inputs: Inputs, baseline: jax.Array, alphas: jax.Array, weights: jax.Array, batch_size: int | None
) -> jax.Array:
    """``(x - x') · Σ_k w_k ∂f/∂x(x' + α_k (x - x'))`` with the classes fixed at ``x``."""
    indices = problem.class_indices(inputs)
    delta = inputs.x - baseline

    def weighted_gradient(alpha: jax.Array, weight: jax.Array) -> jax.Array:
        return weight * target_gradient(problem, inputs, baseline + alpha * delta, indices)

    return delta * chunked_sum(weighted_gradient, alphas, weights, chunk_size=batch_size)


def completeness_error(problem: Problem, inputs: Inputs, baseline: jax.Array, attribution: jax.Array) -> jax.Array:
    """``Σ attribution - (f_c(x) - f_c(x'))`` per sample (the classes fixed at ``x``)."""
    indices = problem.class_indices(inputs)
    f = problem.scalar_fn(inputs, indices)
    return attribution.reshape(attribution.shape[0], -1).sum(-1) - (f(inputs.x) - f(baseline))


@compiled(static=("method", "steps", "batch_size", "return_error"))
def _integrated_gradients(problem: Problem, inputs: Inputs, baseline: jax.Array, *, method: str, steps: int, batch_size: int | None, return_error: bool) -> Any:
    alphas, weights = quadrature(method, steps)
    attribution = path_integral(problem, inputs, baseline, jnp.asarray(alphas, inputs.x.dtype), jnp.asarray(weights, inputs.x.dtype), batch_size)
    if return_error:
        return attribution, completeness_error(problem, inputs, baseline, attribution)
    return attribution


@register("integrated_gradients", family="path", signed=True, defaults={"steps": 32})
def integrated_gradients(
    model: Model,
    variables: Any,
    x: Any,
    target: Target = None,
    *,
    baseline: Baseline = 0.0,
    steps: int = 50,
    method: str = "gausslegendre",
    batch_size: int | None = None,
    return_error: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Integrated gradients (Sundararajan et al. 2017) along the straight path from ``baseline``.

    Args:
      baseline: a scalar, an array broadcastable to ``x``, or a callable ``x -> baseline``.
      steps: number of path points (quadrature nodes).
      method: ``"riemann_left" | "riemann_right" | "riemann_middle" | "riemann_trapezoid" |
        "gausslegendre"`` (Captum's names; the trapezoid is the true rule, see module docstring).
      batch_size: path points evaluated at once (each on the whole batch); ``None`` evaluates all
        of them in one vmapped pass (fastest when it fits); smaller values bound peak memory.
      return_error: also return the completeness error ``Σ IG - (f_c(x) - f_c(x'))`` per sample.

    Returns:
      The attribution with ``x``'s shape, or ``(attribution, error)`` with ``error`` of shape ``(B,)``.
    """
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    quadrature(method, steps)  # validate eagerly
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise InputError(f"batch_size must be a positive integer or None; got {batch_size!r}.")
    return _integrated_gradients(
        problem, inputs, resolve_baseline(baseline, inputs.x), method=method, steps=int(steps),
        batch_size=None if batch_size is None else int(batch_size), return_error=return_error,
    )
