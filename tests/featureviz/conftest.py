"""Shared fixtures of the feature-visualization tests.

Random models are initialised with NumPy from ``jax.eval_shape(model.init)``: compiling Flax's own
initialisers (truncated normals through threefry) costs seconds per model on a busy 2-core machine,
more than the tests themselves.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj


def numpy_init(model, *example_inputs, seed=0, scale=0.5, **kwargs):
    """Variables of ``model`` with the shapes ``model.init`` would give, drawn with NumPy
    (kernels ~ N(0, scale²/fan_in), biases small, BatchNorm variances positive)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda *xs: model.init(jax.random.key(0), *xs, **kwargs), *example_inputs)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "var" in name:
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), leaf.dtype)
        if "scale" in name:
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 10
        return jnp.asarray(rng.normal(0.0, scale / np.sqrt(fan_in), leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


class Tiny(nn.Module):
    """A small CNN with the parts that matter: conv, inline ReLU, max-pool, flatten, dense head."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), name="conv1")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(6, (3, 3), name="conv2")(x))
        return nn.Dense(5, name="fc")(x.reshape((x.shape[0], -1)))


@pytest.fixture(scope="session")
def tiny():
    model = Tiny()
    return model, numpy_init(model, jnp.zeros((1, 8, 8, 1)))


@pytest.fixture(scope="session")
def cnn():
    if "mnist_cnn" not in xj.models.available():
        pytest.skip("mnist_cnn checkpoint not shipped")
    return xj.models.load("mnist_cnn")


@pytest.fixture(scope="session")
def digits():
    """Four test digits from the bundled sample (7, 3, 7, 3)."""
    images, labels = xj.data.mnist("sample")
    return jnp.asarray(images[::30][:4]), labels[::30][:4]
