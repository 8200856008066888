"""KernelSHAP: Shapley values as the solution of a weighted linear regression.

Lundberg & Lee (2017) ([lundberg2017]_, Theorem 2): with the Shapley kernel
``π(z) = (M-1) / (C(M, |z|) |z| (M - |z|))``, the linear surrogate ``g(z) = φ₀ + Σ_j φ_j z_j``
minimising ``Σ_z π(z) (v(z) - g(z))²`` over *all* coalitions, with ``φ₀ = v(∅)`` and
``φ₀ + Σ φ = v(N)`` (the kernel is infinite at the two endpoints), is the vector of Shapley values.
KernelSHAP samples coalitions from ``π`` (a size ``k`` with ``p(k) ∝ (M-1)/(k(M-k))``, then ``k``
features uniformly) and fits the regression with unit weights.

Two ways to honour the infinite endpoint weights (``constraint``):

* ``"exact"`` (default): the two endpoint equations are exact constraints, so
  ``Σ_j φ_j = f_c(x) - f_c(b)`` holds to float precision for every sample (as in the ``shap``
  package's ``KernelExplainer``, which eliminates one variable).
* ``"captum"``: Captum's ``KernelShap`` -- the two endpoints are data points of weight 10⁶ in an
  unconstrained regression with intercept.  Equal to Captum on the same coalitions (tested); the
  efficiency gap is of order ``n / 10⁶`` of the residuals.

The regression is solved in closed form in float32 without ever forming a matrix that holds the
large weight (:func:`~xai_jax.perturbation.surrogate.endpoint_regression`).
"""

from __future__ import annotations

from typing import Annotated, Any

import jax
import jax.numpy as jnp

from ..core import (
    Baseline,
    Choice,
    ChunkSize,
    InputError,
    Inputs,
    Key,
    Option,
    OptionContext,
    PositiveInt,
    Problem,
    method,
)
from ..core.checks import check_finite_array
from .coalitions import check_coalitions, draw, kernel_coalition, scores
from .features import FeatureMask, Features
from .surrogate import endpoint_regression

CONSTRAINTS = ("exact", "captum")
#: Captum's ``KernelShap.inf_weight``: the weight of the two endpoint coalitions.
CAPTUM_ENDPOINT_WEIGHT = 1e6


def _check_coalitions(ctx: OptionContext, name: str, value: Any) -> jax.Array:
    return check_coalitions(name, value, ctx.inputs.x.shape[0], ctx.options["features"].num_features)


def _check_weights(ctx: OptionContext, name: str, value: Any) -> jax.Array:
    array = jnp.asarray(value, jnp.float32)
    check_finite_array(name, array)
    return array


Coalitions = Annotated[jax.Array | None, Option(_check_coalitions)]
Weights = Annotated[jax.Array | None, Option(_check_weights)]


def _validate(ctx: OptionContext) -> None:
    m = ctx.options["features"].num_features
    coalitions, weights = ctx.options["coalitions"], ctx.options["coalition_weights"]
    n = ctx.options["samples"] if coalitions is None else coalitions.shape[0]
    if n < m:
        raise InputError(
            f"KernelSHAP fits {m} feature coefficients from {n} sampled coalitions: more features than samples "
            f"leaves the regression underdetermined. Pass samples >= {m} (a few times {m} for a stable estimate), "
            "or group the input into fewer features (features=xj.perturbation.Grid(cells=4), superpixels, your "
            "own mask)."
        )
    if weights is not None:
        if coalitions is None:
            raise InputError("coalition_weights weigh explicit coalitions; pass coalitions=... with them.")
        batch = ctx.inputs.x.shape[0]
        if tuple(weights.shape) not in ((n,), (batch, n)):
            raise InputError(
                f"coalition_weights must have shape (n,) = ({n},) or (B, n) = ({batch}, {n}); got "
                f"{tuple(weights.shape)}."
            )


@method("kernel_shap", family="perturbation", signed=True, report_options={"samples": 128}, validate=_validate)
def kernel_shap(
    problem: Problem,
    inputs: Inputs,
    *,
    key: Key,
    features: Features = "auto",
    baseline: Baseline = 0.0,
    samples: PositiveInt = 1000,
    constraint: Choice(*CONSTRAINTS) = "exact",  # type: ignore[valid-type]
    coalitions: Coalitions = None,
    coalition_weights: Weights = None,
    batch_size: ChunkSize = "auto",
) -> jax.Array:
    """KernelSHAP ([lundberg2017]_): Shapley values of ``M`` features from a weighted linear fit over
    coalitions sampled from the Shapley kernel.

    ``φ = argmin Σ_z (v(z) - φ₀ - z·φ)²`` over ``n`` coalitions ``z`` drawn with
    ``p(|z| = k) ∝ (M-1)/(k(M-k))``, subject to ``φ₀ = f_c(b)`` and ``φ₀ + Σ φ = f_c(x)``
    (``constraint="exact"``) or with those two points weighted 10⁶ (``"captum"``, Captum's
    ``KernelShap``).  Converges to the exact Shapley values as ``n`` grows.

    Args:
      key: ``jax.random`` key for the coalitions (unused when ``coalitions`` are given).
      features: the players (see :func:`xj.perturbation.feature_mask`; default 8 x 8 grid cells).
      baseline: value of a removed feature.
      samples: sampled coalitions ``n`` (at least ``M``); the endpoints ``f_c(x)`` and ``f_c(b)`` are
        evaluated in addition (Captum's ``n_samples`` counts them: ``n_samples = samples + 2``).
      constraint: ``"exact"`` or ``"captum"`` (module docstring).
      coalitions: explicit 0/1 coalitions ``(n, M)`` (every sample) or ``(B, n, M)``, replacing the
        sampled ones -- the injection point for comparing with another implementation.
      coalition_weights: weights ``(n,)`` or ``(B, n)`` of explicit coalitions (default 1; e.g. the
        Shapley kernel of every proper coalition, which gives the exact Shapley values).
      batch_size: coalitions scored at once (each a forward pass of the batch).

    Example:
      >>> phi = xj.kernel_shap(model, variables, x, key=jax.random.key(0), samples=64)
      >>> phi.shape == x.shape
      True
    """
    mask: FeatureMask = features
    x = inputs.x
    indices = problem.class_indices(inputs)
    f = problem.scalar_fn(inputs, indices)
    active = mask.active()
    if coalitions is None:
        coalitions = draw(key, active, samples, kernel_coalition)
    coalitions = coalitions * active[None].astype(coalitions.dtype)
    n = coalitions.shape[0]
    values = scores(problem, inputs, indices, mask, baseline, coalitions, batch_size)  # (n, B)
    if coalition_weights is None:
        weights = jnp.ones((x.shape[0], n), x.dtype)
    else:
        weights = jnp.broadcast_to(coalition_weights, (x.shape[0], n)).astype(x.dtype)
    # a sample with fewer than two features has no proper coalition: its draws carry no information
    weights = weights * (active.sum(axis=1) >= 2)[:, None]
    end_weight = float("inf") if constraint == "exact" else CAPTUM_ENDPOINT_WEIGHT
    phi, _ = jax.vmap(lambda z, y, w, e, full, a: endpoint_regression(z, y, w, e, full, a, end_weight))(
        jnp.swapaxes(coalitions, 0, 1), values.T, weights, f(baseline), f(x), active
    )
    return mask.expand(phi)


__all__ = ["CONSTRAINTS", "kernel_shap"]
