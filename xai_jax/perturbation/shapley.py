"""Shapley values of features: exact enumeration, and permutation sampling.

The Shapley value ([shapley1953]_) of feature ``i`` in the game ``v(S) = f_c(x_S)`` (features in
``S`` kept, the others at the baseline; see :mod:`.features`) is

    φ_i = Σ_{S ⊆ N \\ {i}} |S|! (M - |S| - 1)! / M! · (v(S ∪ {i}) - v(S))

Efficiency: ``Σ_i φ_i = v(N) - v(∅) = f_c(x) - f_c(b)``.

* :func:`shapley_values` enumerates all ``2^M`` coalitions: ``φ = Σ_S c(S) (v(S) - v(∅))`` with
  ``c_i(S) = w(|S|-1)`` if ``i ∈ S`` and ``-w(|S|)`` otherwise, ``w(s) = s!(M-s-1)!/M!`` -- the
  same numbers as Captum's ``ShapleyValues`` (which averages over all ``M!`` orderings), in ``2^M``
  forward passes instead of ``M · M!``.
* :func:`shapley_value_sampling` averages the marginal contributions along ``n`` random orderings
  ([strumbelj2010]_; Captum's ``ShapleyValueSampling``): ``φ_{π_k} += v(π_{1..k}) - v(π_{1..k-1})``.
  Efficiency holds exactly for every ordering.

Coalitions are vmapped in chunks of ``batch_size`` (each a forward pass of the whole batch).
"""

from __future__ import annotations

from typing import Annotated, Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import (
    Baseline,
    ChunkSize,
    InputError,
    Inputs,
    Key,
    Option,
    OptionContext,
    PositiveInt,
    Problem,
    chunked_sum,
    method,
)
from ..core.checks import is_traced
from .coalitions import MAX_EXACT_FEATURES, shapley_coefficients, subset_bits
from .features import FeatureMask, Features, compose


def _check_exact(ctx: OptionContext) -> None:
    m = ctx.options["features"].num_features
    if m > MAX_EXACT_FEATURES:
        raise InputError(
            f"exact Shapley values enumerate 2^M coalitions; M = {m} features is too many (at most "
            f"{MAX_EXACT_FEATURES}). "
            "Group the input into fewer features (features=xj.perturbation.Grid(cells=3), superpixels, your own mask), "
            "or estimate them: xj.shapley_value_sampling or xj.kernel_shap."
        )


@method("shapley_values", family="perturbation", signed=True, validate=_check_exact)
def shapley_values(
    problem: Problem,
    inputs: Inputs,
    *,
    features: Features = "coarse",
    baseline: Baseline = 0.0,
    batch_size: ChunkSize = "auto",
) -> jax.Array:
    """Exact Shapley values of ``M ≤ 20`` features by enumerating every coalition ([shapley1953]_;
    Captum's ``ShapleyValues``).

    ``φ_i = Σ_{S ∌ i} |S|!(M-|S|-1)!/M! (v(S ∪ i) - v(S))`` with ``v(S) = f_c(x_S)`` (features outside
    ``S`` set to the baseline); ``Σ_i φ_i = f_c(x) - f_c(b)`` per sample.

    Args:
      features: the players (see :func:`xj.perturbation.feature_mask`); default ``"coarse"``: a 3 x 3 grid
        of cells on images, every element otherwise.
      baseline: value of a removed feature: scalar, one sample's shape, or one per sample.
      batch_size: coalitions scored at once (each a forward pass of the batch); ``"auto"``: from the memory budget.

    Returns:
      ``x``-shaped attributions: each element carries its feature's Shapley value.

    Example:
      >>> phi = xj.shapley_values(model, variables, x, features=xj.perturbation.Grid(cells=2))
      >>> phi.shape == x.shape
      True
    """
    mask: FeatureMask = features
    m = mask.num_features
    x = inputs.x
    f = problem.scalar_fn(inputs, problem.class_indices(inputs))
    empty = f(baseline)
    weight = jnp.asarray(shapley_coefficients(m), x.dtype)

    def term(index: jax.Array) -> jax.Array:
        z = subset_bits(index, m)
        size = z.sum().astype(jnp.int32)
        # c_i(S): +w(|S|-1) for the members, -w(|S|) for the others (w(M) never used: S = N has no outsiders)
        coefficient = jnp.where(z > 0, weight[jnp.maximum(size - 1, 0)], -weight[jnp.minimum(size, m - 1)])
        value = (
            f(compose(mask, x, baseline, jnp.broadcast_to(z, (x.shape[0], m)))) - empty
        )  # v(S) - v(∅): less cancellation
        return value[:, None] * coefficient[None, :]

    phi = chunked_sum(term, jnp.arange(2**m, dtype=jnp.int32), chunk_size=batch_size)
    return mask.expand(phi)


def _check_permutations(ctx: OptionContext, name: str, value: Any) -> jax.Array:
    array = jnp.asarray(value)
    m = ctx.options["features"].num_features
    if array.ndim != 2 or array.shape[1] != m or not jnp.issubdtype(array.dtype, jnp.integer):
        raise InputError(
            f"{name} must be an int array (n, M) = (n, {m}), one ordering of the features per row; "
            f"got {array.dtype} {tuple(array.shape)}."
        )
    if not is_traced(array) and not (np.sort(np.asarray(array), axis=1) == np.arange(m)).all():
        raise InputError(f"every row of {name} must be a permutation of 0..{m - 1}.")
    return array.astype(jnp.int32)


#: Explicit orderings ``(n, M)``, checked against the feature count (options are checked in order).
Permutations = Annotated[jax.Array | None, Option(_check_permutations)]


@method("shapley_value_sampling", family="perturbation", signed=True, report_options={"samples": 4})
def shapley_value_sampling(
    problem: Problem,
    inputs: Inputs,
    *,
    key: Key,
    features: Features = "auto",
    baseline: Baseline = 0.0,
    samples: PositiveInt = 25,
    permutations: Permutations = None,
    batch_size: ChunkSize = "auto",
) -> jax.Array:
    """Shapley values estimated from random feature orderings ([strumbelj2010]_; Captum's
    ``ShapleyValueSampling``).

    ``φ_i = (1/n) Σ_{k=1}^n [v(P_i^{π_k} ∪ {i}) - v(P_i^{π_k})]`` where ``P_i^π`` are the features
    before ``i`` in the ordering ``π``; ``Σ_i φ_i = f_c(x) - f_c(b)`` exactly.  The same orderings serve
    every sample of the batch (as in Captum).  Each ordering costs ``M - 1`` forward passes.

    Args:
      key: ``jax.random`` key for the orderings.
      features: the players (see :func:`xj.perturbation.feature_mask`; default 8 x 8 grid cells).
      baseline: value of a removed feature.
      samples: number of orderings ``n`` (Captum's ``n_samples``).
      permutations: explicit orderings ``(n, M)`` (then ``key`` and ``samples`` are not used): the
        injection point for comparing with another implementation on the same draws.
      batch_size: orderings evaluated at once (``"auto"``: from the memory budget).

    Example:
      >>> phi = xj.shapley_value_sampling(model, variables, x, key=jax.random.key(0), samples=2,
      ...                                 features=xj.perturbation.Grid(cells=2))
      >>> phi.shape == x.shape
      True
    """
    mask: FeatureMask = features
    m = mask.num_features
    x = inputs.x
    f = problem.scalar_fn(inputs, problem.class_indices(inputs))
    empty, full = f(baseline), f(x)
    if permutations is None:
        permutations = jax.vmap(lambda k: jax.random.permutation(k, m))(jax.random.split(key, samples))
    if m == 1:
        return mask.expand(jnp.broadcast_to((full - empty)[:, None], (x.shape[0], 1)))
    prefix_sizes = jnp.arange(1, m)

    def term(order: jax.Array) -> jax.Array:
        rank = jnp.argsort(order)  # rank[j]: position of feature j in the ordering
        prefixes = (rank[None, :] < prefix_sizes[:, None]).astype(x.dtype)  # (M-1, M): the first k features
        middle = jax.vmap(lambda z: f(compose(mask, x, baseline, jnp.broadcast_to(z, (x.shape[0], m)))))(prefixes)
        values = jnp.concatenate([empty[None], middle, full[None]])  # v after 0..M features
        return (values[rank + 1] - values[rank]).T  # feature j's marginal contribution, (B, M)

    phi = chunked_sum(term, permutations, chunk_size=batch_size) / permutations.shape[0]
    return mask.expand(phi)


__all__ = ["shapley_value_sampling", "shapley_values"]
