"""GradientSHAP and DeepLiftSHAP against Captum on PyTorch twins (same references, and for
GradientSHAP the same reference indices, path points and noise, injected into Captum's sampler),
and their additivity."""

import functools

import numpy as np
import pytest

import xai_jax as xj
from tests import twins
from tests.perturbation.helpers import assert_matches

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.torch

TARGETS = np.array([2, 0, 9])


@pytest.fixture(scope="module")
def twin():
    model, variables, tmodel = twins.make("TinyCNN", seed=1)
    x = twins.random_input(model, batch=3, seed=2)
    references = np.random.default_rng(3).normal(size=(4, *x.shape[1:])).astype(np.float32)
    return model, variables, tmodel, x, references


@pytest.mark.parametrize("stdev", [pytest.param(0.0, marks=pytest.mark.slow), 0.3])
def test_gradient_shap_equals_captum_on_the_same_draws(twin, monkeypatch, stdev):
    import jax

    model, variables, tmodel, x, references = twin
    n, batch = 5, len(x)
    rng = np.random.default_rng(4)
    indices = rng.integers(0, len(references), (n, batch))
    alphas = rng.uniform(size=(n, batch)).astype(np.float32)
    noise = (stdev * rng.normal(size=(n, *x.shape))).astype(np.float32) if stdev else None
    draws = xj.paths.GradientShapDraws(indices, alphas, noise)
    ours = xj.gradient_shap(
        model, variables, x, TARGETS, key=jax.random.key(0), baselines=references, draws=draws, stdev=stdev
    )

    # Captum expands the batch as row b * n + s and draws with np.random.choice / np.random.uniform / torch.normal
    rows = lambda a: np.swapaxes(np.asarray(a), 0, 1).reshape(n * batch, *np.shape(a)[2:])
    monkeypatch.setattr(np.random, "choice", lambda count, size: rows(indices))
    monkeypatch.setattr(np.random, "uniform", lambda low, high, size: rows(alphas).astype(np.float64))
    if noise is not None:
        monkeypatch.setattr(torch, "normal", lambda mean, std: twins.to_torch(rows(noise)))
    reference = captum_attr.GradientShap(tmodel).attribute(
        twins.to_torch(x),
        baselines=twins.to_torch(references),
        n_samples=n,
        stdevs=stdev,
        target=torch.as_tensor(TARGETS),
    )
    assert_matches(ours, twins.to_numpy_nhwc(reference))


def test_deeplift_shap_equals_captum_and_is_additive(twin):
    model, variables, tmodel, x, references = twin
    ours = xj.deeplift_shap(model, variables, x, TARGETS, baselines=references)
    reference = captum_attr.DeepLiftShap(tmodel).attribute(
        twins.to_torch(x), baselines=twins.to_torch(references), target=torch.as_tensor(TARGETS)
    )
    assert_matches(ours, twins.to_numpy_nhwc(reference))
    logits = np.asarray(model.apply(variables, x))[np.arange(3), TARGETS]
    expected = np.asarray(model.apply(variables, references))[:, TARGETS].mean(axis=0)
    np.testing.assert_allclose(np.asarray(ours).reshape(3, -1).sum(1), logits - expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_deeplift_shap_averages_any_baseline_method(twin):
    """method= takes any method value with a baseline: IG averaged over the references."""
    model, variables, _, x, references = twin
    ig = functools.partial(xj.integrated_gradients, steps=64, method="riemann_middle")
    ours = xj.deeplift_shap(model, variables, x, TARGETS, baselines=references[:2], method=ig)
    by_hand = (
        sum(
            xj.integrated_gradients(model, variables, x, TARGETS, baseline=r, steps=64, method="riemann_middle")
            for r in references[:2]
        )
        / 2
    )
    np.testing.assert_allclose(ours, by_hand, rtol=1e-5, atol=1e-6)


def test_deeplift_shap_refuses_methods_without_a_free_baseline(twin):
    model, variables, _, x, references = twin
    with pytest.raises(xj.InputError, match="baseline"):
        xj.deeplift_shap(
            model, variables, x, TARGETS, baselines=references, method=functools.partial(xj.deeplift, baseline=0.0)
        )
    with pytest.raises(xj.InputError, match="no baseline"):
        xj.deeplift_shap(model, variables, x, TARGETS, baselines=references, method="gradient")
