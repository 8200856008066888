"""Known answers: chance level for random maps, optimality of the exact map on a linear model, zero
sensitivity of a constant gradient, completeness of input × gradient, the tie rule, NaN-free scores on
constant maps, and the Adebayo et al. (2018) randomisation result on the shipped MNIST CNN."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax import evaluation as xe

D = 36  # 6 × 6 single-channel "images"


def linear(variables, x):
    """f(x) = (x·w, −x·w): two logits, class 0 explained."""
    z = x.reshape(x.shape[0], -1) @ variables["w"]
    return jnp.stack([z, -z], axis=1)


@pytest.fixture(scope="module")
def linear_case():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(D).astype(np.float32)
    x = rng.random((1, 6, 6, 1)).astype(np.float32)
    return {"w": w}, x


def test_random_maps_score_at_chance_on_pixel_flipping(linear_case):
    """Deleting k of D features in a uniformly random order leaves E f(x_k) = (1 − k/D) f(x) for a linear
    f with zero baseline, so E AUC = f(x)/2 and E[AUC(LeRF) − AUC(MoRF)] = 0.  Mean over 256 random maps
    within 3 standard errors."""
    variables, x = linear_case
    n = 256
    batch = np.repeat(x, n, axis=0)
    maps = np.random.default_rng(1).standard_normal(batch.shape).astype(np.float32)
    kw = {"baseline": "zero", "score": "logit", "features_per_step": 3}
    morf = xe.pixel_flipping(linear, variables, batch, 0, maps, order="morf", **kw)
    lerf = xe.pixel_flipping(linear, variables, batch, 0, maps, order="lerf", **kw)
    f = float(x.reshape(-1) @ variables["w"])
    auc = np.asarray(xe.auc(morf))
    assert abs(auc.mean() - f / 2) < 3 * auc.std(ddof=1) / np.sqrt(n)
    between = np.asarray(xe.area_between(morf, lerf))
    assert abs(between.mean()) < 3 * between.std(ddof=1) / np.sqrt(n)


def test_the_exact_contributions_are_the_optimal_map_of_a_linear_model(linear_case):
    """With a = w ⊙ x (each feature's exact contribution to f against a zero baseline), most-relevant-
    first deletion removes the largest contributions first: at every step its curve lies below the
    curve of any other order, and least-relevant-first above."""
    variables, x = linear_case
    n = 64
    batch = np.repeat(x, n + 1, axis=0)
    exact = (variables["w"].reshape(1, 6, 6, 1) * x).astype(np.float32)
    maps = np.concatenate([exact, np.random.default_rng(2).standard_normal((n, 6, 6, 1)).astype(np.float32)])
    kw = {"baseline": "zero", "score": "logit"}
    morf = np.asarray(xe.pixel_flipping(linear, variables, batch, 0, maps, order="morf", **kw).scores)
    lerf = np.asarray(xe.pixel_flipping(linear, variables, batch, 0, maps, order="lerf", **kw).scores)
    assert np.all(morf[0] <= morf[1:].min(axis=0) + 1e-5)
    assert np.all(lerf[0] >= lerf[1:].max(axis=0) - 1e-5)
    gradient_x_input = np.asarray(xj.input_x_gradient(linear, variables, x, 0))
    np.testing.assert_allclose(gradient_x_input, exact, rtol=1e-6)  # the exact map is input × gradient here


def test_insertion_runs_from_the_blurred_image_to_the_image_and_the_blur_is_scipys(linear_case):
    import scipy.ndimage

    variables, x = linear_case
    for sigma in (1.5, 5.0):  # 5: Petsiuk's canvas, wider than the 6 × 6 image
        blurred = np.asarray(xe.gaussian_blur(x, sigma))
        np.testing.assert_allclose(
            blurred, scipy.ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="reflect"), atol=1e-6
        )
    curve = xe.insertion(
        linear,
        variables,
        x,
        0,
        np.asarray(xj.input_x_gradient(linear, variables, x, 0)),
        score="logit",
        features_per_step=4,
    )
    w = variables["w"]
    expected_ends = [float(blurred.reshape(-1) @ w), float(x.reshape(-1) @ w)]
    np.testing.assert_allclose(np.asarray(curve.scores)[0, [0, -1]], expected_ends, rtol=1e-5)


def test_input_x_gradient_is_complete_on_a_bias_free_linear_model_and_the_gradient_is_not(linear_case):
    variables, x = linear_case
    gap = xe.completeness(linear, variables, x, 0, xj.input_x_gradient(linear, variables, x, 0))
    assert abs(float(gap[0])) < 1e-5
    gap = xe.completeness(linear, variables, x, 0, xj.gradient(linear, variables, x, 0))
    assert abs(float(gap[0])) > 0.1


def test_the_gradient_of_a_linear_model_has_zero_sensitivity(linear_case):
    variables, x = linear_case
    key = jax.random.key(0)
    assert float(xe.max_sensitivity(linear, variables, x, 0, xj.gradient, key=key, samples=8)[0]) == 0.0


def test_ties_flip_in_raster_order_in_both_directions(linear_case):
    """A constant map orders features by position; so does any strictly monotone map of the position."""
    variables, x = linear_case
    constant = np.ones_like(x)
    kw = {"baseline": "zero", "score": "logit"}
    position = np.arange(D, dtype=np.float32).reshape(x.shape)
    for order, equivalent in (("morf", -position), ("lerf", position)):
        tied = xe.pixel_flipping(linear, variables, x, 0, constant, order=order, **kw).scores
        raster = xe.pixel_flipping(linear, variables, x, 0, equivalent, order=order, **kw).scores
        np.testing.assert_array_equal(np.asarray(tied), np.asarray(raster))


def test_curves_and_correlations_are_finite_on_constant_and_zero_maps(linear_case):
    """The quick version of the next test: the paths with a division (correlations, areas)."""
    variables, x = linear_case
    key = jax.random.key(0)
    for value in (0.0, 1.0):
        a = np.full(x.shape, value, np.float32)
        assert np.isfinite(float(xe.auc(xe.pixel_flipping(linear, variables, x, 0, a, features_per_step=6))[0]))
        corr = xe.faithfulness_correlation(linear, variables, x, 0, a, key=key, runs=5, subset_size=9)
        assert float(corr[0]) == 0.0  # a constant map's subset sums are constant: correlation 0


@pytest.mark.slow
def test_every_metric_is_finite_on_constant_and_zero_maps(linear_case):
    variables, x = linear_case
    key = jax.random.key(0)
    x = np.concatenate([x, x[:, ::-1]])
    segments = np.repeat(np.arange(4), 9).reshape(1, 6, 6).repeat(2, axis=0)
    for value in (0.0, 1.0):
        a = np.full(x.shape, value, np.float32)
        results = {
            "pixel_flipping": xe.auc(xe.pixel_flipping(linear, variables, x, 0, a, features_per_step=6)),
            "region_perturbation": xe.aopc(xe.region_perturbation(linear, variables, x, 0, a, patch_size=3)),
            "irof": xe.irof(linear, variables, x, 0, a, segments=segments).score,
            "faithfulness_correlation": xe.faithfulness_correlation(
                linear, variables, x, 0, a, key=key, runs=5, subset_size=9
            ),
            "infidelity": xe.infidelity(linear, variables, x, 0, a, key=key, samples=3),
            "road": xe.road(linear, variables, x, 0, a, key=key, percentages=(10, 90)).scores,
            "sufficiency": xe.sufficiency(linear, variables, x, 0, a),
            "completeness": xe.completeness(linear, variables, x, 0, a),
            "sparseness": xe.sparseness(a),
            "complexity": xe.complexity(a),
        }
        for name, result in results.items():
            assert np.all(np.isfinite(np.asarray(result))), name
    constant_method = lambda model, variables, x, target, **kw: jnp.ones_like(x)
    results = {
        "max_sensitivity": xe.max_sensitivity(linear, variables, x, 0, constant_method, key=key, samples=2),
        "continuity": xe.continuity(linear, variables, x, 0, constant_method, steps=4),
        "efficient_mprt": xe.efficient_mprt(linear, variables, x, 0, constant_method, key=key),
        "mprt": xe.mprt(linear, variables, x, 0, constant_method, key=key).scores,
        "random_logit": xe.random_logit(linear, variables, x, 0, constant_method, key=key),
    }
    for name, result in results.items():
        assert np.all(np.isfinite(np.asarray(result))), name


def sobel_edges(model, variables, x, target, **_):
    """An 'explanation' that ignores the model: the image's gradient magnitude."""
    dx = jnp.abs(x[:, 1:-1, 2:] - x[:, 1:-1, :-2])
    dy = jnp.abs(x[:, 2:, 1:-1] - x[:, :-2, 1:-1])
    return jnp.pad(dx + dy, ((0, 0), (1, 1), (1, 1), (0, 0)))


@pytest.mark.slow
def test_adebayo_randomisation_result_on_the_shipped_cnn():
    """Sanity checks (Adebayo et al. 2018, Fig. 2/4): cascading top-down randomisation of the shipped
    MNIST CNN drives the gradient's rank correlation with the original map to ≈ 0, while an edge
    detector, which ignores the weights, stays at 1."""
    model, variables = xj.models.load("mnist_cnn")
    images, _ = xj.data.mnist("sample")
    x = images[:16]
    key = jax.random.key(0)
    signed = xe.mprt(model, variables, x, None, xj.gradient, key=key, absolute=False)
    magnitude = xe.mprt(model, variables, x, None, xj.gradient, key=key)
    edges = xe.mprt(model, variables, x, None, sobel_edges, key=key)
    assert signed.layers == ("fc2", "fc1", "conv4", "conv3", "conv2", "conv1")
    assert abs(float(np.mean(signed.scores[-1]))) < 0.1
    assert float(np.mean(magnitude.scores[-1])) < 0.2
    assert float(np.mean(magnitude.scores[0])) < 0.8  # already the top layer changes the map
    np.testing.assert_allclose(np.asarray(edges.scores), 1.0, atol=1e-6)


def test_a_pixel_map_flips_all_channels_of_a_pixel_together():
    """A (B, H, W) map on RGB input perturbs whole pixels: the same curve as the map repeated over the
    channels, flipped three elements (one pixel, channels in order by the tie rule) per step."""
    rng = np.random.default_rng(3)
    w = {"w": rng.standard_normal(6 * 6 * 3).astype(np.float32)}
    x = rng.random((2, 6, 6, 3)).astype(np.float32)
    pixel_map = rng.standard_normal((2, 6, 6)).astype(np.float32)
    kw = {"baseline": "zero", "score": "logit"}
    per_pixel = xe.pixel_flipping(linear, w, x, 0, pixel_map, **kw)
    repeated = xe.pixel_flipping(
        linear, w, x, 0, np.repeat(pixel_map[..., None], 3, axis=-1), features_per_step=3, **kw
    )
    np.testing.assert_allclose(np.asarray(per_pixel.scores), np.asarray(repeated.scores), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(per_pixel.fractions), np.asarray(repeated.fractions))
