"""DeepDream, feature inversion, and clear errors on bad input."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests.featureviz.conftest import numpy_init
from xai_jax.core.errors import InputError, LayerNotFoundError, TargetError
from xai_jax.featureviz import (
    Clip,
    Jitter,
    activation_maximization,
    activation_maximization_codespace,
    deep_dream,
    invert_features,
    octave_sizes,
)


def _correlation(a, b):
    a, b = np.asarray(a).reshape(len(a), -1), np.asarray(b).reshape(len(b), -1)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


# ----------------------------------------------------------------------------------------------------
# Feature inversion
# ----------------------------------------------------------------------------------------------------


def test_inverting_the_first_conv_layer_reconstructs_the_digits(cnn, digits):
    model, variables = cnn
    x, _ = digits
    result = invert_features(model, variables, x, layer="conv1", steps=120)
    correlation = _correlation(result.images, x)
    assert correlation.min() >= 0.9, correlation
    history = np.asarray(result.error_history)
    assert np.all(np.asarray(result.errors) < 0.5 * history[0])  # the feature error went down
    assert result.images.shape == x.shape


# ----------------------------------------------------------------------------------------------------
# DeepDream
# ----------------------------------------------------------------------------------------------------


def test_deep_dream_one_step_is_the_normalised_gradient_step(cnn, digits):
    model, variables = cnn
    x, _ = digits

    x = x[:2]

    def objective(x):
        _, act = xj.capture(model, variables, x, "conv3")
        return jnp.sum(0.5 * jnp.mean(act[..., 7].reshape(len(x), -1) ** 2, axis=1))

    g = jax.grad(objective)(x)
    g = g / (jnp.std(g.reshape(len(x), -1), axis=1) + 1e-8)[:, None, None, None]
    dreamed = deep_dream(model, variables, x, layer="conv3", channel=7, octaves=1, steps=1, step_size=0.05, jitter=0)
    np.testing.assert_allclose(dreamed, x + 0.05 * g, rtol=1e-4, atol=1e-5)


class CircularConv(nn.Module):
    """Translation-equivariant under circular shifts: a rolled input gives a rolled activation."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(3, (3, 3), padding="CIRCULAR", name="conv1")(x))
        return nn.Conv(4, (3, 3), padding="CIRCULAR", name="conv2")(x)


def test_deep_dream_unrolls_the_jitter():
    """On a circular-padded conv net the objective is shift-invariant, so rolling, stepping and
    un-rolling must give exactly the un-jittered result; a missing un-roll would shift the image."""
    model = CircularConv()
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 9, 11, 1)), jnp.float32)
    variables = numpy_init(model, x, seed=1)
    still = deep_dream(model, variables, x, layer="conv2", octaves=1, steps=4, jitter=0)
    jittered = deep_dream(model, variables, x, layer="conv2", octaves=1, steps=4, jitter=3, key=jax.random.key(2))
    np.testing.assert_allclose(jittered, still, rtol=1e-4, atol=1e-5)
    assert float(jnp.abs(still - x).max()) > 1e-3


def test_deep_dream_octaves_and_keys(cnn, digits):
    model, variables = cnn
    x, _ = digits
    options = dict(layer="conv3", channel=7, octaves=2, octave_scale=1.4, steps=3, step_size=0.02, value_range=(0, 1))
    image, octaves = deep_dream(model, variables, x[:2], key=jax.random.key(0), return_octaves=True, **options)
    assert [o.shape[1:3] for o in octaves] == octave_sizes((28, 28), 2, 1.4) == [(20, 20), (28, 28)]
    assert octave_sizes((28, 28), range(-5, 3), 1.5) == [
        (4, 4),
        (6, 6),
        (8, 8),
        (12, 12),
        (19, 19),
        (28, 28),
        (42, 42),
        (63, 63),
    ]  # the seed's
    assert image.shape == x[:2].shape and float(image.min()) >= 0 and float(image.max()) <= 1
    again = deep_dream(model, variables, x[:2], key=jax.random.key(0), **options)
    np.testing.assert_array_equal(again, image)
    other = deep_dream(model, variables, x[:2], key=jax.random.key(1), **options)
    assert float(jnp.abs(other - image).max()) > 0


# ----------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------


class WideGenerator(nn.Module):
    """Makes 10x10 images, which the 8x8 classifier cannot take."""

    @nn.compact
    def __call__(self, z):
        return nn.sigmoid(nn.Dense(100, name="fc")(z)).reshape((z.shape[0], 10, 10, 1))


class BNGenerator(nn.Module):
    @nn.compact
    def __call__(self, z, train: bool = False):
        h = nn.BatchNorm(use_running_average=not train, name="bn")(nn.Dense(64, name="fc")(z))
        return nn.sigmoid(h).reshape((z.shape[0], 8, 8, 1))


def test_bad_input_raises_clear_errors(tiny):
    model, variables = tiny
    key = jax.random.key(0)
    am = lambda target=0, **kw: activation_maximization(
        model, variables, target, **{"shape": (8, 8, 1), "key": key, "steps": 2, **kw}
    )
    with pytest.raises(LayerNotFoundError, match="conv1"):  # suggests the close name
        am(0, layer="conv_1")
    with pytest.raises(TargetError, match="4 channels"):
        am([1, 4], layer="conv1")
    with pytest.raises(TargetError, match="5 classes"):
        am(5)
    with pytest.raises(InputError, match="at least 1"):
        am(0, steps=0)
    with pytest.raises(InputError, match="positive int"):
        am(0, steps=2.5)
    with pytest.raises(InputError, match="explicit key"):
        activation_maximization(model, variables, 0, shape=(8, 8, 1))
    with pytest.raises(InputError, match="class targets"):
        am(1, layer="conv1", threshold=0.9)
    with pytest.raises(InputError, match="probability"):
        am(1, threshold=1.5)
    with pytest.raises(InputError, match="regularizers"):
        am(1, regularizers=[lambda x: x])
    with pytest.raises(InputError, match="shape"):
        activation_maximization(model, variables, 0, key=key)  # no shape, no input_shape
    with pytest.raises(InputError, match="failed on x of shape"):
        am(0, shape=(10, 10, 1))
    with pytest.raises(TargetError, match="one scalar per image"):
        am(lambda logits: logits)

    wide = WideGenerator()
    wide_variables = numpy_init(wide, jnp.zeros((1, 3)))
    with pytest.raises(InputError, match=r"cannot take the generator's output.*\(10, 10, 1\)"):
        activation_maximization_codespace(model, variables, wide, wide_variables, 0, latent_shape=3, key=key, steps=2)
    bn = BNGenerator()
    bn_variables = numpy_init(bn, jnp.zeros((1, 3)))
    with pytest.raises(InputError, match="inference mode"):
        activation_maximization_codespace(
            model, variables, bn, bn_variables, 0, latent_shape=3, key=key, steps=2, generator_kwargs={"train": True}
        )
    with pytest.raises(InputError, match="projections"):
        activation_maximization_codespace(
            model, variables, bn, bn_variables, 0, latent_shape=3, key=key, steps=2, regularizers=[Clip(0, 1)]
        )
    with pytest.raises(InputError, match="both"):
        activation_maximization_codespace(
            model, variables, bn, bn_variables, 0, latent_shape=3, key=key, steps=2, generator_range=(-1, 1)
        )

    x = jnp.ones((2, 8, 8, 1))
    with pytest.raises(LayerNotFoundError):
        deep_dream(model, variables, x, layer="nope", key=key)
    with pytest.raises(TargetError, match="out of range"):
        deep_dream(model, variables, x, layer="conv1", channel=4, key=key)
    with pytest.raises(InputError, match="explicit key"):
        deep_dream(model, variables, x, layer="conv1")
    with pytest.raises(InputError, match="NHWC batch"):
        deep_dream(model, variables, x[0], layer="conv1", key=key)
    with pytest.raises(InputError, match="at least 1"):
        deep_dream(model, variables, x, layer="conv1", steps=0, key=key)
    with pytest.raises(InputError, match="octave"):  # the dense head cannot run on 4x4, but fc is past it
        deep_dream(model, variables, x, layer="fc", octaves=2, octave_scale=2.0, key=key)
    with pytest.raises(LayerNotFoundError):
        invert_features(model, variables, x, layer="conv9")
    with pytest.raises(InputError, match="at least 1"):
        invert_features(model, variables, x, layer="conv1", steps=0)
    with pytest.raises(InputError, match="explicit key"):
        invert_features(model, variables, x, layer="conv1", regularizers=[Jitter(1)])
