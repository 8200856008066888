"""Faithfulness metrics against Quantus 0.6 and Captum on the TinyCNN twin (same weights, same
attributions, same random draws).  Where Quantus does not compute what its paper defines, the
reference is Quantus with that step corrected (named in each test)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax import evaluation as xe

from . import references as ref

pytestmark = pytest.mark.torch
TOL = 1e-5


def _quantus_call(metric, case, a=None, **kwargs):
    a = case.a if a is None else a
    return np.asarray(
        metric(
            model=case.torch_model,
            x_batch=ref.nchw(case.x),
            y_batch=case.y,
            a_batch=ref.nchw(a),
            device="cpu",
            **kwargs,
        ),
        np.float64,
    )


def test_pixel_flipping_equals_quantus(tiny):
    q = ref.quantus()
    curve = xe.pixel_flipping(tiny.model, tiny.variables, tiny.x, tiny.y, tiny.a, features_per_step=8)
    expected = _quantus_call(q.PixelFlipping(features_in_step=8, disable_warnings=True), tiny)
    assert curve.scores.shape == (3, 99)
    np.testing.assert_allclose(np.asarray(curve.scores[:, 1:]), expected, atol=TOL)  # Quantus omits k = 0
    np.testing.assert_allclose(np.asarray(curve.fractions)[[0, 1, -1]], [0.0, 8 / 784, 1.0])


@pytest.mark.parametrize("patch_size", [8, pytest.param(5, marks=pytest.mark.slow)])  # 28 = 3·8 + 4, 5·5 + 3: padded,
# unevenly for 5
def test_region_perturbation_equals_quantus(tiny, patch_size):
    q = ref.quantus()
    curve = xe.region_perturbation(
        tiny.model, tiny.variables, tiny.x, tiny.y, tiny.a, patch_size=patch_size, regions=12
    )
    expected = _quantus_call(
        q.RegionPerturbation(patch_size=patch_size, regions_evaluation=12, disable_warnings=True), tiny
    )
    drops = np.asarray(curve.scores[:, :1] - curve.scores[:, 1:])
    np.testing.assert_allclose(drops, expected, atol=TOL)


def test_faithfulness_correlation_equals_quantus_on_the_same_subsets(tiny):
    q = ref.quantus()
    runs, size = 20, 224
    rng = np.random.default_rng(0)
    subsets = np.stack(
        [np.stack([rng.permutation(784)[:size] for _ in range(runs)]) for _ in range(3)]
    )  # (B, runs, size)
    ours = xe.faithfulness_correlation(tiny.model, tiny.variables, tiny.x, tiny.y, tiny.a, runs=runs, subsets=subsets)
    # Quantus draws run by run, sample by sample: np.random.choice(784, 224, replace=False).
    with ref.replaying("choice", subsets.transpose(1, 0, 2).reshape(-1, size)) as calls:
        expected = _quantus_call(
            q.FaithfulnessCorrelation(nr_runs=runs, return_aggregate=False, disable_warnings=True), tiny
        )
    assert calls[0] == runs * 3
    np.testing.assert_allclose(np.asarray(ours), expected, atol=TOL)


def test_noisy_linear_imputation_equals_quantus_sparse_solve():
    ref.quantus()
    from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation

    rng = np.random.default_rng(1)
    image = rng.random((28, 28, 1)).astype(np.float32)
    for fraction in (0.02, 0.5, 0.97):
        removed = np.zeros(784, bool)
        removed[rng.permutation(784)[: int(784 * fraction)]] = True
        draws = rng.standard_normal((28, 28, 1)).astype(np.float32)
        ours = np.asarray(xe.noisy_linear_imputation(image, removed.reshape(28, 28), draws, noise=0.1))
        # Quantus adds noise * randn(C, n) to the n imputed values, in the order of the given indices.
        indices = np.flatnonzero(removed)
        with ref.replaying("randn", [draws.reshape(1, -1)[:, indices]]):
            expected = quantus_imputation(image.transpose(2, 0, 1), indices, noise=0.1).transpose(1, 2, 0)
        np.testing.assert_allclose(ours, expected, atol=2e-5)


def test_road_equals_quantus_on_the_same_noise(tiny):
    q = ref.quantus()
    percentages = tuple(range(1, 100, 7))
    draws = np.random.default_rng(2).standard_normal((len(percentages), *tiny.x.shape)).astype(np.float32)
    curve = xe.road(
        tiny.model, tiny.variables, tiny.x, tiny.y, tiny.a, percentages=percentages, noise=0.2, noise_draws=draws
    )
    # Quantus imputes sample by sample within each percentage, adding noise * randn(C, n) over the
    # removed pixels listed most relevant first.
    order = np.argsort(-tiny.a.reshape(3, -1), axis=1, kind="stable")
    replay = [
        draws[p, b].reshape(1, -1)[:, order[b, : int(784 * pct / 100)]]
        for p, pct in enumerate(percentages)
        for b in range(3)
    ]
    with ref.replaying("randn", replay):
        expected = q.ROAD(percentages=list(percentages), noise=0.2, disable_warnings=True)(
            model=tiny.torch_model, x_batch=ref.nchw(tiny.x), y_batch=tiny.y, a_batch=ref.nchw(tiny.a), device="cpu"
        )
    assert list(expected) == list(percentages)
    np.testing.assert_allclose(np.asarray(curve.scores).mean(axis=0), list(expected.values()), atol=TOL)
    np.testing.assert_allclose(np.asarray(curve.fractions), np.asarray(percentages) / 100)


def test_irof_equals_quantus_per_image_with_a_fixed_baseline(tiny):
    """Corrected reference: Quantus' "mean" baseline is re-averaged over the whole batch of
    already-perturbed images at every step and shorter samples are zero-padded to the batch's segment
    count; a numeric baseline and one image per call remove both effects."""
    q = ref.quantus()
    ours = xe.irof(tiny.model, tiny.variables, tiny.x, tiny.y, tiny.a, baseline=0.3)
    expected = []
    for i in range(3):
        metric = q.IROF(perturb_baseline=0.3, return_aggregate=False, disable_warnings=True)
        expected.append(
            metric(
                model=tiny.torch_model,
                x_batch=ref.nchw(tiny.x[i : i + 1]),
                y_batch=tiny.y[i : i + 1],
                a_batch=ref.nchw(tiny.a[i : i + 1]),
                device="cpu",
            )[0]
        )
    np.testing.assert_allclose(np.asarray(ours.score), expected, rtol=TOL)
    segments = xe.superpixels(tiny.x)
    np.testing.assert_allclose(np.asarray(ours.curve.scores[:, 0]), 1.0, rtol=1e-6)
    assert ours.curve.scores.shape == (3, int(segments.max()) + 2)


def test_sufficiency_equals_quantus(tiny):
    q = ref.quantus()
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((2, 28, 28, 1))
    a = np.concatenate(
        [centres[0] + 0.1 * rng.standard_normal((2, 28, 28, 1)), centres[1] + 0.1 * rng.standard_normal((1, 28, 28, 1))]
    ).astype(np.float32)
    ours = xe.sufficiency(tiny.model, tiny.variables, tiny.x, tiny.y, a)
    expected = _quantus_call(q.Sufficiency(return_aggregate=False, disable_warnings=True), tiny, a=a)
    np.testing.assert_allclose(np.asarray(ours), expected, atol=TOL)
    assert np.asarray(ours)[2] == 0.0  # no other sample close to the third: 0, not NaN


def test_completeness_gap_equals_a_torch_computation(tiny):
    """Quantus returns ``Σa == Δf`` (a float equality); the reference is the gap itself on the twin."""
    import torch

    gap = xe.completeness(tiny.model, tiny.variables, tiny.x, tiny.y, tiny.a, baseline="black")
    x = ref.nchw(tiny.x)
    black = np.broadcast_to(x.reshape(3, -1).min(axis=1)[:, None, None, None], x.shape)
    with torch.no_grad():
        logits = tiny.torch_model(torch.tensor(x)).numpy()[np.arange(3), tiny.y]
        base = tiny.torch_model(torch.tensor(np.ascontiguousarray(black))).numpy()[np.arange(3), tiny.y]
    expected = tiny.a.reshape(3, -1).sum(axis=1) - (logits - base)
    np.testing.assert_allclose(np.asarray(gap), expected, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_equals_captum_on_the_same_perturbations(tiny, normalize):
    import torch
    from captum.metrics import infidelity as captum_infidelity

    samples = 5
    perturbations = np.asarray(xe.square_perturbations(jax.random.key(0), jnp.asarray(tiny.x), samples, 4))
    ours = xe.infidelity(
        tiny.model,
        tiny.variables,
        tiny.x,
        tiny.y,
        tiny.a,
        samples=samples,
        perturbations=perturbations,
        normalize=normalize,
    )
    # Captum expands the batch with repeat_interleave: row b·S + s holds sample b, draw s.
    stacked = torch.tensor(perturbations.transpose(1, 0, 4, 2, 3).reshape(3 * samples, 1, 28, 28))

    def perturb(inputs):
        return stacked, inputs - stacked

    expected = captum_infidelity(
        tiny.torch_model,
        perturb,
        torch.tensor(ref.nchw(tiny.x)),
        torch.tensor(ref.nchw(tiny.a)),
        target=torch.tensor(tiny.y),
        n_perturb_samples=samples,
        normalize=normalize,
    )
    np.testing.assert_allclose(np.asarray(ours), expected.numpy(), rtol=1e-4, atol=1e-6)


def test_gaussian_infidelity_is_zero_for_the_gradient_of_a_linear_model():
    """Known answer (Yeh et al. 2019): for f(x) = w·x, Iᵀw = f(x) − f(x − I) for every I."""
    w = np.random.default_rng(4).standard_normal((12, 3)).astype(np.float32)

    def linear(variables, x):
        return x.reshape(x.shape[0], -1) @ variables["w"]

    x = np.random.default_rng(5).random((4, 12)).astype(np.float32)
    a = np.asarray(xj.gradient(linear, {"w": w}, x, 1))
    ours = xe.infidelity(linear, {"w": w}, x, 1, a, key=jax.random.key(0), std=0.5, samples=8)
    np.testing.assert_allclose(np.asarray(ours), 0.0, atol=1e-9)
