"""Complexity and localisation metrics: equal to Quantus 0.6 on the same maps and masks (with its
per-sample normalisation option), closed forms on small cases, and the documented tie rule."""

from __future__ import annotations

import numpy as np
import pytest

from xai_jax import evaluation as xe

from . import references as ref

TOL = 1e-5


@pytest.fixture(scope="module")
def maps():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 12, 12, 1)).astype(np.float32)
    x = rng.random((5, 12, 12, 1)).astype(np.float32)
    masks = np.zeros((5, 12, 12, 1), bool)
    masks[:, 3:8, 2:9] = True
    masks[1, 0, 0] = True
    return x, a, masks


def _quantus(metric, x, a, masks=None):
    kwargs = {} if masks is None else {"s_batch": ref.nchw(masks).astype(np.float32)}
    return np.asarray(
        metric(model=None, x_batch=ref.nchw(x), y_batch=np.zeros(len(x), int), a_batch=ref.nchw(a), **kwargs)
    )


PER_SAMPLE = {
    "disable_warnings": True,
    "return_aggregate": False,
    "normalise_func_kwargs": {"normalise_axes": (1, 2, 3)},
}


@pytest.mark.torch
@pytest.mark.parametrize(
    "name, quantus_name, options",
    [
        ("sparseness", "Sparseness", {}),
        ("complexity", "Complexity", {}),
        ("effective_complexity", "EffectiveComplexity", {"eps": 0.3}),
    ],
)
def test_complexity_metrics_equal_quantus(maps, name, quantus_name, options):
    q = ref.quantus()
    x, a, _ = maps
    ours = getattr(xe, name)(a, **options)
    expected = _quantus(getattr(q, quantus_name)(**options, **PER_SAMPLE), x, a)
    np.testing.assert_allclose(np.asarray(ours), expected, atol=TOL)


@pytest.mark.torch
@pytest.mark.parametrize(
    "name, quantus_name, options",
    [
        ("pointing_game", "PointingGame", {}),
        ("relevance_mass_accuracy", "RelevanceMassAccuracy", {}),
        ("relevance_rank_accuracy", "RelevanceRankAccuracy", {}),
        ("top_k_intersection", "TopKIntersection", {"k": 20}),
        ("top_k_intersection", "TopKIntersection", {"k": 20, "concept_influence": True}),
    ],
)
def test_localisation_metrics_equal_quantus(maps, name, quantus_name, options):
    q = ref.quantus()
    x, a, masks = maps
    ours = getattr(xe, name)(a, masks, **options)
    expected = _quantus(getattr(q, quantus_name)(**options, **PER_SAMPLE), x, a, masks)
    np.testing.assert_allclose(np.asarray(ours), expected, atol=TOL)


def test_closed_forms():
    one_hot = np.zeros((1, 10), np.float32)
    one_hot[0, 3] = 2.0
    uniform = np.full((1, 10), 0.5, np.float32)
    assert float(xe.sparseness(one_hot)[0]) == pytest.approx(0.9, abs=1e-6)  # (n − 1)/n for one feature
    assert float(xe.sparseness(uniform)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(xe.complexity(one_hot)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(xe.complexity(uniform)[0]) == pytest.approx(np.log(10), abs=1e-6)
    assert int(xe.effective_complexity(one_hot)[0]) == 1


def test_constant_and_zero_maps_are_nan_free_and_score_at_chance():
    masks = np.zeros((2, 8, 8), bool)
    masks[0, :2] = True  # a quarter of the image, at the top
    masks[1, 6:] = True  # a quarter, at the bottom: same chance, other place
    for value in (0.0, 1.0):
        a = np.full((2, 8, 8), value, np.float32)
        for fn in (xe.pointing_game, xe.relevance_mass_accuracy, xe.relevance_rank_accuracy):
            np.testing.assert_allclose(np.asarray(fn(a, masks)), 0.25, atol=1e-6)
        np.testing.assert_allclose(np.asarray(xe.top_k_intersection(a, masks, k=8)), 0.25, atol=1e-6)
        for fn in (xe.sparseness, xe.complexity, xe.effective_complexity):
            assert np.all(np.isfinite(np.asarray(fn(a))))
    np.testing.assert_allclose(np.asarray(xe.complexity(np.zeros((1, 16)))), np.log(16), atol=1e-6)


def test_pixel_masks_sum_the_channels_of_multi_channel_attributions():
    a = np.zeros((1, 4, 4, 3), np.float32)
    a[0, 1, 2] = [1.0, 2.0, 3.0]
    a[0, 3, 3] = [5.0, 0.0, 0.0]  # largest single element, smaller pixel sum
    mask = np.zeros((1, 4, 4), bool)
    mask[0, 1, 2] = True
    assert float(xe.pointing_game(a, mask)[0]) == 1.0
    assert float(xe.relevance_mass_accuracy(a, mask)[0]) == pytest.approx(6 / 11)
