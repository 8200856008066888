"""Activation maximisation (pixel and code space) on the shipped MNIST models, and the loop itself.

Quality claims use the shipped CNN and generators; structural claims (scan == Python loop, targets
independent, chunking invariance) a tiny random CNN so that they compile in a second.
"""

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import xai_jax as xj
from tests.featureviz.conftest import numpy_init
from xai_jax.featureviz import (
    L2,
    ClassMeanDistance,
    Clip,
    Jitter,
    TotalVariation,
    activation_maximization,
    activation_maximization_codespace,
    class_means,
    engine,
    total_variation,
)
from xai_jax.featureviz.activation_maximization import pixel_problem

CLASSES = list(range(10))


def _shipped(*names):
    missing = [n for n in names if n not in xj.models.available()]
    if missing:
        pytest.skip(f"checkpoints not shipped: {missing}")
    return [xj.models.load(n) for n in names]


# ----------------------------------------------------------------------------------------------------
# Pixel space on the shipped CNN
# ----------------------------------------------------------------------------------------------------

PIXEL = dict(steps=60, regularizers=[Clip(0.0, 1.0)], threshold=0.99)


@pytest.fixture(scope="module")
def pixel_run(cnn):
    model, variables = cnn
    return activation_maximization(model, variables, CLASSES, key=jax.random.key(0), **PIXEL)


def test_pixel_am_reaches_099_for_every_class(cnn, pixel_run):
    model, variables = cnn
    result = pixel_run
    assert result.images.shape == (10, 28, 28, 1)
    probabilities = np.asarray(result.probabilities)
    assert probabilities.min() >= 0.99, probabilities
    # the reported probability is the classifier's on exactly the returned image
    recomputed = jax.nn.softmax(model.apply(variables, result.images))[jnp.arange(10), jnp.arange(10)]
    np.testing.assert_allclose(probabilities, recomputed, rtol=1e-5)
    assert float(result.images.min()) >= 0.0 and float(result.images.max()) <= 1.0  # Clip projection


def test_early_stop_is_masked_per_target(pixel_run):
    steps = np.asarray(pixel_run.steps)
    assert steps.max() < PIXEL["steps"] and len(set(steps.tolist())) > 1  # targets stop at different steps
    history = np.asarray(pixel_run.probability_history)
    for t, n in enumerate(steps):
        assert np.all(history[:n, t] < 0.99) and history[n, t] >= 0.99  # stopped at the first crossing
        assert np.all(np.isnan(history[n + 1 :, t]))  # and untouched afterwards


def test_same_key_same_result_different_key_different(cnn, pixel_run):
    model, variables = cnn
    again = activation_maximization(model, variables, CLASSES, key=jax.random.key(0), **PIXEL)
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(pixel_run.images))
    other = activation_maximization(model, variables, CLASSES, key=jax.random.key(1), **PIXEL)
    assert float(jnp.abs(other.images - pixel_run.images).mean()) > 1e-2


def test_total_variation_lowers_tv_at_the_same_probability(cnn, pixel_run):
    model, variables = cnn
    smooth = activation_maximization(
        model,
        variables,
        CLASSES,
        key=jax.random.key(0),
        steps=PIXEL["steps"],
        threshold=0.99,
        regularizers=[TotalVariation(0.01), Clip(0.0, 1.0)],
    )
    assert float(smooth.probabilities.min()) >= 0.99  # same stopping probability...
    tv_plain, tv_smooth = np.asarray(total_variation(pixel_run.images)), np.asarray(total_variation(smooth.images))
    assert np.all(tv_smooth < tv_plain), (tv_smooth, tv_plain)  # ...with less total variation, every class
    assert tv_smooth.mean() < 0.7 * tv_plain.mean()


def test_channel_targets_increase_the_channel_mean(cnn):
    model, variables = cnn
    result = activation_maximization(model, variables, [0, 5, 63], layer="conv4", steps=15, key=jax.random.key(0))
    history = np.asarray(result.score_history)
    assert result.probabilities is None and result.images.shape == (3, 28, 28, 1)
    assert np.all(history[-1] > history[0] + 0.1)
    _, act = xj.capture(model, variables, result.images, "conv4")  # score = the channel's mean, re-computed
    np.testing.assert_allclose(
        result.scores, act.mean(axis=(1, 2))[jnp.arange(3), jnp.array([0, 5, 63])], rtol=1e-4, atol=1e-5
    )


def test_callable_targets_on_outputs_and_on_a_layer(tiny):
    model, variables = tiny

    def margin(logits):  # any callable on the outputs
        return logits[:, 3] - logits[:, 1]

    result = activation_maximization(
        model, variables, margin, shape=(8, 8, 1), steps=10, num_images=2, key=jax.random.key(0)
    )
    assert result.images.shape == (2, 8, 8, 1) and result.probabilities is None
    assert np.all(np.asarray(result.score_history[-1] > result.score_history[0]))
    logits = model.apply(variables, result.images)
    np.testing.assert_allclose(result.scores, margin(logits), rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(result.images[0] - result.images[1]).max()) > 0  # two independent starts

    def neurons(activation):  # the callable sees the whole batch: image t maximises unit t of conv1 at (3, 3)
        return activation[jnp.arange(3), 3, 3, jnp.arange(3)]

    result = activation_maximization(
        model, variables, neurons, layer="conv1", shape=(8, 8, 1), steps=10, num_images=3, key=jax.random.key(0)
    )
    _, act = xj.capture(model, variables, result.images, "conv1")
    np.testing.assert_allclose(result.scores, neurons(act), rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(result.scores) > np.asarray(result.score_history[0]))


def test_seed_setting_class_mean_init_and_distance(cnn):
    """The seed's 'noise + class mean' setting: Adam with weight decay, λ‖x − m_c‖, from m_c."""
    model, variables = cnn
    images, labels = xj.data.mnist("sample")
    means = class_means(images, labels, 10)
    result = activation_maximization(
        model,
        variables,
        CLASSES,
        steps=40,
        init=means,
        threshold=0.99,
        regularizers=[L2(5e-3), ClassMeanDistance(means, 0.1), Clip(0.0, 1.0)],
    )
    assert float(result.probabilities.min()) >= 0.99
    # it stays near the class means (the seed's point): closer to its own class mean than to any other
    distances = np.linalg.norm(
        (np.asarray(result.images)[:, None] - np.asarray(means)[None]).reshape(10, 10, -1), axis=-1
    )
    assert np.all(distances.argmin(axis=1) == np.arange(10))


# ----------------------------------------------------------------------------------------------------
# Code space on the shipped generators
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("generator_name", ["mnist_gan_generator", "dcgan_generator"])
def test_codespace_reaches_095_and_stays_in_the_generator_range(cnn, generator_name):
    model, variables = cnn
    ((generator, gen_variables),) = _shipped(generator_name)
    result = activation_maximization_codespace(
        model,
        variables,
        generator,
        gen_variables,
        CLASSES,
        steps=150,
        learning_rate=0.1,
        threshold=0.97,
        code_regularizers=[L2(1e-2)],
        key=jax.random.key(0),
    )
    probabilities = np.asarray(result.probabilities)
    assert probabilities.min() >= 0.95, probabilities
    # the displayed image is the generator's (inference mode) image of the returned code...
    regenerated = generator.apply(gen_variables, result.codes)
    np.testing.assert_allclose(result.images, regenerated, atol=1e-5)
    assert float(result.images.min()) >= 0.0 and float(result.images.max()) <= 1.0
    # ...and the probability is the classifier's on exactly that image
    recomputed = jax.nn.softmax(model.apply(variables, regenerated))[jnp.arange(10), jnp.arange(10)]
    np.testing.assert_allclose(probabilities, recomputed, rtol=1e-4)


def test_codespace_maps_a_tanh_generator_to_the_classifier_range(tiny):
    model, variables = tiny

    class TanhGen(nn.Module):
        @nn.compact
        def __call__(self, z):
            return jnp.tanh(nn.Dense(64, name="fc")(z)).reshape((z.shape[0], 8, 8, 1))

    gen = TanhGen()
    gen_variables = numpy_init(gen, jnp.zeros((1, 4)), seed=1)
    result = activation_maximization_codespace(
        model,
        variables,
        gen,
        gen_variables,
        [0, 3],
        latent_shape=4,
        steps=5,
        generator_range=(-1, 1),
        classifier_range=(0, 1),
        key=jax.random.key(0),
    )
    expected = (gen.apply(gen_variables, result.codes) + 1.0) / 2.0
    np.testing.assert_allclose(result.images, expected, atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# The loop: scan == Python loop, chunking, independence of targets
# ----------------------------------------------------------------------------------------------------


def _tiny_problem(tiny, steps, chunk, **kw):
    model, variables = tiny
    options = dict(
        shape=(8, 8, 1),
        layer=None,
        steps=steps,
        learning_rate=0.1,
        optimizer=None,
        regularizers=[L2(1e-2), TotalVariation(1e-2), Jitter(1), Clip(-1.0, 1.0)],
        init="noise",
        init_scale=0.5,
        threshold=None,
        class_score="log_softmax",
        num_images=1,
        key=jax.random.key(3),
        chunk=chunk,
        progress=False,
        model_kwargs=None,
    )
    options.update(kw)
    return pixel_problem(model, variables, [0, 1, 2, 4], **options)


def test_jitted_scan_equals_a_python_loop_over_the_same_update(tiny, capsys):
    steps = 5
    spec, data, params = _tiny_problem(tiny, steps, chunk=steps)
    scanned = engine.optimize(spec, data, params, steps)
    # 3 chunks of 2 steps (the last one padded), as the progress bar runs them
    chunked = engine.optimize(*_tiny_problem(tiny, steps, chunk=2), steps, progress="AM")
    assert "AM" in capsys.readouterr().err

    update = jax.jit(functools.partial(engine.step, spec))
    state = engine.init_state(spec, data, params)
    states = [state]
    for i in range(steps):
        state, _ = update(data, state, jnp.asarray(i, jnp.int32))
        states.append(state)
    np.testing.assert_allclose(scanned.params, state.params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(chunked.params, state.params, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(scanned.steps, np.full(4, steps))
    np.testing.assert_array_equal(chunked.steps, np.full(4, steps))
    # each step moves the images far more than the tolerance: a skipped or doubled step would show
    for before, after in itertools.pairwise(states):
        assert float(jnp.abs(after.params - before.params).max()) > 1e-2
    assert float(jnp.abs(scanned.params - states[-2].params).max()) > 1e-2


def test_targets_are_optimised_independently(tiny):
    """All targets at once == each target alone (vmapped optax state, per-target keys by position)."""
    model, variables = tiny
    init = jax.random.normal(jax.random.key(5), (3, 8, 8, 1)) * 0.3
    options = dict(
        steps=6,
        learning_rate=0.1,
        regularizers=[TotalVariation(1e-2), Clip(-1.0, 1.0)],
        optimizer=optax.chain(optax.clip_by_global_norm(0.5), optax.adam(0.1)),
    )
    together = activation_maximization(model, variables, [4, 1, 2], init=init, **options)
    for t, c in enumerate([4, 1, 2]):
        alone = activation_maximization(model, variables, [c], init=init[t : t + 1], **options)
        np.testing.assert_allclose(alone.images[0], together.images[t], rtol=1e-5, atol=1e-6)
