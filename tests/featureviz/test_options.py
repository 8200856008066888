"""The options record of feature visualization (``Optimization``), and non-finite settings refused.

Regression (issue 13, item 2): a NaN or infinite ``learning_rate``, ``init_scale``, initial image,
regularizer weight, range or DeepDream step used to run and return all-NaN images; every float
option is now checked finite before anything runs.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.featureviz.conftest import numpy_init
from xai_jax.core.errors import InputError
from xai_jax.featureviz import (
    L2,
    Clip,
    Jitter,
    TotalVariation,
    activation_maximization,
    activation_maximization_codespace,
    deep_dream,
    invert_features,
)

NONFINITE = [math.nan, math.inf, -math.inf]
KEY = jax.random.key(0)


class Gen(nn.Module):
    """A small generator of 8x8 images in [0, 1] from 4-d codes."""

    @nn.compact
    def __call__(self, z):
        return nn.sigmoid(nn.Dense(64, name="fc")(z)).reshape((z.shape[0], 8, 8, 1))


@pytest.fixture(scope="module")
def gen():
    model = Gen()
    return model, numpy_init(model, jnp.zeros((1, 4)), seed=1)


def _steps(kw):
    """Two steps unless a record is given (a keyword would override the record's steps)."""
    return {} if "optimization" in kw else {"steps": 2}


def _am(tiny, **kw):
    model, variables = tiny
    return activation_maximization(model, variables, [0, 2], **{"shape": (8, 8, 1), "key": KEY, **_steps(kw), **kw})


def _code(tiny, gen, **kw):
    model, variables = tiny
    generator, gen_variables = gen
    return activation_maximization_codespace(
        model, variables, generator, gen_variables, [0, 2], **{"latent_shape": 4, "key": KEY, **_steps(kw), **kw}
    )


def _invert(tiny, **kw):
    model, variables = tiny
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 8, 8, 1)), jnp.float32)
    return invert_features(model, variables, x, **{"layer": "conv1", **_steps(kw), **kw})


# ----------------------------------------------------------------------------------------------------
# Non-finite settings are refused (they gave all-NaN images before)
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", NONFINITE)
@pytest.mark.parametrize("run", [_am, _invert])
def test_nonfinite_learning_rate(tiny, run, value):
    with pytest.raises(InputError, match="learning_rate must be a finite number"):
        run(tiny, learning_rate=value)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nonfinite_init_scale(tiny, gen, value):
    with pytest.raises(InputError, match="init_scale must be a finite number"):
        _am(tiny, init_scale=value)
    with pytest.raises(InputError, match="init_scale must be a finite number"):
        _code(tiny, gen, init_scale=value)
    with pytest.raises(InputError, match="init_scale must be a finite number"):
        _invert(tiny, init="noise", init_scale=value, key=KEY)


@pytest.mark.parametrize("value", NONFINITE)
def test_nonfinite_initial_images_and_codes(tiny, gen, value):
    image = np.zeros((8, 8, 1), np.float32)
    image[3, 4, 0] = value
    with pytest.raises(InputError, match=r"init contains 1 NaN or infinite"):
        _am(tiny, init=image)
    with pytest.raises(InputError, match=r"init contains 1 NaN or infinite"):
        _invert(tiny, init=np.stack([image, np.zeros_like(image)]))
    codes = np.zeros((2, 4), np.float32)
    codes[1, 2] = value
    with pytest.raises(InputError, match=r"init contains 1 NaN or infinite"):
        _code(tiny, gen, init=codes)


def test_init_that_overflows_float32_is_refused(tiny):
    with pytest.raises(InputError, match="init contains 64 NaN or infinite"):
        _am(tiny, init=np.full((8, 8, 1), 1e39))  # finite in float64, inf once cast to float32


@pytest.mark.parametrize("value", [math.nan, math.inf, 0.0, 1.5])
def test_threshold_outside_the_probabilities(tiny, value):
    with pytest.raises(InputError, match="threshold"):
        _am(tiny, threshold=value)


@pytest.mark.parametrize(
    "regularizer", [L2(math.nan), TotalVariation(math.inf), Clip(math.nan, 1.0), Clip(0.0, math.inf)]
)
def test_nonfinite_regularizer_fields(tiny, gen, regularizer):
    with pytest.raises(InputError, match=f"{type(regularizer).__name__}.*NaN or infinite"):
        _am(tiny, regularizers=[regularizer])
    with pytest.raises(InputError, match="NaN or infinite"):
        _invert(tiny, regularizers=[regularizer])
    with pytest.raises(InputError, match=r"code_regularizers.*NaN or infinite"):
        _code(tiny, gen, code_regularizers=[regularizer])


def test_nonfinite_generator_range(tiny, gen):
    with pytest.raises(InputError, match="generator_range low must be a finite number"):
        _code(tiny, gen, generator_range=(math.nan, 1.0), classifier_range=(0.0, 1.0))
    with pytest.raises(InputError, match="classifier_range high must be a finite number"):
        _code(tiny, gen, generator_range=(0.0, 1.0), classifier_range=(0.0, math.inf))


@pytest.mark.parametrize("value", NONFINITE)
def test_deep_dream_nonfinite_step_scale_and_range(tiny, value):
    model, variables = tiny
    x = jnp.full((1, 8, 8, 1), 0.5)
    with pytest.raises(InputError, match="step_size must be"):
        deep_dream(model, variables, x, layer="conv1", octaves=1, steps=1, jitter=0, step_size=value)
    with pytest.raises(InputError, match="octave_scale must be"):
        deep_dream(model, variables, x, layer="conv1", octaves=2, steps=1, jitter=0, octave_scale=value)
    with pytest.raises(InputError, match="value_range high must be a finite number"):
        deep_dream(model, variables, x, layer="conv1", octaves=1, steps=1, jitter=0, value_range=(0.0, value))


def test_checked_settings_still_run_and_stay_finite(tiny, gen):
    """The checks refuse only what is wrong: ordinary settings run and give finite images."""
    for result in (_am(tiny, init_scale=0.0, threshold=1.0), _code(tiny, gen), _invert(tiny)):
        assert bool(jnp.all(jnp.isfinite(result.images)))


# ----------------------------------------------------------------------------------------------------
# The record
# ----------------------------------------------------------------------------------------------------


def test_record_is_checked_when_made():
    from xai_jax.featureviz import Optimization

    with pytest.raises(InputError, match="learning_rate must be a finite number"):
        Optimization(learning_rate=math.nan)
    with pytest.raises(InputError, match="at least 1"):
        Optimization(steps=0)
    with pytest.raises(InputError, match="positive int"):
        Optimization(num_images=1.5)
    with pytest.raises(InputError, match="'noise'"):  # the close name
        Optimization(init="nosie")
    with pytest.raises(InputError, match=r"optax.GradientTransformation"):
        Optimization(optimizer="adam")
    with pytest.raises(InputError, match="regularizers"):
        Optimization(regularizers=[lambda x: x])
    with pytest.raises(dataclasses.FrozenInstanceError):
        Optimization().steps = 3
    run = Optimization(regularizers=Clip(0, 1), learning_rate=1)  # normalised: a tuple, a float
    assert run.regularizers == (Clip(0, 1),) and isinstance(run.learning_rate, float)


def test_record_and_keywords_give_the_same_result(tiny):
    from xai_jax.featureviz import Optimization

    settings = dict(
        steps=4, learning_rate=0.1, regularizers=(TotalVariation(1e-2), Jitter(1), Clip(-1.0, 1.0)), init_scale=0.5
    )
    by_keywords = _am(tiny, **settings)
    by_record = _am(tiny, optimization=Optimization(**settings))
    np.testing.assert_array_equal(by_record.images, by_keywords.images)
    np.testing.assert_array_equal(by_record.score_history, by_keywords.score_history)
    assert float(jnp.abs(by_record.images - _am(tiny, **{**settings, "steps": 3}).images).max()) > 1e-3  # steps matter
    # keywords apply on top of the record
    overridden = _am(tiny, optimization=Optimization(**{**settings, "steps": 50}), steps=4)
    np.testing.assert_array_equal(overridden.images, by_keywords.images)
    np.testing.assert_array_equal(overridden.steps, [4, 4])


def test_optimizer_replaces_adam(tiny):
    from xai_jax.featureviz import Optimization

    sgd = optax.sgd(0.5)
    from xai_jax.featureviz.activation_maximization import DEFAULTS
    from xai_jax.featureviz.options import resolve

    run = Optimization(steps=3, optimizer=sgd, regularizers=Clip(-1.0, 1.0))
    assert resolve(run, {}, DEFAULTS, "activation_maximization").optimizer is sgd
    with_sgd = _am(tiny, optimization=run)
    with_adam = _am(tiny, steps=3, learning_rate=0.5, regularizers=Clip(-1.0, 1.0))
    assert float(jnp.abs(with_sgd.images - with_adam.images).max()) > 1e-3


def test_unknown_and_inapplicable_settings_are_refused(tiny, gen):
    from xai_jax.featureviz import Optimization

    with pytest.raises(InputError, match=r"Unknown activation_maximization option 'learning_rte'.*'learning_rate'"):
        _am(tiny, learning_rte=0.1)
    with pytest.raises(InputError, match=r"Unknown activation_maximization_codespace option 'treshold'.*'threshold'"):
        _code(tiny, gen, treshold=0.9)
    with pytest.raises(InputError, match="threshold does not apply to invert_features"):
        _invert(tiny, threshold=0.9)
    with pytest.raises(InputError, match="num_images does not apply to invert_features"):
        _invert(tiny, optimization=Optimization(num_images=2))
    with pytest.raises(InputError, match=r"optimization must be an xai_jax.featureviz.Optimization"):
        _am(tiny, optimization={"steps": 3})


def test_fields_left_unset_take_each_entry_points_default(tiny, gen):
    """One record serves every entry point: unset fields take the entry point's own default
    (pixel noise at scale 0.1, codes from the generator's prior N(0, I), inversion from zeros)."""
    from xai_jax.featureviz import Optimization
    from xai_jax.featureviz.activation_maximization import pixel_problem
    from xai_jax.featureviz.codespace import codespace_problem

    model, variables = tiny
    generator, gen_variables = gen
    run = Optimization(steps=2)
    _, _, pixels = pixel_problem(model, variables, list(range(5)), shape=(8, 8, 1), optimization=run, key=KEY)
    _, _, codes = codespace_problem(
        model,
        variables,
        generator,
        gen_variables,
        lambda logits: logits[:, 0],
        latent_shape=4,
        optimization=run,
        num_images=500,
        key=KEY,
    )
    assert 0.09 < float(jnp.std(pixels)) < 0.11 and 0.95 < float(jnp.std(codes)) < 1.05
    same = _code(tiny, gen, optimization=run)
    explicit = _code(tiny, gen, steps=2, init_scale=1.0, learning_rate=0.05)
    np.testing.assert_array_equal(same.codes, explicit.codes)
    inverted = _invert(tiny, optimization=run)
    np.testing.assert_array_equal(inverted.steps, [2, 2])  # ran with the inversion defaults (zeros, no key needed)
