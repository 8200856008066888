"""Small models for the uncertainty tests (random weights, compile in about a second)."""

import flax.linen as nn
import jax
import numpy as np
import pytest


class TinyDropoutNet(nn.Module):
    """conv -> relu -> max-pool -> dropout -> dense -> relu -> dropout -> dense (5 classes), 8x8x1 inputs."""

    rate: float = 0.5

    @nn.compact
    def __call__(self, x, *, deterministic: bool = True):
        x = nn.relu(nn.Conv(4, (3, 3), name="conv")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.Dropout(0.25, name="drop1")(x, deterministic=deterministic)
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(16, name="fc1")(x))
        x = nn.Dropout(self.rate, name="drop2")(x, deterministic=deterministic)
        return nn.Dense(5, name="fc2")(x)


class TinyNet(nn.Module):
    """The same layers without dropout (and no ``deterministic`` argument)."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), name="conv")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(16, name="fc1")(x))
        return nn.Dense(5, name="fc2")(x)


@pytest.fixture(autouse=True, scope="module")
def fast_threefry():
    """Run these tests with ``jax_threefry_partitionable=False``: the same vmap-consistent threefry
    PRNG (other bits), whose dropout masks XLA:CPU compiles ~5x faster (0.5 s vs 2.5-3.5 s per
    mask shape measured here).  Scoped: the setting is restored after each module."""
    with jax.threefry_partitionable(False):
        yield


@pytest.fixture(scope="session")
def tiny_x():
    return np.random.default_rng(0).uniform(0, 1, (3, 8, 8, 1)).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_dropout(tiny_x):
    model = TinyDropoutNet()
    variables = jax.jit(model.init)(jax.random.key(1), tiny_x)
    # scale the weights up so that predictions are confident and dropout visibly changes them
    variables = jax.tree_util.tree_map(lambda w: 3.0 * w, variables)
    return model, variables


@pytest.fixture(scope="session")
def tiny_plain(tiny_x):
    model = TinyNet()
    return model, jax.jit(model.init)(jax.random.key(1), tiny_x)
