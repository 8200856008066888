"""Randomisation metrics against Quantus 0.6 on the TinyCNN twin.  Re-initialisation is random on
both sides (torch's ``reset_parameters`` there); the injection point is the model: Quantus' layer
generator is replaced by one that yields the twin loaded with *our* randomised variables, stage by
stage, so both sides explain exactly the same randomised networks."""

from __future__ import annotations

import contextlib
import copy
import itertools

import jax
import numpy as np
import pytest
import scipy.stats

import xai_jax as xj
from xai_jax import evaluation as xe
from xai_jax.evaluation import randomisation

from . import references as ref

pytestmark = pytest.mark.torch
TOL = 1e-5


@contextlib.contextmanager
def our_randomisation(case, key, order):
    """Quantus' PyTorchModel yields the twin with our fresh weights for each of our stages."""
    ref.quantus()
    from quantus.helpers.model.pytorch_model import PyTorchModel

    fresh = xe.fresh_parameters(key, case.variables)
    names = xe.parameter_layers(case.model, case.variables, case.x)

    def generator(self, order=order, seed=42):
        for name, layers in randomisation._stages(names, order):
            net = copy.deepcopy(case.torch_model)
            net.load_state_dict(ref.torch_state(xe.randomise_layers(case.variables, fresh, layers)))
            yield name, net

    original = PyTorchModel.get_random_layer_generator
    PyTorchModel.get_random_layer_generator = generator
    try:
        yield
    finally:
        PyTorchModel.get_random_layer_generator = original


@pytest.mark.parametrize("order", ["top_down", "independent", "bottom_up"])
def test_mprt_equals_quantus_on_the_same_randomised_networks(tiny, order):
    q = ref.quantus()
    key = jax.random.key(5)
    ours = xe.mprt(tiny.model, tiny.variables, tiny.x, tiny.y, xj.gradient, key=key, order=order)
    a = np.asarray(xj.gradient(tiny.model, tiny.variables, tiny.x, tiny.y))
    with our_randomisation(tiny, key, order):
        expected = q.MPRT(layer_order=order, return_aggregate=False, disable_warnings=True)(
            model=tiny.torch_model,
            x_batch=ref.nchw(tiny.x),
            y_batch=tiny.y,
            a_batch=ref.nchw(a),
            explain_func=ref.torch_gradient,
            device="cpu",
        )
    assert list(expected) == ["original", *ours.layers]
    np.testing.assert_allclose(np.asarray(ours.scores), [expected[n] for n in ours.layers], atol=TOL)
    np.testing.assert_allclose(np.asarray(ours.original), expected["original"], atol=TOL)


def test_smooth_mprt_equals_quantus_on_the_same_noise_and_networks(tiny):
    """Quantus explains its noisy copies with ``quantus.explain`` (Captum's Saliency, abs=False, i.e. the
    gradient) whatever ``explain_func`` is, draws ``randn`` anew per stage; we replay the same draws."""
    q = ref.quantus()
    key, samples = jax.random.key(6), 4
    draws = np.random.default_rng(7).standard_normal((samples - 1, *tiny.x.shape)).astype(np.float32)
    ours = xe.smooth_mprt(
        tiny.model, tiny.variables, tiny.x, tiny.y, xj.gradient, key=key, samples=samples, noise_draws=draws
    )
    with (
        our_randomisation(tiny, key, "bottom_up"),
        ref.replaying("randn", itertools.cycle([ref.nchw(d) for d in draws])),
    ):
        expected = q.SmoothMPRT(nr_samples=samples, return_aggregate=False, disable_warnings=True)(
            model=tiny.torch_model,
            x_batch=ref.nchw(tiny.x),
            y_batch=tiny.y,
            a_batch=None,
            explain_func=ref.torch_gradient,
            explain_func_kwargs={"method": "Gradient"},
            device="cpu",
        )
    np.testing.assert_allclose(np.asarray(ours.scores), [expected[n] for n in ours.layers], atol=TOL)


def test_efficient_mprt_equals_quantus_on_the_same_randomised_network(tiny):
    q = ref.quantus()
    key = jax.random.key(8)
    ours = xe.efficient_mprt(tiny.model, tiny.variables, tiny.x, tiny.y, xj.gradient, key=key)
    a = np.asarray(xj.gradient(tiny.model, tiny.variables, tiny.x, tiny.y))
    with our_randomisation(tiny, key, "bottom_up"):
        expected = q.EfficientMPRT(return_aggregate=False, disable_warnings=True)(
            model=tiny.torch_model,
            x_batch=ref.nchw(tiny.x),
            y_batch=tiny.y,
            a_batch=ref.nchw(a),
            explain_func=ref.torch_gradient,
            device="cpu",
        )
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=1e-4)


def test_random_logit_equals_quantus_with_the_papers_2d_ssim(tiny):
    """Corrected reference: Quantus' default similarity flattens the maps to 1-D vectors before SSIM;
    the paper's SSIM compares the images, so Quantus runs with a 2-D SSIM (scikit-image) here."""
    q = ref.quantus()
    from skimage.metrics import structural_similarity

    def ssim_2d(a, b, batched=True, **_):
        out = []
        for u, v in zip(a.reshape(-1, 28, 28), b.reshape(-1, 28, 28)):
            span = float(max(u.max(), v.max()) - min(u.min(), v.min()))
            out.append(structural_similarity(u, v, data_range=span))
        return np.asarray(out)

    picks = np.array([3, 0, 8])  # Quantus: randint(0, 9) into the 9 other classes
    others = np.array([[c for c in range(10) if c != t][i] for t, i in zip(tiny.y, picks)])
    ours = xe.random_logit(tiny.model, tiny.variables, tiny.x, tiny.y, xj.gradient, other_classes=others)
    a = np.asarray(xj.gradient(tiny.model, tiny.variables, tiny.x, tiny.y))
    with ref.replaying("randint", [picks]):
        expected = q.RandomLogit(
            num_classes=10,
            similarity_func=ssim_2d,
            return_aggregate=False,
            disable_warnings=True,
            normalise_func_kwargs={"normalise_axes": (1, 2, 3)},
        )(
            model=tiny.torch_model,
            x_batch=ref.nchw(tiny.x),
            y_batch=tiny.y,
            a_batch=ref.nchw(a),
            explain_func=ref.torch_gradient,
            device="cpu",
        )
    np.testing.assert_allclose(np.asarray(ours), expected, atol=TOL)


def test_ssim_spearman_and_histogram_entropy_equal_their_references():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(9)
    a = rng.standard_normal((2, 20, 17)).astype(np.float32)
    b = (a + rng.standard_normal((2, 20, 17))).astype(np.float32)
    for u, v, s in zip(a, b, np.asarray(jax.vmap(xe.ssim)(a, b))):
        span = float(max(u.max(), v.max()) - min(u.min(), v.min()))
        assert abs(s - structural_similarity(u, v, data_range=span)) < TOL
    tied_a, tied_b = np.round(a.reshape(2, -1), 1), np.round(b.reshape(2, -1), 1)  # many ties: average ranks
    np.testing.assert_allclose(
        np.asarray(xe.spearman(tied_a, tied_b)),
        [scipy.stats.spearmanr(u, v)[0] for u, v in zip(tied_a, tied_b)],
        atol=TOL,
    )
    counts = [np.histogram(u, bins=100)[0] for u in a.reshape(2, -1)]
    np.testing.assert_allclose(np.asarray(xe.histogram_entropy(a)), [scipy.stats.entropy(c) for c in counts], atol=TOL)


def test_parameter_layers_follow_the_forward_pass_not_the_tree_order():
    from tests import twins

    model, variables, _ = twins.make_res_bn_net(0)
    x = twins.random_input(model, 2)
    assert list(variables["params"]) == ["block", "bn1", "conv1", "fc"]  # the tree is sorted by name
    assert xe.parameter_layers(model, variables, x) == [
        "conv1",
        "bn1",
        "block/conv1",
        "block/bn1",
        "block/conv2",
        "block/bn2",
        "fc",
    ]


def test_torch_initialisation_draws_within_the_fan_in_bounds_and_resets_batchnorm():
    from tests import twins

    _model, variables, _ = twins.make_res_bn_net(0)
    fresh = xe.fresh_parameters(jax.random.key(0), variables, "torch")
    kernel = np.asarray(fresh["block"]["conv1"]["kernel"])
    bound = 1 / np.sqrt(3 * 3 * 8)
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound
    assert abs(kernel.std() - bound / np.sqrt(3)) < 0.1 * bound  # U(−b, b) has std b/√3
    randomised = xe.randomise_layers(variables, fresh, ["bn1"])
    np.testing.assert_array_equal(np.asarray(randomised["params"]["bn1"]["scale"]), 1.0)
    np.testing.assert_array_equal(np.asarray(randomised["batch_stats"]["bn1"]["var"]), 1.0)
    np.testing.assert_array_equal(
        np.asarray(randomised["params"]["conv1"]["kernel"]), np.asarray(variables["params"]["conv1"]["kernel"])
    )
