"""The new methods compose like the others: inside a caller's jax.jit (with a feature mask built
outside), and as method values inside SmoothGrad."""

import functools

import jax
import numpy as np
import pytest

import xai_jax as xj


def linear(params, x):
    return x.reshape(x.shape[0], -1) @ params


PARAMS = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
X = np.random.default_rng(1).uniform(size=(2, 2, 6, 1)).astype(np.float32)


def test_kernel_shap_under_a_callers_jit():
    features = xj.perturbation.feature_mask(X, xj.perturbation.Grid(cell=2))
    eager = xj.kernel_shap(linear, PARAMS, X, 1, key=jax.random.key(0), features=features, samples=24)
    jitted = jax.jit(
        lambda x: xj.kernel_shap(linear, PARAMS, x, 1, key=jax.random.key(0), features=features, samples=24)
    )(X)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)
    labels = np.asarray(features.labels).reshape(2, -1)
    contribution = PARAMS[:, 1] * X.reshape(2, -1)  # linear model, baseline 0: each cell gets Σ w ⊙ x over its pixels
    expected = np.stack([[contribution[b, labels[b] == labels[b, i]].sum() for i in range(12)] for b in range(2)])
    np.testing.assert_allclose(np.asarray(eager).reshape(2, -1), expected, atol=1e-5)


def test_lime_with_segment_means_under_a_callers_jit():
    """LIME's default fill (each removed superpixel by its mean colour) checks the mask on the host:
    with a concrete mask closed over it runs under jit and equals the eager call; a mask passed as a
    traced argument cannot be checked and is refused, naming the way out."""
    features = xj.perturbation.feature_mask(X, xj.perturbation.Grid(cell=2))
    run = functools.partial(xj.lime, linear, PARAMS, target=1, key=jax.random.key(0), samples=24)
    eager = run(X, features=features)
    jitted = jax.jit(lambda x: run(x, features=features))(X)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)
    traced = jax.jit(lambda x, labels: run(x, features=xj.perturbation.FeatureMask(labels, features.num_features)))
    with pytest.raises(xj.InputError, match="close over it"):
        traced(X, features.labels)


def test_smoothgrad_over_rise_without_noise_is_rise():
    rise = functools.partial(xj.rise, key=jax.random.key(3), samples=32, cells=2)
    smoothed = xj.smoothgrad(linear, PARAMS, X, 1, key=jax.random.key(0), method=rise, samples=2, stdev=0.0)
    np.testing.assert_allclose(smoothed, rise(linear, PARAMS, X, 1), rtol=1e-5, atol=1e-6)
