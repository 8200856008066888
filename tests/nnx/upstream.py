"""The Flax NNX MNIST CNN as Flax's MNIST tutorial writes it (https://flax.readthedocs.io, "MNIST
tutorial"): ``nnx.Conv``, ``nnx.avg_pool`` through ``functools.partial``, ``nnx.Linear``,
``nnx.relu``, flattening with ``reshape``.  Written here as users write it, not adapted to xai_jax.

:class:`CNN` is the classic tutorial model; :class:`CNNWithBNDropout` the newer one with
``nnx.BatchNorm`` and ``nnx.Dropout(rngs=rngs)`` (training mode until ``model.eval()``).

Built with :func:`xai_jax.models.nnx_mnist.build` then filled with NumPy draws, so no initialiser
compiles (XLA:CPU takes ~1 s per random-number kernel).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xai_jax.models.nnx_mnist import build


class CNN(nnx.Module):
    """A simple CNN model."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.avg_pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        self.linear1 = nnx.Linear(3136, 256, rngs=rngs)
        self.linear2 = nnx.Linear(256, 10, rngs=rngs)

    def __call__(self, x):
        x = self.avg_pool(nnx.relu(self.conv1(x)))
        x = self.avg_pool(nnx.relu(self.conv2(x)))
        x = x.reshape(x.shape[0], -1)  # flatten
        x = nnx.relu(self.linear1(x))
        x = self.linear2(x)
        return x


class CNNWithBNDropout(nnx.Module):
    """A simple CNN model (the tutorial's newer version: BatchNorm and Dropout)."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.batch_norm1 = nnx.BatchNorm(32, rngs=rngs)
        self.dropout1 = nnx.Dropout(rate=0.025, rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.batch_norm2 = nnx.BatchNorm(64, rngs=rngs)
        self.avg_pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        self.linear1 = nnx.Linear(3136, 256, rngs=rngs)
        self.dropout2 = nnx.Dropout(rate=0.025, rngs=rngs)
        self.linear2 = nnx.Linear(256, 10, rngs=rngs)

    def __call__(self, x):
        x = self.avg_pool(nnx.relu(self.batch_norm1(self.dropout1(self.conv1(x)))))
        x = self.avg_pool(nnx.relu(self.batch_norm2(self.conv2(x))))
        x = x.reshape(x.shape[0], -1)  # flatten
        x = nnx.relu(self.dropout2(self.linear1(x)))
        x = self.linear2(x)
        return x


def make(cls: type = CNN, seed: int = 0) -> nnx.Module:
    """``cls`` with LeCun-normal kernels, small random biases, BatchNorm statistics away from
    identity; in training mode, as a freshly built NNX model is."""
    model = build(cls)
    rng = np.random.default_rng(seed)
    graphdef, state = nnx.split(model)

    def draw(path, variable):
        leaf = str(getattr(path[-1], "key", path[-1]))
        if isinstance(variable, nnx.RngState):
            return variable
        shape = variable.get_value().shape
        if leaf == "kernel":
            value = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        elif leaf in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
        return variable.replace(jnp.asarray(value, jnp.float32))

    state = jax.tree_util.tree_map_with_path(draw, state, is_leaf=lambda v: isinstance(v, nnx.Variable))
    return nnx.merge(graphdef, state)
