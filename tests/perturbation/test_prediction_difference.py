"""Prediction difference analysis: the conditional Gaussian against a NumPy transcription of the
paper's formulas, zero relevance where the model does not look, and what conditional sampling buys."""

import jax
import numpy as np

import xai_jax as xj
from xai_jax.perturbation.prediction_difference import fit_conditional, patch_masks


def test_conditional_gaussian_matches_the_formulas():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(6, 5, 5, 2)).astype(np.float32).cumsum(axis=1)  # correlated neighbours
    window, context = 2, 1
    fitted = jax.jit(fit_conditional, static_argnums=(1, 2, 3))(data, window, context, True)
    size = window + 2 * context
    padded = np.pad(data, ((0, 0), (context, context), (context, context), (0, 0)), mode="edge")
    patches = np.stack(
        [padded[n, i : i + size, j : j + size].reshape(-1) for n in range(6) for i in range(4) for j in range(4)]
    )
    mean = patches.mean(0)
    cov = np.cov(patches, rowvar=False)
    cov += 1e-4 * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    inner, frame = patch_masks(window, context, 2)
    gain = cov[np.ix_(inner, frame)] @ np.linalg.inv(cov[np.ix_(frame, frame)])
    conditional = cov[np.ix_(inner, inner)] - gain @ cov[np.ix_(frame, inner)]
    np.testing.assert_allclose(fitted.mean, mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fitted.gain, gain, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(np.asarray(fitted.chol) @ np.asarray(fitted.chol).T, conditional, rtol=2e-3, atol=2e-4)


def region_model(params, x):
    """Two-class logits that depend on the top-left 3 x 3 pixels only."""
    z = (x[:, :3, :3, 0] * params["w"]).sum((1, 2))
    return jax.numpy.stack([-z, z], axis=1)


def test_windows_the_model_ignores_carry_no_evidence():
    rng = np.random.default_rng(1)
    params = {"w": rng.normal(size=(3, 3)).astype(np.float32)}
    x = rng.uniform(size=(2, 8, 8, 1)).astype(np.float32)
    data = rng.uniform(size=(20, 8, 8, 1)).astype(np.float32)
    we = np.asarray(
        xj.prediction_difference(
            region_model, params, x, 1, key=jax.random.key(0), data=data, window=2, context=1, samples=4
        )
    )[..., 0]
    # windows (2 x 2, stride 1) overlapping the 3 x 3 corner reach rows/cols < 4
    assert np.abs(we[:, 4:, :]).max() == 0 and np.abs(we[:, :, 4:]).max() == 0
    assert np.abs(we[:, :3, :3]).min() > 0


def test_conditional_sampling_reconstructs_a_predictable_window():
    """On images that are constant (one random grey level each), the frame determines the window: the
    conditional resample is the window itself (no evidence lost), a marginal resample is not."""
    rng = np.random.default_rng(2)
    params = {"w": rng.normal(size=(3, 3)).astype(np.float32)}
    levels = rng.uniform(size=(64, 1, 1, 1)).astype(np.float32)
    data = np.broadcast_to(levels, (64, 8, 8, 1)).copy()
    x = data[:2]
    options = dict(key=jax.random.key(0), data=data, window=2, context=1, samples=8)
    conditional = np.abs(xj.prediction_difference(region_model, params, x, 1, **options)).max()
    marginal = np.abs(xj.prediction_difference(region_model, params, x, 1, sampling="marginal", **options)).max()
    assert conditional < 0.05 * marginal, (conditional, marginal)
