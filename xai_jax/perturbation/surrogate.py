"""Weighted linear surrogates fitted in JAX: ridge, lasso and the endpoint-constrained least squares
of KernelSHAP.

Every function fits *one* sample's surrogate (vmap it over a batch).  ``Z`` is the ``(n, M)``
interpretable design (coalitions in {0, 1}), ``y`` the ``(n,)`` model scores, ``w`` the ``(n,)``
sample weights, ``active`` the ``(M,)`` features that exist (an inactive feature is held at
coefficient 0).  Objectives follow scikit-learn's estimators, which the ``lime`` package and
Captum fit, so the same data give the same coefficients (tested against scikit-learn):

* :func:`ridge`: ``min Σ_i w_i (y_i - c - z_i·β)² + α ‖β‖²`` (``sklearn.linear_model.Ridge``;
  ``α = 0`` is ``LinearRegression``).
* :func:`lasso`: ``min 1/(2 Σ_i w_i) Σ_i w_i (y_i - c - z_i·β)² + α ‖β‖₁`` (``sklearn.linear_model.Lasso``
  with ``sample_weight``), by cyclic coordinate descent on the weighted Gram matrix, run to
  convergence (scikit-learn stops at a duality-gap tolerance, 1e-4 by default).
* :func:`endpoint_regression`: weighted least squares with an intercept where the two endpoint
  coalitions (nothing / everything) carry weight ``w_end``; ``w_end = inf`` is the exact constraint
  ``c = f(b)``, ``c + Σ β = f(x)`` (KernelSHAP's efficiency, [lundberg2017]_), ``w_end = 1e6`` is
  Captum's ``KernelShap``.  Solved as ``β = u + V S⁻¹ (t - E u)`` (``B = XᵀWX + EᵀE``, ``u = B⁻¹XᵀWy``
  with the endpoint rows at weight 1, ``V = B⁻¹Eᵀ``, ``S = E V + I/(w_end - 1)``), which never forms a
  matrix holding ``w_end``: float32 loses nothing to the large weight.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST


def _centered_gram(
    z: jax.Array, y: jax.Array, w: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Weighted means and the centred weighted Gram matrix ``Σ w (z - z̄)(z - z̄)ᵀ`` and ``Σ w (z - z̄)(y - ȳ)``."""
    total = w.sum()
    z_mean = jnp.dot(w, z, precision=HIGHEST) / total
    y_mean = jnp.dot(w, y, precision=HIGHEST) / total
    zc, yc = z - z_mean, y - y_mean
    gram = jnp.dot((zc * w[:, None]).T, zc, precision=HIGHEST)
    rhs = jnp.dot((zc * w[:, None]).T, yc, precision=HIGHEST)
    return gram, rhs, z_mean, y_mean, total


def _restrict(gram: jax.Array, rhs: jax.Array, active: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Inactive features get an identity row/column and a zero right-hand side (coefficient 0)."""
    both = active[:, None] & active[None, :]
    gram = jnp.where(both, gram, 0.0) + jnp.diag(jnp.where(active, 0.0, 1.0))
    return gram, jnp.where(active, rhs, 0.0)


def ridge(z: jax.Array, y: jax.Array, w: jax.Array, alpha: float, active: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(β, c)`` of weighted ridge regression with an intercept (scikit-learn ``Ridge``)."""
    gram, rhs, z_mean, y_mean, _ = _centered_gram(z, y, w)
    gram, rhs = _restrict(gram + alpha * jnp.eye(z.shape[1], dtype=z.dtype), rhs, active)
    beta = jnp.linalg.solve(gram, rhs)
    return beta, y_mean - jnp.dot(z_mean, beta, precision=HIGHEST)


def lasso(
    z: jax.Array,
    y: jax.Array,
    w: jax.Array,
    alpha: float,
    active: jax.Array,
    *,
    tol: float = 1e-7,
    max_sweeps: int = 10_000,
) -> tuple[jax.Array, jax.Array]:
    """``(β, c)`` of weighted lasso with an intercept (scikit-learn ``Lasso(alpha)`` with ``sample_weight``).

    Cyclic coordinate descent on ``½ βᵀĜβ - ĉᵀβ + α‖β‖₁`` (``Ĝ``, ``ĉ``: the centred weighted Gram
    matrix and right-hand side divided by ``Σ w``) until no coefficient moves by more than
    ``tol · max|β|`` in a sweep.
    """
    gram, rhs, z_mean, y_mean, total = _centered_gram(z, y, w)
    gram, rhs = _restrict(gram / total, rhs / total, active)
    diag = jnp.diag(gram)
    usable = active & (diag > 0)
    m = z.shape[1]

    def sweep(
        state: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        beta, q, _, count = state  # q = Ĝ β, kept up to date coordinate by coordinate

        def coordinate(
            j: jax.Array, carry: tuple[jax.Array, jax.Array, jax.Array]
        ) -> tuple[jax.Array, jax.Array, jax.Array]:
            beta, q, moved = carry
            rho = rhs[j] - q[j] + diag[j] * beta[j]
            new = jnp.where(
                usable[j],
                jnp.sign(rho) * jnp.maximum(jnp.abs(rho) - alpha, 0.0) / jnp.where(usable[j], diag[j], 1.0),
                0.0,
            )
            delta = new - beta[j]
            return beta.at[j].set(new), q + gram[:, j] * delta, jnp.maximum(moved, jnp.abs(delta))

        beta, q, moved = jax.lax.fori_loop(0, m, coordinate, (beta, q, jnp.zeros((), z.dtype)))
        return beta, q, moved, count + 1

    def unconverged(state: tuple[jax.Array, jax.Array, jax.Array, jax.Array]) -> jax.Array:
        beta, _, moved, count = state
        return (moved > tol * jnp.maximum(jnp.abs(beta).max(), 1e-30)) & (count < max_sweeps)

    zero = jnp.zeros(m, z.dtype)
    beta, *_ = jax.lax.while_loop(unconverged, sweep, (zero, zero, jnp.asarray(jnp.inf, z.dtype), jnp.asarray(0)))
    return beta, y_mean - jnp.dot(z_mean, beta, precision=HIGHEST)


def endpoint_regression(
    z: jax.Array,
    y: jax.Array,
    w: jax.Array,
    f_empty: jax.Array,
    f_full: jax.Array,
    active: jax.Array,
    end_weight: float,
) -> tuple[jax.Array, jax.Array]:
    """``(φ, φ₀)``: weighted least squares of ``y ≈ φ₀ + z·φ`` with the endpoints ``φ₀ = f_empty`` and
    ``φ₀ + Σ φ = f_full`` weighted ``end_weight`` (``inf``: exact constraints).  See the module docstring."""
    n, m = z.shape
    design = jnp.concatenate([jnp.ones((n, 1), z.dtype), z], axis=1)
    ends = jnp.stack(
        [jnp.zeros(m + 1, z.dtype).at[0].set(1.0), jnp.concatenate([jnp.ones(1, z.dtype), active.astype(z.dtype)])]
    )
    targets = jnp.stack([f_empty, f_full]).astype(z.dtype)
    gram = jnp.dot((design * w[:, None]).T, design, precision=HIGHEST) + jnp.dot(ends.T, ends, precision=HIGHEST)
    rhs = jnp.dot((design * w[:, None]).T, y, precision=HIGHEST) + jnp.dot(ends.T, targets, precision=HIGHEST)
    keep = jnp.concatenate([jnp.ones(1, bool), active])
    gram, rhs = _restrict(gram, rhs, keep)
    solved = jnp.linalg.solve(gram, jnp.concatenate([rhs[:, None], ends.T], axis=1))
    u, v = solved[:, 0], solved[:, 1:]
    slack = (
        jnp.zeros(2, z.dtype)
        if end_weight == float("inf")
        else jnp.full(2, 1.0 / max(end_weight - 1.0, 1e-30), z.dtype)
    )
    s = jnp.dot(ends, v, precision=HIGHEST) + jnp.diag(slack)
    beta = u + jnp.dot(v, jnp.linalg.solve(s, targets - jnp.dot(ends, u, precision=HIGHEST)), precision=HIGHEST)
    return beta[1:], beta[0]


__all__ = ["endpoint_regression", "lasso", "ridge"]
