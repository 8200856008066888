"""FullGrad: the full-gradient decomposition is exact on piecewise-linear nets (also with BatchNorm),
and the map equals pytorch-grad-cam's FullGrad under its normalisation."""

import jax
import numpy as np
import pytest

import xai_jax as xj
from tests import twins
from tests.perturbation.helpers import assert_matches
from xai_jax.core import prepare
from xai_jax.paths.fullgrad import full_gradients as _full_gradients

full_gradients = jax.jit(_full_gradients, static_argnums=0)  # one compilation instead of op-by-op dispatch

TARGETS = np.array([1, 6, 3])


@pytest.mark.parametrize("name", [pytest.param("TinyCNN", marks=pytest.mark.slow), "ResBNNet"])
def test_full_gradient_decomposition_is_exact(name):
    """f_c(x) = Σ x ⊙ ∇_x f_c + Σ_l Σ_u b_l ∂f_c/∂z_l(u) for ReLU/max-pool nets with biases and BatchNorm."""
    model, variables, _ = twins.make(name, seed=2)
    x = twins.random_input(model, batch=3, seed=3)
    problem, inputs = prepare(model, variables, x, TARGETS)
    grad_x, grad_layers, biases = full_gradients(problem, inputs)
    assert len(grad_layers) >= 3  # convolutions, dense layers (and BatchNorm) all carry a bias
    total = (np.asarray(grad_x) * x).reshape(3, -1).sum(1)
    for layer, grad in grad_layers.items():
        total += (np.asarray(grad) * np.asarray(biases[layer])).reshape(3, -1).sum(1)
    logits = np.asarray(model.apply(variables, x))[np.arange(3), TARGETS]
    np.testing.assert_allclose(total, logits, rtol=1e-4, atol=1e-4)


@pytest.mark.torch
@pytest.mark.parametrize("name", [pytest.param("TinyCNN", marks=pytest.mark.slow), "ResBNNet"])
def test_fullgrad_equals_pytorch_grad_cam(name):
    pytest.importorskip("torch")
    grad_cam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, variables, tmodel = twins.make(name, seed=2)
    x = twins.random_input(model, batch=3, seed=3)
    with grad_cam.FullGrad(model=tmodel, target_layers=[]) as reference_cam:
        targets = [ClassifierOutputTarget(int(c)) for c in TARGETS]
        reference = reference_cam(input_tensor=twins.to_torch(x, requires_grad=True), targets=targets)
    ours = xj.fullgrad(model, variables, x, TARGETS, normalization="grad_cam")
    assert_matches(ours[..., 0], reference)


def test_fullgrad_paper_normalization_by_hand():
    """The authors' ψ: |·|, min-max over a layer's channels and positions jointly, align-corners resize, channel sum."""
    model, variables, _ = twins.make("TinyCNN", seed=2)
    x = twins.random_input(model, batch=2, seed=4)
    problem, inputs = prepare(model, variables, x, TARGETS[:2])
    grad_x, grad_layers, biases = full_gradients(problem, inputs)

    def psi(values):
        values = np.abs(np.asarray(values, np.float64))
        values = values - values.reshape(len(values), -1).min(1)[:, None, None, None]
        return values / (values.reshape(len(values), -1).max(1)[:, None, None, None] + 1e-6)

    expected = psi(grad_x * x).sum(-1)
    for layer, grad in grad_layers.items():
        if grad.ndim == 4:
            expected += np.asarray(xj.upsample(psi(grad * biases[layer]), x.shape, mode="bilinear_aligned")).sum(-1)
    np.testing.assert_allclose(xj.fullgrad(model, variables, x, TARGETS[:2])[..., 0], expected, rtol=1e-5, atol=1e-5)
