"""Robustness metrics against Quantus 0.6 and Captum's ``sensitivity_max`` on the TinyCNN twin: the
same attributions, the same perturbations (replayed into Quantus' NumPy draws, handed to Captum as its
perturbation function), and the input gradient as the explanation on both sides."""

from __future__ import annotations

import numpy as np
import pytest

import xai_jax as xj
from xai_jax import evaluation as xe

from . import references as ref

pytestmark = pytest.mark.torch
TOL = 1e-5
SAMPLES = 5


def _gradient(case):
    return np.asarray(xj.gradient(case.model, case.variables, case.x, case.y))


def _quantus(metric, case, **kwargs):
    return np.asarray(
        metric(
            model=case.torch_model,
            x_batch=ref.nchw(case.x),
            y_batch=case.y,
            a_batch=ref.nchw(_gradient(case)),
            explain_func=ref.torch_gradient,
            device="cpu",
            **kwargs,
        )
    )


@pytest.mark.parametrize("name", ["max_sensitivity", "avg_sensitivity"])
def test_sensitivity_equals_quantus_on_the_same_noise(tiny, name):
    q = ref.quantus()
    deltas = np.random.default_rng(0).uniform(-0.2, 0.2, (SAMPLES, *tiny.x.shape)).astype(np.float32)
    ours = getattr(xe, name)(
        tiny.model, tiny.variables, tiny.x, tiny.y, xj.gradient, samples=SAMPLES, perturbations=deltas
    )
    cls = q.MaxSensitivity if name == "max_sensitivity" else q.AvgSensitivity
    # Quantus: one np.random.uniform(-0.2, 0.2, (B, D)) per sample, D in NCHW order (= NHWC for C = 1).
    with ref.replaying("uniform", deltas.reshape(SAMPLES, 3, -1)):
        expected = _quantus(cls(nr_samples=SAMPLES, return_aggregate=False, disable_warnings=True), tiny)
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=TOL)


def test_max_sensitivity_equals_captum_sensitivity_max(tiny):
    import torch
    from captum.metrics import sensitivity_max

    deltas = np.random.default_rng(1).uniform(-0.02, 0.02, (SAMPLES, *tiny.x.shape)).astype(np.float32)
    options = xe.preset("captum", "max_sensitivity") | {"samples": SAMPLES}
    ours = xe.max_sensitivity(tiny.model, tiny.variables, tiny.x, tiny.y, xj.gradient, perturbations=deltas, **options)
    # Captum expands with repeat_interleave: row b·S + s is sample b, draw s.
    stacked = torch.tensor(deltas.transpose(1, 0, 4, 2, 3).reshape(3 * SAMPLES, 1, 28, 28))

    def explain(inputs, target):
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs
        return (torch.tensor(ref.torch_gradient(tiny.torch_model, inputs.numpy(), target.numpy())),)

    expected = sensitivity_max(
        explain,
        torch.tensor(ref.nchw(tiny.x)),
        perturb_func=lambda inputs, radius: inputs + stacked,
        n_perturb_samples=SAMPLES,
        target=torch.tensor(tiny.y),
    )
    np.testing.assert_allclose(np.asarray(ours), expected.numpy(), rtol=TOL)


def test_local_lipschitz_estimate_equals_quantus_on_the_same_noise(tiny):
    """Quantus normalises the maps by the batch's maximum; its per-sample ``normalise_axes`` option is
    the reference for our per-sample normalisation."""
    q = ref.quantus()
    deltas = np.random.default_rng(2).normal(0.0, 0.1, (SAMPLES, *tiny.x.shape)).astype(np.float32)
    ours = xe.local_lipschitz_estimate(
        tiny.model, tiny.variables, tiny.x, tiny.y, xj.gradient, samples=SAMPLES, perturbations=deltas
    )
    with ref.replaying("normal", deltas.reshape(SAMPLES, 3, -1)):
        expected = _quantus(
            q.LocalLipschitzEstimate(
                nr_samples=SAMPLES,
                return_aggregate=False,
                disable_warnings=True,
                normalise_func_kwargs={"normalise_axes": (1, 2, 3)},
            ),
            tiny,
        )
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=TOL)


def test_continuity_equals_quantus_on_translations_that_move_the_image(tiny):
    """10 steps on a 28-pixel width shift by −23, −18, …, 22: never 0, so Quantus' division of
    rounding noise by 1e-9 at t = 0 does not occur and the two agree."""
    q = ref.quantus()
    ours = xe.continuity(tiny.model, tiny.variables, tiny.x, tiny.y, xj.gradient, steps=10)
    expected = _quantus(
        q.Continuity(
            nr_steps=10,
            return_aggregate=False,
            disable_warnings=True,
            normalise_func_kwargs={"normalise_axes": (1, 2, 3)},
        ),
        tiny,
    )
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=TOL)


@pytest.mark.slow
def test_continuity_with_the_zero_shift_equals_the_corrected_reference(tiny):
    """28 steps include t = 0; the corrected reference is the maximum of Quantus' quotient over the 27
    shifts that move the image, computed here from torch gradients of the translated images."""
    ref.quantus()
    from quantus.functions.perturb_func import batched_translation

    ours = xe.continuity(tiny.model, tiny.variables, tiny.x, tiny.y, xj.gradient)
    x = ref.nchw(tiny.x)

    def prepared(g):
        g = g / np.abs(g).reshape(3, -1).max(axis=1)[:, None, None, None]
        return np.abs(g).reshape(3, -1)

    a0 = prepared(ref.torch_gradient(tiny.torch_model, x, tiny.y))
    best = np.zeros(3)
    for k in range(28):
        shift = -28 + 2 * (k + 1)
        if shift == 0:
            continue
        moved = batched_translation(x, "black", shift, direction="x")
        a = prepared(ref.torch_gradient(tiny.torch_model, moved, tiny.y))
        quotient = np.abs(a0 - a).sum(axis=1) / (np.linalg.norm((x - moved).reshape(3, -1), axis=1) + 1e-9)
        best = np.maximum(best, quotient)
    np.testing.assert_allclose(np.asarray(ours), best, rtol=TOL)


@pytest.mark.slow
def test_sensitivity_does_not_depend_on_batch_size_and_key_draws_are_reproducible(tiny):
    import jax

    key = jax.random.key(3)
    one = xe.max_sensitivity(tiny.model, tiny.variables, tiny.x, tiny.y, xj.gradient, key=key, samples=4, batch_size=1)
    all_at_once = xe.max_sensitivity(
        tiny.model, tiny.variables, tiny.x, tiny.y, xj.gradient, key=key, samples=4, batch_size=4
    )
    np.testing.assert_allclose(np.asarray(one), np.asarray(all_at_once), rtol=1e-6)
    other = xe.max_sensitivity(
        tiny.model, tiny.variables, tiny.x, tiny.y, xj.gradient, key=jax.random.key(4), samples=4
    )
    assert not np.allclose(np.asarray(other), np.asarray(one))


@pytest.mark.slow
def test_avg_sensitivity_with_its_own_draws_equals_quantus_in_distribution(tiny):
    """Without injection: our key-drawn U(−0.2, 0.2) noise and Quantus' NumPy noise, 200 draws each;
    the per-sample means agree within 3 standard errors (of the difference of two means)."""
    import jax

    from xai_jax.evaluation import robustness

    q = ref.quantus()
    draws = 200
    ours = np.asarray(
        robustness._noise_values(
            tiny.model,
            tiny.variables,
            tiny.x,
            tiny.y,
            xj.gradient,
            "avg_sensitivity",
            key=jax.random.key(11),
            samples=draws,
            noise="uniform",
            scale=0.2,
            quotient="sensitivity",
            norm="fro",
            relative=True,
            normalise_by=None,
            absolute=False,
            perturbations=None,
            attributions=None,
            batch_size=None,
            model_kwargs=None,
        )
    )  # (draws, B) quotients
    np.random.seed(0)
    expected = _quantus(q.AvgSensitivity(nr_samples=draws, return_aggregate=False, disable_warnings=True), tiny)
    standard_error = np.sqrt(2) * ours.std(axis=0, ddof=1) / np.sqrt(draws)
    assert np.all(np.abs(ours.mean(axis=0) - expected) < 3 * standard_error)
