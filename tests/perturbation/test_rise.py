"""RISE: TorchRay on the same masks, the three normalisations on a linear model where the
expectation is exact, and the masks drawn on the device."""

import itertools

import jax
import numpy as np
import pytest

import xai_jax as xj
from tests import twins
from tests.perturbation.helpers import assert_matches


def test_rise_equals_torchray_on_the_same_masks():
    torch = pytest.importorskip("torch")
    torchray_rise = pytest.importorskip("torchray.attribution.rise")
    model, variables, tmodel = twins.make("NCHWFlattenNet", seed=1)
    x = twins.random_input(model, batch=2, seed=2)
    targets = np.array([4, 8])
    masks = np.random.default_rng(0).uniform(size=(40, *x.shape[1:3])).astype(np.float32)
    ours = xj.rise(
        model, variables, x, targets, key=jax.random.key(0), masks=masks, normalization="torchray", score="sigmoid"
    )
    reference = torchray_rise.rise(
        tmodel, twins.to_torch(x), num_masks=len(masks), filter_masks=torch.as_tensor(masks[:, None]), batch_size=16
    )
    reference = reference[np.arange(2), targets].numpy()
    assert_matches(ours[..., 0], reference)
    assert np.ptp(np.asarray(ours[..., 0])) > 0 and np.allclose(ours[..., 0], ours[..., 2])


def linear_setup():
    """A linear model on 2 x 4 single-channel images and all 2^8 binary masks: every pixel is kept in
    exactly half of them and every pair in a quarter, so E[f(x ⊙ M) | M_i = 1] is computed exactly:
    c + ½ Σ_j w_j x_j + ½ w_i x_i."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 3)).astype(np.float32)
    params = {"w": w, "c": np.array([0.1, 0.7, -0.4], np.float32)}

    def linear(params, x):
        return x.reshape(x.shape[0], -1) @ params["w"] + params["c"]

    x = rng.normal(size=(2, 2, 4, 1)).astype(np.float32)
    masks = np.array(list(itertools.product([0.0, 1.0], repeat=8)), np.float32).reshape(-1, 2, 4)
    return linear, params, x, masks, w


@pytest.mark.parametrize("normalization, scale", [("paper", 1.0), ("xplique", 1.0), ("torchray", 0.5)])
def test_rise_on_a_linear_model_is_half_w_times_x_plus_a_constant(normalization, scale):
    linear, params, x, masks, w = linear_setup()
    saliency = np.asarray(
        xj.rise(linear, params, x, 1, key=jax.random.key(0), masks=masks, normalization=normalization)
    )
    wx = w[:, 1] * x.reshape(2, -1)
    logit = wx.sum(1) + params["c"][1]
    expected = scale * (0.5 * wx + 0.5 * logit[:, None] + 0.5 * params["c"][1])
    np.testing.assert_allclose(saliency.reshape(2, -1), expected, rtol=0, atol=2e-4 * np.abs(expected).max())


def test_generated_masks_are_smooth_bernoulli_grids():
    masks = np.asarray(xj.perturbation.rise_masks(jax.random.key(0), 256, (28, 28), cells=7, p=0.5))
    assert masks.shape == (256, 28, 28) and masks.min() >= 0 and masks.max() <= 1
    assert abs(masks.mean() - 0.5) < 0.03  # E[M] = p
    assert np.unique(masks.round(4)).size > 2  # upsampled: not binary
    assert len({m.tobytes() for m in masks}) == 256  # one independent draw per key
