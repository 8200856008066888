"""Flax NNX twins of the Linen test models in :mod:`tests.twins`, with the same weights.

Each NNX class computes what its Linen namesake computes, with the same submodule names (so the
same layer names: ``"conv2+relu"``, ``"block/bn1+relu"``...), and :func:`make` fills it with the
Linen twin's variables through :func:`xai_jax.models.nnx_mnist.from_linen` (no initialiser runs).
A twin here is ``(linen_model, linen_variables, nnx_model)``; the NNX model is in inference mode.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from tests import twins
from xai_jax.models.nnx_mnist import build, from_linen

_PAD1 = ((1, 1), (1, 1))


class TinyCNN(nnx.Module):
    INPUT_SHAPE: ClassVar[tuple[int, ...]] = (28, 28, 1)

    def __init__(self, num_classes: int = 10, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(1, 8, (3, 3), padding=_PAD1, rngs=rngs)
        self.conv2 = nnx.Conv(8, 16, (3, 3), padding=_PAD1, rngs=rngs)
        self.fc1 = nnx.Linear(16 * 7 * 7, 32, rngs=rngs)
        self.fc2 = nnx.Linear(32, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), strides=(2, 2))
        x = nnx.max_pool(nnx.relu(self.conv2(x)), (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        return self.fc2(nnx.relu(self.fc1(x)))


class _ResBlock(nnx.Module):
    def __init__(self, features: int, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(features, features, (3, 3), padding=_PAD1, use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(features, epsilon=1e-5, rngs=rngs)
        self.conv2 = nnx.Conv(features, features, (3, 3), padding=_PAD1, use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(features, epsilon=1e-5, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return nnx.relu(y + x)


class ResBNNet(nnx.Module):
    INPUT_SHAPE: ClassVar[tuple[int, ...]] = (16, 16, 3)

    def __init__(self, num_classes: int = 10, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(3, 8, (3, 3), padding=_PAD1, rngs=rngs)
        self.bn1 = nnx.BatchNorm(8, epsilon=1e-5, rngs=rngs)
        self.block = _ResBlock(8, rngs=rngs)
        self.fc = nnx.Linear(8, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = self.block(x)
        return self.fc(jnp.mean(x, axis=(1, 2)))


class NCHWFlattenNet(nnx.Module):
    INPUT_SHAPE: ClassVar[tuple[int, ...]] = (12, 10, 3)

    def __init__(self, num_classes: int = 10, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(3, 4, (3, 3), padding=_PAD1, rngs=rngs)
        self.conv2 = nnx.Conv(4, 6, (3, 3), strides=(2, 2), padding=_PAD1, rngs=rngs)
        self.fc1 = nnx.Linear(6 * 6 * 5, 16, rngs=rngs)
        self.fc2 = nnx.Linear(16, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.conv1(x))
        x = nnx.relu(self.conv2(x))
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)
        return self.fc2(nnx.relu(self.fc1(x)))


class VGGLikeAvgPool(nnx.Module):
    INPUT_SHAPE: ClassVar[tuple[int, ...]] = (16, 16, 3)

    def __init__(self, num_classes: int = 10, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(3, 8, (3, 3), padding=_PAD1, rngs=rngs)
        self.conv2 = nnx.Conv(8, 8, (3, 3), padding=_PAD1, rngs=rngs)
        self.conv3 = nnx.Conv(8, 16, (3, 3), padding=_PAD1, rngs=rngs)
        self.fc1 = nnx.Linear(16 * 4 * 4, 32, rngs=rngs)
        self.fc2 = nnx.Linear(32, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.conv1(x))
        x = nnx.avg_pool(nnx.relu(self.conv2(x)), (2, 2), strides=(2, 2))
        x = nnx.avg_pool(nnx.relu(self.conv3(x)), (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        return self.fc2(nnx.relu(self.fc1(x)))


NNX_TWINS: dict[str, type[nnx.Module]] = {
    "TinyCNN": TinyCNN,
    "ResBNNet": ResBNNet,
    "NCHWFlattenNet": NCHWFlattenNet,
    "VGGLikeAvgPool": VGGLikeAvgPool,
}

#: A spatial layer of each twin for the CAM family, feature visualisation and layer probes.
SPATIAL_LAYER = {
    "TinyCNN": "conv2+relu",
    "ResBNNet": "block/bn1+relu",
    "NCHWFlattenNet": "conv2+relu",
    "VGGLikeAvgPool": "conv3",
}


class Pair(NamedTuple):
    linen: Any
    variables: Any
    nnx_model: Any


def make(name: str, seed: int = 0) -> Pair:
    """The Linen twin ``name`` (weights from :func:`tests.twins._init`, no torch) and its NNX twin."""
    cls = getattr(twins, name)
    linen = cls()
    variables = twins._init(linen, seed)
    model = from_linen(build(NNX_TWINS[name]), variables)
    model.eval()
    return Pair(linen, variables, model)
