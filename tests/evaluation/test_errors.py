"""Bad input is refused with a message that says what is wrong and what to pass instead."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax import evaluation as xe
from xai_jax.core.errors import InputError, LayerNotFoundError, TargetError, UnknownNameError


def linear(variables, x):
    z = x.reshape(x.shape[0], -1) @ variables["w"]
    return jnp.stack([z, -z, 0 * z], axis=1)


V = {"w": np.linspace(-1, 1, 16, dtype=np.float32)}
X = np.random.default_rng(0).random((2, 4, 4, 1)).astype(np.float32)
A = np.random.default_rng(1).standard_normal(X.shape).astype(np.float32)


def test_attributions_of_the_wrong_shape():
    with pytest.raises(InputError, match=r"attributions has shape \(2, 4, 4\, 2\); expected x's shape \(2, 4, 4, 1\)"):
        xe.pixel_flipping(linear, V, X, 0, np.zeros((2, 4, 4, 2), np.float32))
    with pytest.raises(InputError, match="upsampled first: xj.upsample"):
        xe.road(linear, V, X, 0, np.zeros((2, 2, 2), np.float32), noise=0.0)
    with pytest.raises(InputError, match="NaN"):
        xe.pixel_flipping(linear, V, X, 0, np.full(X.shape, np.nan, np.float32))


def test_a_metric_over_attributions_given_a_method_and_one_over_a_method_given_an_array():
    with pytest.raises(InputError, match="got a callable .*compute it first"):
        xe.pixel_flipping(linear, V, X, 0, xj.gradient)
    with pytest.raises(InputError, match="needs the method itself .*got an array of shape \\(2, 4, 4, 1\\)"):
        xe.max_sensitivity(linear, V, X, 0, A, key=jax.random.key(0))
    with pytest.raises(InputError, match="needs the method itself"):
        xe.mprt(linear, V, X, 0, A, key=jax.random.key(0))
    with pytest.raises(UnknownNameError, match="Did you mean: 'gradient'"):
        xe.max_sensitivity(linear, V, X, 0, "gradiant", key=jax.random.key(0))


def test_a_method_returning_a_layer_resolution_map_is_refused():
    small = lambda model, variables, x, target, **kw: jnp.ones((x.shape[0], 2, 2))
    with pytest.raises(InputError, match="input-resolution maps"):
        xe.max_sensitivity(linear, V, X, 0, small, key=jax.random.key(0), samples=2)


def test_masks_empty_or_of_the_wrong_shape():
    masks = np.ones((2, 4, 4), bool)
    masks[1] = False
    with pytest.raises(InputError, match=r"masks of sample\(s\) \[1\] are empty"):
        xe.pointing_game(A, masks)
    with pytest.raises(InputError, match="masks have shape \\(2, 3, 4\\)"):
        xe.relevance_mass_accuracy(A, np.ones((2, 3, 4), bool))
    with pytest.raises(InputError, match="masks are missing"):
        xe.top_k_intersection(A, None, k=2)
    with pytest.raises(InputError, match="k = 99 is larger than the number of features 16"):
        xe.top_k_intersection(A, np.ones((2, 4, 4), bool), k=99)


def test_stochastic_metrics_need_a_key_or_their_draws():
    with pytest.raises(InputError, match="pass key=jax.random.key"):
        xe.faithfulness_correlation(linear, V, X, 0, A, subset_size=4)
    with pytest.raises(InputError, match="pass key=jax.random.key"):
        xe.max_sensitivity(linear, V, X, 0, xj.gradient)
    with pytest.raises(InputError, match=r"perturbations must have shape \(3, 2, 4, 4, 1\)"):
        xe.max_sensitivity(linear, V, X, 0, xj.gradient, samples=3, perturbations=np.zeros((2, 2, 4, 4, 1)))


def test_options_out_of_range():
    with pytest.raises(InputError, match="order must be one of 'morf', 'lerf'"):
        xe.pixel_flipping(linear, V, X, 0, A, order="random")
    with pytest.raises(InputError, match="subset_size 99 is larger than the number of features 16"):
        xe.faithfulness_correlation(linear, V, X, 0, A, key=jax.random.key(0), subset_size=99)
    with pytest.raises(InputError, match="baseline must be one of"):
        xe.pixel_flipping(linear, V, X, 0, A, baseline="grey")
    with pytest.raises(TargetError, match="only score='logit'"):
        xe.pixel_flipping(linear, V, X, lambda out: out[:, 0], A, score="probability")
    with pytest.raises(LayerNotFoundError):
        xe.mprt(linear, V, X, 0, xj.gradient, key=jax.random.key(0), layers=["conv9"])
    with pytest.raises(InputError, match="other_classes must differ"):
        xe.random_logit(linear, V, X, np.array([0, 1]), xj.gradient, other_classes=np.array([1, 1]))
    with pytest.raises(UnknownNameError, match="preset"):
        xe.preset("captum", "pixel_flipping")


def test_sparseness_refuses_signed_maps_and_batches_without_a_batch_axis():
    with pytest.raises(InputError, match="non-negative"):
        xe.sparseness(A, absolute=False)
    with pytest.raises(InputError, match="For one map pass a\\[None\\]"):
        xe.complexity(np.ones(5, np.float32))


def test_a_method_value_made_once_is_traced_once():
    """A method value is a static jit argument keyed by identity: reusing the same ``partial`` reuses
    the compilation (the method's Python body runs only while tracing)."""
    traces = []

    def counted(model, variables, x, target, **kwargs):
        traces.append(tuple(x.shape))
        return xj.integrated_gradients(model, variables, x, target, **kwargs)

    method = functools.partial(counted, steps=4)
    key = jax.random.key(0)
    first = xe.avg_sensitivity(linear, V, X, 0, method, key=key, samples=2)
    traced = len(traces)
    second = xe.avg_sensitivity(linear, V, X, 0, method, key=jax.random.key(1), samples=2)
    assert traced == 2 and len(traces) == traced  # the unperturbed batch and one chunk, then nothing
    assert not np.array_equal(np.asarray(first), np.asarray(second))
