"""Guided IG, Blur IG and XRAI against PAIR's ``saliency`` package, whose core API takes a
``call_model_function``: here backed by the same JAX model, so both sides see identical gradients.
Criterion: max |ours - ref| <= 1e-4 * max |ref| with the same steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests import twins
from tests.perturbation.helpers import assert_matches

saliency_core = pytest.importorskip("saliency.core")

TARGETS = np.array([4, 7])


@pytest.fixture(scope="module")
def setup():
    model, variables, _ = twins.make("NCHWFlattenNet", seed=5)
    x = np.random.default_rng(6).uniform(size=(2, *model.INPUT_SHAPE)).astype(np.float32)
    grad = jax.jit(jax.grad(lambda z, t: jnp.sum(model.apply(variables, z)[:, t])))

    def call_model(target):
        def call(x_batch, call_model_args=None, expected_keys=None):
            x_batch = np.asarray(x_batch, np.float32)
            return {saliency_core.base.INPUT_OUTPUT_GRADIENTS: np.asarray(grad(x_batch, target))}

        return call

    return model, variables, x, call_model


class _NumPy2Quantile:
    """PAIR's GuidedIG calls np.quantile(..., interpolation='lower'), a keyword NumPy 2 removed
    (renamed ``method``); this shim forwards everything else to NumPy."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def quantile(a, q, interpolation="linear", **kwargs):
        return np.quantile(a, q, method=interpolation, **kwargs)


def test_guided_ig_equals_pair(setup, monkeypatch):
    from saliency.core import guided_ig as pair_guided_ig

    monkeypatch.setattr(pair_guided_ig, "np", _NumPy2Quantile())
    model, variables, x, call_model = setup
    ours = xj.guided_ig(model, variables, x, TARGETS, baseline=0.0, steps=24, fraction=0.25, max_dist=0.1)
    for b, target in enumerate(TARGETS):
        reference = saliency_core.GuidedIG().GetMask(
            x[b], call_model(int(target)), x_baseline=np.zeros_like(x[b]), x_steps=24, fraction=0.25, max_dist=0.1
        )
        assert_matches(ours[b], reference)


def test_guided_ig_with_no_deviation_is_integrated_gradients(setup):
    """max_dist = 0 keeps the straight line: a right Riemann sum of IG."""
    model, variables, x, _ = setup
    ours = xj.guided_ig(model, variables, x, TARGETS, baseline=0.2, steps=16, max_dist=0.0)
    ig = xj.integrated_gradients(model, variables, x, TARGETS, baseline=0.2, steps=16, method="riemann_left")
    assert_matches(ours, ig, rel=1e-4)


@pytest.mark.parametrize("sqrt", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_blur_ig_equals_pair(setup, sqrt):
    model, variables, x, call_model = setup
    ours = xj.blur_ig(model, variables, x, TARGETS, max_sigma=6.0, steps=20, sqrt=sqrt)
    for b, target in enumerate(TARGETS):
        # batch_size=1: PAIR's batched loop weights every step of a batch by the last step's width, which
        # is wrong for the uneven sqrt spacing (equal widths hide it)
        reference = saliency_core.BlurIG().GetMask(
            x[b].astype(np.float64), call_model(int(target)), max_sigma=6.0, steps=20, sqrt=sqrt, batch_size=1
        )
        assert_matches(ours[b], reference)


def test_xrai_equals_pair(setup):
    pytest.importorskip("skimage")
    from saliency.core import xrai as pair_xrai

    model, variables, x, call_model = setup
    segments = [xj.paths.felzenszwalb_regions(image) for image in x]
    for image, ours_masks in zip(x, segments):  # the same segmentation as PAIR's
        theirs = pair_xrai._get_segments_felzenszwalb(image)
        assert len(theirs) == len(ours_masks) and all((a == b).all() for a, b in zip(theirs, ours_masks))
    ours = xj.xrai(model, variables, x, TARGETS, steps=12, min_pixel_diff=8)
    parameters = pair_xrai.XRAIParameters(steps=12)
    parameters.experimental_params["min_pixel_diff"] = 8
    for b, target in enumerate(TARGETS):
        reference = pair_xrai.XRAI().GetMask(x[b], call_model(int(target)), extra_parameters=parameters, batch_size=12)
        assert np.unique(reference).size > 2, "one region covers everything: the comparison would be weak"
        assert_matches(ours[b, ..., 0], reference)
        np.testing.assert_allclose(ours[b, ..., 0], ours[b, ..., 2])
