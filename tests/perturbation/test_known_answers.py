"""Known answers: Shapley values of a linear model are w ⊙ (x - b); exact Shapley values equal a
brute-force average over all orderings; KernelSHAP over every coalition with the Shapley kernel is
exact and its sampled estimate converges; efficiency (Σ φ = f(x) - f(b)) per sample."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests import twins
from tests.perturbation.helpers import band_labels, per_feature
from xai_jax.perturbation.coalitions import shapley_kernel_weights

RNG = np.random.default_rng(0)
W = RNG.normal(size=(6, 3)).astype(np.float32)


def linear(params, x):
    return x.reshape(x.shape[0], -1) @ params["w"] + params["c"]


def interacting(params, x):
    """A non-additive model of 5 inputs: pairwise products and a ReLU (so Shapley values are not w ⊙ x)."""
    h = jax.nn.relu(x @ params["a"])
    return jnp.stack([h @ params["b"] + x[:, 0] * x[:, 1] - x[:, 2] * x[:, 4], x.sum(1)], axis=1)


LINEAR = {"w": W, "c": np.array([0.4, -0.3, 1.0], np.float32)}
MLP = {"a": RNG.normal(size=(5, 7)).astype(np.float32), "b": RNG.normal(size=7).astype(np.float32)}


def brute_force_shapley(f, x, b):
    """φ_i = mean over all M! orderings of f(S ∪ i) - f(S), S the features before i (NumPy, one sample)."""
    m = x.shape[0]
    phi = np.zeros(m)
    for order in itertools.permutations(range(m)):
        current = b.copy()
        before = f(current)
        for i in order:
            current[i] = x[i]
            after = f(current)
            phi[i] += after - before
            before = after
    return phi / math.factorial(m)


def test_shapley_values_of_a_linear_model_are_w_times_x_minus_b():
    x = RNG.normal(size=(3, 6)).astype(np.float32)
    b = RNG.normal(size=6).astype(np.float32)
    expected = W[:, 2] * (x - b)
    key = jax.random.key(0)
    for attr in (
        xj.shapley_values(linear, LINEAR, x, 2, baseline=b),
        xj.shapley_value_sampling(linear, LINEAR, x, 2, baseline=b, key=key, samples=3),
        xj.kernel_shap(linear, LINEAR, x, 2, baseline=b, key=key, samples=40),
    ):
        np.testing.assert_allclose(attr, expected, atol=2e-5)


def test_grouped_features_of_a_linear_model_sum_their_elements():
    """With a feature mask, φ_j = Σ_{i in feature j} w_i (x_i - b_i)."""
    x = RNG.normal(size=(2, 2, 3, 1)).astype(np.float32)
    labels = np.array([[0, 0, 1], [2, 1, 1]])
    phi = per_feature(xj.shapley_values(linear, LINEAR, x, 0, features=labels, baseline=0.5), labels)
    contribution = W[:, 0] * (x.reshape(2, -1) - 0.5)
    expected = np.stack([contribution[:, labels.reshape(-1) == j].sum(1) for j in range(3)], axis=1)
    np.testing.assert_allclose(phi, expected, atol=2e-5)


def test_exact_shapley_values_equal_brute_force_enumeration():
    x = RNG.normal(size=(2, 5)).astype(np.float32)
    b = RNG.normal(size=5).astype(np.float32)
    ours = np.asarray(xj.shapley_values(interacting, MLP, x, 0, baseline=b))
    for n in range(2):
        f = lambda v: float(interacting(MLP, v[None].astype(np.float32))[0, 0])
        np.testing.assert_allclose(
            ours[n], brute_force_shapley(f, x[n].astype(np.float64), b.astype(np.float64)), atol=1e-5
        )


def test_kernel_shap_with_every_coalition_and_the_shapley_kernel_is_exact():
    """Lundberg & Lee's Theorem 2: the kernel-weighted regression over all proper coalitions, with the
    endpoints as constraints, returns the Shapley values."""
    x = RNG.normal(size=(2, 5)).astype(np.float32)
    coalitions = np.array([z for z in itertools.product([0, 1], repeat=5) if 0 < sum(z) < 5], np.float32)
    weights = shapley_kernel_weights(coalitions.sum(1), 5).astype(np.float32)
    ours = xj.kernel_shap(
        interacting, MLP, x, 0, key=jax.random.key(0), coalitions=coalitions, coalition_weights=weights
    )
    np.testing.assert_allclose(ours, xj.shapley_values(interacting, MLP, x, 0), atol=1e-5)


@pytest.mark.slow
def test_sampled_kernel_shap_converges_to_the_exact_values():
    """With up to 10 features, the error shrinks as samples grow, to within a few percent."""
    model, variables, _ = twins.make("NCHWFlattenNet", seed=2)
    x = twins.random_input(model, batch=2, seed=3)
    labels = band_labels(x.shape[1:3], rows=3, cols=3)  # 9 features
    exact = np.asarray(xj.shapley_values(model, variables, x, 5, features=labels))
    scale = np.abs(exact).max()
    errors = [
        np.abs(
            np.asarray(xj.kernel_shap(model, variables, x, 5, features=labels, key=jax.random.key(1), samples=n))
            - exact
        ).max()
        for n in (20, 2000)
    ]
    assert errors[1] < errors[0] and errors[1] < 0.05 * scale, (errors, scale)


@pytest.mark.parametrize("name", ["shapley_values", "shapley_value_sampling", "kernel_shap"])
def test_efficiency_per_sample_on_a_cnn(name):
    model, variables, _ = twins.make("NCHWFlattenNet", seed=2)
    x = twins.random_input(model, batch=3, seed=4)
    targets = np.array([1, 4, 9])
    labels = band_labels(x.shape[1:3], rows=2, cols=3)
    options = {} if name == "shapley_values" else {"key": jax.random.key(2), "samples": 12}
    phi = per_feature(xj.METHODS[name](model, variables, x, targets, features=labels, baseline=-0.2, **options), labels)
    logits = np.asarray(model.apply(variables, x))[np.arange(3), targets]
    empty = np.asarray(model.apply(variables, np.full_like(x, -0.2)))[np.arange(3), targets]
    np.testing.assert_allclose(phi.sum(1), logits - empty, rtol=1e-4, atol=1e-4)


def test_gradient_shap_of_a_linear_model_is_exact_per_draw():
    """For linear f, (x - b) ⊙ ∇f = w ⊙ (x - b) whatever α: the estimate is the mean over drawn references."""
    x = RNG.normal(size=(2, 6)).astype(np.float32)
    references = RNG.normal(size=(4, 6)).astype(np.float32)
    draws = xj.paths.GradientShapDraws(np.array([[0, 3], [2, 2], [1, 0]]), RNG.uniform(size=(3, 2)).astype(np.float32))
    attr = xj.gradient_shap(linear, LINEAR, x, 1, key=jax.random.key(0), baselines=references, draws=draws)
    drawn = references[np.array([[0, 3], [2, 2], [1, 0]])]  # (3, 2, 6)
    np.testing.assert_allclose(attr, (W[:, 1] * (x[None] - drawn)).mean(0), atol=1e-5)


def test_samples_with_different_feature_counts():
    """Per-sample masks (superpixels) may have different counts: a sample's missing features are null
    players, so KernelSHAP and LIME (baseline 0, as the expected values assume) still return its exact values."""
    x = RNG.normal(size=(2, 2, 3, 1)).astype(np.float32)
    labels = np.stack([np.array([[0, 0, 1], [2, 3, 3]]), np.array([[0, 1, 1], [0, 2, 2]])])  # 4 and 3 features
    contribution = W[:, 0] * x.reshape(2, -1)
    expected = np.stack(
        [[contribution[b, labels[b].reshape(-1) == labels[b].reshape(-1)[i]].sum() for i in range(6)] for b in range(2)]
    )
    shap = xj.kernel_shap(linear, LINEAR, x, 0, key=jax.random.key(0), features=labels, samples=30)
    lime = xj.lime(linear, LINEAR, x, 0, key=jax.random.key(0), features=labels, samples=60, alpha=0.0, baseline=0.0)
    for attr in (shap, lime):
        np.testing.assert_allclose(np.asarray(attr).reshape(2, -1), expected, atol=2e-5)


def test_superpixel_features_feed_lime():
    pytest.importorskip("skimage")
    model, variables = xj.models.load("mnist_cnn")
    images, _ = xj.data.mnist("sample")
    x = np.asarray(images[:2], np.float32)
    # SLIC: lime_image's quickshift settings (kernel_size 4, max_dist 200) give 1-2 segments on a 28 x 28 digit.
    features = xj.perturbation.feature_mask(x, "slic")
    counts = np.asarray(features.counts())
    assert features.labels.shape == x.shape and (counts > 1).all()
    attr = np.asarray(xj.lime(model, variables, x, key=jax.random.key(0), features=features, samples=64))
    for b in range(2):  # constant over each superpixel, and not all zero
        labels = np.asarray(features.labels[b])
        for j in range(counts[b]):
            assert np.ptp(attr[b][labels == j]) == 0
        assert np.abs(attr[b]).max() > 0
