"""The MNIST zoo in Flax NNX: the same architectures as :mod:`xai_jax.models.mnist`, the same weights.

Each class here computes exactly what its Linen namesake computes, with the same submodule names
(``conv1`` ... ``fc2``, ``bn0``, ``dropout1``...), so the same layer names work in both (``"conv4"``,
``"conv4+relu"``).  There is no separate training: :func:`from_linen` fills an NNX model with a
Linen model's variables (``params`` -> ``nnx.Param``, ``batch_stats`` -> ``nnx.BatchStat``, same
paths), which is how ``xj.models.load(name, api="nnx")`` serves the shipped checkpoints.

Models are built without running their initialisers (``nnx.eval_shape``), then filled: no random
numbers are drawn, so building one costs no compilation.  Dropout streams get fixed keys
(``jax.random.key(0)`` folded with the stream's index); Monte-Carlo dropout re-seeds them per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from ..core.errors import CheckpointError
from .mnist import CODE_TEMPERATURE, IMAGE_SHAPE, LATENT_DIM, NUM_CLASSES, ClassCodedStart, with_class_code

__all__ = [
    "CamCNN",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "EvidentialCNN",
    "GanDiscriminator",
    "GanGenerator",
    "MCDropoutCNN",
    "MnistCNN",
    "build",
    "from_linen",
]


def _conv_stage(x: jax.Array, convs: tuple[nnx.Conv, nnx.Conv]) -> jax.Array:
    """Two 3x3 ``'SAME'`` convolutions with inline ReLUs, then a 2x2 max-pool (Linen's ``_conv_stage``)."""
    for conv in convs:
        x = nnx.relu(conv(x))
    return nnx.max_pool(x, (2, 2), strides=(2, 2))


class _Classifier(nnx.Module):
    """``conv1``-``conv4`` in two stages, ``fc1`` (128), ``fc2``: MnistCNN's layout, shared by the
    classifiers that have it (MnistCNN, EvidentialCNN)."""

    last_conv: ClassVar[str] = "conv4"
    input_shape: ClassVar[tuple[int, ...]] = IMAGE_SHAPE

    def __init__(self, num_classes: int = NUM_CLASSES, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(1, 32, (3, 3), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(32, 32, (3, 3), padding="SAME", rngs=rngs)
        self.conv3 = nnx.Conv(32, 64, (3, 3), padding="SAME", rngs=rngs)
        self.conv4 = nnx.Conv(64, 64, (3, 3), padding="SAME", rngs=rngs)
        self.fc1 = nnx.Linear(7 * 7 * 64, 128, rngs=rngs)
        self.fc2 = nnx.Linear(128, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = _conv_stage(x, (self.conv1, self.conv2))
        x = _conv_stage(x, (self.conv3, self.conv4))
        x = x.reshape((x.shape[0], -1))
        x = nnx.relu(self.fc1(x))
        return self.fc2(x)


class MnistCNN(_Classifier):
    """NNX twin of :class:`xai_jax.models.mnist.MnistCNN` (zoo name ``"mnist_cnn"``)."""


class EvidentialCNN(_Classifier):
    """NNX twin of :class:`xai_jax.models.mnist.EvidentialCNN` (zoo name ``"evidential_cnn"``)."""


class CamCNN(nnx.Module):
    """NNX twin of :class:`xai_jax.models.mnist.CamCNN` (zoo name ``"cam_cnn"``): conv1-conv5, global
    average pooling, ``fc``."""

    last_conv: ClassVar[str] = "conv5"
    input_shape: ClassVar[tuple[int, ...]] = IMAGE_SHAPE

    def __init__(self, num_classes: int = NUM_CLASSES, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(1, 32, (3, 3), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(32, 32, (3, 3), padding="SAME", rngs=rngs)
        self.conv3 = nnx.Conv(32, 64, (3, 3), padding="SAME", rngs=rngs)
        self.conv4 = nnx.Conv(64, 64, (3, 3), padding="SAME", rngs=rngs)
        self.conv5 = nnx.Conv(64, 128, (3, 3), padding="SAME", rngs=rngs)
        self.fc = nnx.Linear(128, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = _conv_stage(x, (self.conv1, self.conv2))
        x = _conv_stage(x, (self.conv3, self.conv4))
        x = nnx.relu(self.conv5(x))
        x = jnp.mean(x, axis=(1, 2))
        return self.fc(x)


class MCDropoutCNN(nnx.Module):
    """NNX twin of :class:`xai_jax.models.mnist.MCDropoutCNN` (zoo name ``"mc_dropout_cnn"``).

    ``dropout1``-``dropout3`` draw from their own streams (``rngs``' ``"dropout"``); NNX switches
    them with ``model.eval()`` / ``model.train()`` instead of a call argument.
    """

    last_conv: ClassVar[str] = "conv4"
    input_shape: ClassVar[tuple[int, ...]] = IMAGE_SHAPE

    def __init__(
        self, num_classes: int = NUM_CLASSES, conv_dropout: float = 0.25, dense_dropout: float = 0.5, *, rngs: nnx.Rngs
    ) -> None:
        self.conv1 = nnx.Conv(1, 32, (3, 3), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(32, 32, (3, 3), padding="SAME", rngs=rngs)
        self.dropout1 = nnx.Dropout(conv_dropout, rngs=rngs)
        self.conv3 = nnx.Conv(32, 64, (3, 3), padding="SAME", rngs=rngs)
        self.conv4 = nnx.Conv(64, 64, (3, 3), padding="SAME", rngs=rngs)
        self.dropout2 = nnx.Dropout(conv_dropout, rngs=rngs)
        self.fc1 = nnx.Linear(7 * 7 * 64, 128, rngs=rngs)
        self.dropout3 = nnx.Dropout(dense_dropout, rngs=rngs)
        self.fc2 = nnx.Linear(128, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.dropout1(_conv_stage(x, (self.conv1, self.conv2)))
        x = self.dropout2(_conv_stage(x, (self.conv3, self.conv4)))
        x = x.reshape((x.shape[0], -1))
        x = self.dropout3(nnx.relu(self.fc1(x)))
        return self.fc2(x)


class _Discriminator(nnx.Module):
    """The heads of both discriminators: the real/fake logit (``fc`` or ``fc<depth + 1>``, as in
    Linen) and, with ``classes > 0``, the AC-GAN class head ``fc_classes`` (Linen's ``_heads``)."""

    fc_classes: nnx.Linear | None

    def _add_heads(self, features: int, classes: int, logit_name: str, rngs: nnx.Rngs) -> None:
        self.logit_name = logit_name
        setattr(self, logit_name, nnx.Linear(features, 1, rngs=rngs))
        self.fc_classes = nnx.Linear(features, classes, rngs=rngs) if classes else None

    def _heads(self, h: jax.Array, with_classes: bool) -> jax.Array | tuple[jax.Array, jax.Array]:
        logit = getattr(self, self.logit_name)(h)
        if with_classes:
            if self.fc_classes is None:
                raise ValueError("this discriminator has no class head (classes=0)")
            return logit, self.fc_classes(h)
        return logit


class GanGenerator(ClassCodedStart, nnx.Module):
    """NNX twin of :class:`xai_jax.models.mnist.GanGenerator`: the class code (if ``classes``), ``depth``
    hidden layers ``fc1``... (``hidden · 2^i``, leaky ReLU), ``fc<depth + 1>`` (784), sigmoid."""

    input_shape: ClassVar[tuple[int, ...]] = (LATENT_DIM,)

    def __init__(
        self,
        latent_dim: int = LATENT_DIM,
        hidden: int = 128,
        depth: int = 1,
        classes: int = 0,
        temperature: float = CODE_TEMPERATURE,
        *,
        rngs: nnx.Rngs,
    ) -> None:
        self.depth, self.classes, self.temperature = depth, classes, temperature
        width = latent_dim + classes
        for i in range(depth):
            setattr(self, f"fc{i + 1}", nnx.Linear(width, hidden * 2**i, rngs=rngs))
            width = hidden * 2**i
        setattr(self, f"fc{depth + 1}", nnx.Linear(width, 28 * 28, rngs=rngs))

    def __call__(self, z: jax.Array) -> jax.Array:
        h = with_class_code(z, self.classes, self.temperature)
        for i in range(self.depth):
            h = nnx.leaky_relu(getattr(self, f"fc{i + 1}")(h), negative_slope=0.2)
        return nnx.sigmoid(getattr(self, f"fc{self.depth + 1}")(h)).reshape((z.shape[0], *IMAGE_SHAPE))


class GanDiscriminator(_Discriminator):
    """NNX twin of :class:`xai_jax.models.mnist.GanDiscriminator`: ``depth`` hidden layers ``fc1``...
    (``hidden · 2^(depth-1-i)``, leaky ReLU), the logit ``fc<depth + 1>`` and, with ``classes``, the
    class head ``fc_classes``."""

    input_shape: ClassVar[tuple[int, ...]] = IMAGE_SHAPE

    def __init__(self, hidden: int = 128, depth: int = 1, classes: int = 0, *, rngs: nnx.Rngs) -> None:
        self.depth = depth
        width = 28 * 28
        for i in range(depth):
            setattr(self, f"fc{i + 1}", nnx.Linear(width, hidden * 2 ** (depth - 1 - i), rngs=rngs))
            width = hidden * 2 ** (depth - 1 - i)
        self._add_heads(width, classes, f"fc{depth + 1}", rngs)

    def __call__(self, x: jax.Array, *, with_classes: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
        h = x.reshape((x.shape[0], -1))
        for i in range(self.depth):
            h = nnx.leaky_relu(getattr(self, f"fc{i + 1}")(h), negative_slope=0.2)
        return self._heads(h, with_classes)


class DCGANGenerator(ClassCodedStart, nnx.Module):
    """NNX twin of :class:`xai_jax.models.mnist.DCGANGenerator` (BatchNorm on running averages after
    ``model.eval()``, which :func:`xai_jax.models.load` calls)."""

    input_shape: ClassVar[tuple[int, ...]] = (LATENT_DIM,)

    def __init__(
        self,
        latent_dim: int = LATENT_DIM,
        features: int = 64,
        classes: int = 0,
        temperature: float = CODE_TEMPERATURE,
        *,
        rngs: nnx.Rngs,
    ) -> None:
        f = self.features = features
        self.classes, self.temperature = classes, temperature
        self.fc = nnx.Linear(latent_dim + classes, 7 * 7 * 2 * f, rngs=rngs)
        self.bn0 = nnx.BatchNorm(7 * 7 * 2 * f, momentum=0.9, rngs=rngs)
        self.deconv1 = nnx.ConvTranspose(2 * f, f, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs)
        self.bn1 = nnx.BatchNorm(f, momentum=0.9, rngs=rngs)
        self.deconv2 = nnx.ConvTranspose(f, 1, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        x = nnx.relu(self.bn0(self.fc(with_class_code(z, self.classes, self.temperature))))
        x = x.reshape((z.shape[0], 7, 7, 2 * self.features))
        x = nnx.relu(self.bn1(self.deconv1(x)))
        return (jnp.tanh(self.deconv2(x)) + 1.0) / 2.0


class DCGANDiscriminator(_Discriminator):
    """NNX twin of :class:`xai_jax.models.mnist.DCGANDiscriminator`."""

    input_shape: ClassVar[tuple[int, ...]] = IMAGE_SHAPE

    def __init__(self, features: int = 64, classes: int = 0, *, rngs: nnx.Rngs) -> None:
        f = features
        self.conv1 = nnx.Conv(1, f, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(f, 2 * f, (4, 4), strides=(2, 2), padding="SAME", rngs=rngs)
        self._add_heads(7 * 7 * 2 * f, classes, "fc", rngs)

    def __call__(self, x: jax.Array, *, with_classes: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
        x = nnx.leaky_relu(self.conv1(x), negative_slope=0.2)
        x = nnx.leaky_relu(self.conv2(x), negative_slope=0.2)
        return self._heads(x.reshape((x.shape[0], -1)), with_classes)


#: Linen class name -> its NNX twin here.
NNX_CLASSES: dict[str, type[nnx.Module]] = {
    cls.__name__: cls
    for cls in (
        MnistCNN,
        EvidentialCNN,
        CamCNN,
        MCDropoutCNN,
        GanGenerator,
        GanDiscriminator,
        DCGANGenerator,
        DCGANDiscriminator,
    )
}


def build(factory: Callable[..., nnx.Module], **kwargs: Any) -> nnx.Module:
    """An NNX model from ``factory(**kwargs, rngs=...)`` with no initialiser run: parameters are zeros
    of the right shapes, rng streams get ``fold_in(key(0), j)`` (fill them with :func:`from_linen`).

    Example:
      >>> model = build(MnistCNN)
      >>> model.fc2.kernel.shape
      (128, 10)
    """
    abstract = nnx.eval_shape(lambda: factory(**kwargs, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    streams = iter(range(1 << 30))

    def concrete(variable: Any) -> Any:
        struct = variable.get_value() if hasattr(variable, "get_value") else variable.value
        if isinstance(variable, nnx.RngKey):
            return variable.replace(jax.random.fold_in(jax.random.key(0), next(streams)))
        return variable.replace(jnp.zeros(struct.shape, struct.dtype))

    state = jax.tree_util.tree_map(concrete, state, is_leaf=lambda v: isinstance(v, nnx.Variable))
    return nnx.merge(graphdef, state)


_COLLECTIONS: tuple[tuple[type, str], ...] = ((nnx.BatchStat, "batch_stats"), (nnx.Param, "params"))


def from_linen(model: nnx.Module, variables: Mapping[str, Any]) -> nnx.Module:
    """A copy of ``model`` holding a Linen model's ``variables`` (same submodule names and layout).

    Every ``nnx.Param`` at path ``a/b/kernel`` takes ``variables["params"]["a"]["b"]["kernel"]``,
    every ``nnx.BatchStat`` takes it from ``variables["batch_stats"]``; rng state is kept.  A missing
    entry or a shape mismatch is a :class:`~xai_jax.core.errors.CheckpointError` naming it; so is a
    Linen entry the NNX model has no place for.

    Example:
      >>> from xai_jax.models import mnist
      >>> linen = mnist.MnistCNN()
      >>> variables = jax.eval_shape(linen.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
      >>> variables = jax.tree_util.tree_map(lambda s: jnp.ones(s.shape, s.dtype), variables)
      >>> float(from_linen(build(MnistCNN), variables).conv1.kernel[0, 0, 0, 0])
      1.0
    """
    graphdef, state = nnx.split(model)
    used: set[tuple[str, ...]] = set()

    def fill(path: Any, variable: Any) -> Any:
        names = tuple(str(getattr(p, "key", getattr(p, "name", p))) for p in path)
        collection = next((name for kind, name in _COLLECTIONS if isinstance(variable, kind)), None)
        if collection is None:
            return variable
        node: Any = variables.get(collection, {})
        for name in names:
            if not hasattr(node, "get") or name not in node:
                raise CheckpointError(
                    f"the Linen variables have no {collection}/{'/'.join(names)} for the NNX model's "
                    f"{type(variable).__name__} {'/'.join(names)!r}"
                )
            node = node[name]
        own = variable.get_value() if hasattr(variable, "get_value") else variable.value
        if tuple(node.shape) != tuple(own.shape):
            raise CheckpointError(
                f"{collection}/{'/'.join(names)} has shape {tuple(node.shape)}; the NNX model's is {tuple(own.shape)}"
            )
        used.add((collection, *names))
        return variable.replace(jnp.asarray(node, own.dtype))

    state = jax.tree_util.tree_map_with_path(fill, state, is_leaf=lambda v: isinstance(v, nnx.Variable))
    given = {
        (collection, *(str(getattr(p, "key", p)) for p in path))
        for collection in ("params", "batch_stats")
        if collection in variables
        for path, _ in jax.tree_util.tree_leaves_with_path(variables[collection])
    }
    unused = sorted("/".join(p) for p in given - used)
    if unused:
        raise CheckpointError(
            f"the NNX model has no place for the Linen variables {', '.join(unused[:8])}"
            + (" ..." if len(unused) > 8 else "")
        )
    return nnx.merge(graphdef, state)
