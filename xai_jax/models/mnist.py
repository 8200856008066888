"""The MNIST model zoo: Flax Linen definitions of the classifiers and generators the repo ships.

Every classifier takes NHWC float32 images in ``[0, 1]`` of shape ``(B, 28, 28, 1)`` and returns
logits ``(B, 10)``; every generator takes latent codes ``(B, 100)`` and returns images
``(B, 28, 28, 1)`` in ``[0, 1]``, the classifiers' own input range, so a generated image can be fed
to a classifier as is.

The definitions are written the way users write Flax models -- activations inline (``nn.relu(x)``),
pooling with ``nn.max_pool``, flattening with ``x.reshape`` -- because the library must work on
such models.  Submodules carry explicit, readable names (``conv1`` ... ``fc2``) that double as
layer names for ``xj.layers``/``xj.capture``/Grad-CAM.  Trained weights: ``xai_jax.models.load``.

Zoo name -> class: layers (named submodules)

* ``mnist_cnn`` -> :class:`MnistCNN`: conv1-conv4 (3x3), two 2x2 max-pools, fc1, fc2
* ``cam_cnn`` -> :class:`CamCNN`: conv1-conv5 (3x3), two 2x2 max-pools, global average pool, fc
* ``mc_dropout_cnn`` -> :class:`MCDropoutCNN`: MnistCNN + dropout1-dropout3 (rng stream "dropout")
* ``evidential_cnn`` -> :class:`EvidentialCNN`: MnistCNN's layout, trained with the evidential loss
* ``mnist_gan_generator`` -> :class:`GanGenerator`: class code, fc1 (256), fc2 (512), fc3 (784), sigmoid
* ``mnist_gan_discriminator`` -> :class:`GanDiscriminator`: fc1 (512), fc2 (256), fc3 (1 logit), fc_classes
* ``dcgan_generator`` -> :class:`DCGANGenerator`: fc, bn0, deconv1 (64), bn1, deconv2 (1), tanh
* ``dcgan_discriminator`` -> :class:`DCGANDiscriminator`: conv1 (64), conv2 (128), fc (1 logit)

The shipped generators read the digit to draw from their code (``classes=10``):
``argmax(z[:, :10])``, uniform under the prior ``z ~ N(0, I)`` (:func:`class_code`), for AC-GAN
training (:class:`xai_jax.models.train.GanRecipe`); ``classes=0`` (the modules' default) is
unconditional.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
    "IMAGE_SHAPE",
    "LATENT_DIM",
    "NUM_CLASSES",
    "CamCNN",
    "ClassCodedStart",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "EvidentialCNN",
    "GanDiscriminator",
    "GanGenerator",
    "MCDropoutCNN",
    "MnistCNN",
    "class_code",
    "code_classes",
    "example_input",
]

IMAGE_SHAPE: tuple[int, int, int] = (28, 28, 1)
LATENT_DIM: int = 100
NUM_CLASSES: int = 10


def example_input(model: nn.Module, batch: int = 1) -> jax.Array:
    """A zero batch of the input a zoo model takes: images ``(B, 28, 28, 1)`` or codes ``(B, 100)``.

    Used to initialise a model (or to compute its variable shapes with ``jax.eval_shape``).
    """
    shape = getattr(type(model), "input_shape", IMAGE_SHAPE)
    return jnp.zeros((batch, *shape), jnp.float32)


def _conv_stage(x: jax.Array, features: int, names: tuple[str, str]) -> jax.Array:
    """Two 3x3 ``'SAME'`` convolutions with inline ReLUs, then a 2x2 max-pool: the stage the
    classifiers share.  Called inside a compact ``__call__``, so the convs are the caller's
    submodules under their own names (``conv1`` ...), not a nested module."""
    for name in names:
        x = nn.relu(nn.Conv(features, (3, 3), name=name)(x))
    return nn.max_pool(x, (2, 2), strides=(2, 2))


class MnistCNN(nn.Module):
    """General MNIST classifier (zoo name ``"mnist_cnn"``): a small VGG-style CNN.

    ``conv1`` (32, 3x3) -> ReLU -> ``conv2`` (32) -> ReLU -> max-pool 2x2 -> ``conv3`` (64) -> ReLU ->
    ``conv4`` (64) -> ReLU -> max-pool 2x2 -> flatten (7*7*64) -> ``fc1`` (128) -> ReLU -> ``fc2`` (10).
    Convolutions use ``'SAME'`` padding, so ``conv4`` (the usual Grad-CAM layer) is 14x14.

    Input ``(B, 28, 28, 1)`` float in ``[0, 1]``; output logits ``(B, 10)``.
    """

    num_classes: int = NUM_CLASSES
    last_conv: ClassVar[str] = "conv4"  # the layer CAM/Grad-CAM usually explain
    input_shape: ClassVar[tuple[int, ...]] = IMAGE_SHAPE

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _conv_stage(x, 32, ("conv1", "conv2"))
        x = _conv_stage(x, 64, ("conv3", "conv4"))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(128, name="fc1")(x))
        return nn.Dense(self.num_classes, name="fc2")(x)


class CamCNN(nn.Module):
    """Class Activation Mapping classifier (zoo name ``"cam_cnn"``), after Zhou et al. 2016.

    ``conv1`` (32, 3x3) -> ReLU -> ``conv2`` (32) -> ReLU -> max-pool 2x2 -> ``conv3`` (64) -> ReLU ->
    ``conv4`` (64) -> ReLU -> max-pool 2x2 -> ``conv5`` (128) -> ReLU -> global average pool over H, W
    -> ``fc`` (10): :class:`MnistCNN`'s convolutions, one more, and no hidden dense layer.  The CAM
    of class c is ``sum_k fc.kernel[k, c] * relu(conv5)[..., k]`` on the 7x7 grid of ``conv5``
    (receptive field 24 px), which Grad-CAM on ``conv5`` reproduces up to a positive factor.

    Input ``(B, 28, 28, 1)`` float in ``[0, 1]``; output logits ``(B, 10)``.
    """

    num_classes: int = NUM_CLASSES
    last_conv: ClassVar[str] = "conv5"  # the layer CAM/Grad-CAM usually explain
    input_shape: ClassVar[tuple[int, ...]] = IMAGE_SHAPE

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _conv_stage(x, 32, ("conv1", "conv2"))
        x = _conv_stage(x, 64, ("conv3", "conv4"))
        x = nn.relu(nn.Conv(128, (3, 3), name="conv5")(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="fc")(x)


class MCDropoutCNN(nn.Module):
    """Monte-Carlo dropout classifier (zoo name ``"mc_dropout_cnn"``), after Gal & Ghahramani 2016.

    :class:`MnistCNN`'s layout with ``dropout1`` (after the first pool), ``dropout2`` (after the
    second pool) and ``dropout3`` (after ``fc1``).  ``deterministic=True`` (the default) is the
    ordinary point prediction; ``deterministic=False`` samples a dropout mask from the rng stream
    ``"dropout"``: ``model.apply(variables, x, deterministic=False, rngs={"dropout": key})``.

    Input ``(B, 28, 28, 1)`` float in ``[0, 1]``; output logits ``(B, 10)``.
    """

    num_classes: int = NUM_CLASSES
    conv_dropout: float = 0.25
    dense_dropout: float = 0.5
    last_conv: ClassVar[str] = "conv4"  # the layer CAM/Grad-CAM usually explain
    input_shape: ClassVar[tuple[int, ...]] = IMAGE_SHAPE

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        x = _conv_stage(x, 32, ("conv1", "conv2"))
        x = nn.Dropout(self.conv_dropout, name="dropout1")(x, deterministic=deterministic)
        x = _conv_stage(x, 64, ("conv3", "conv4"))
        x = nn.Dropout(self.conv_dropout, name="dropout2")(x, deterministic=deterministic)
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(128, name="fc1")(x))
        x = nn.Dropout(self.dense_dropout, name="dropout3")(x, deterministic=deterministic)
        return nn.Dense(self.num_classes, name="fc2")(x)


class EvidentialCNN(nn.Module):
    """Evidential classifier (zoo name ``"evidential_cnn"``), Sensoy, Kaplan & Kandemir 2018.

    Same layout as :class:`MnistCNN`; what differs is training, with the expected-MSE loss of
    their Eq. 5 (:func:`xai_jax.models.losses.evidential_mse_loss`).  The model outputs plain
    logits ``(B, 10)``; the Dirichlet is read off them: evidence ``e = relu(logits)``,
    ``alpha = e + 1``, ``S = sum(alpha)``, expected probability ``alpha / S``, uncertainty
    ``u = K / S``.  Input ``(B, 28, 28, 1)`` float in ``[0, 1]``.

    ``initial_bias`` only matters at initialisation: ``fc2``'s bias starts positive so that every
    class starts with some evidence.  ReLU evidence has no gradient where the logit is negative,
    so a class whose logit goes negative on every image early in training never recovers (with a
    zero bias, one of the ten classes died this way in our runs and the model sat at 89 %).
    """

    num_classes: int = NUM_CLASSES
    initial_bias: float = 5.0
    last_conv: ClassVar[str] = "conv4"  # the layer CAM/Grad-CAM usually explain
    input_shape: ClassVar[tuple[int, ...]] = IMAGE_SHAPE

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _conv_stage(x, 32, ("conv1", "conv2"))
        x = _conv_stage(x, 64, ("conv3", "conv4"))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(128, name="fc1")(x))
        return nn.Dense(self.num_classes, bias_init=nn.initializers.constant(self.initial_bias), name="fc2")(x)


#: The class code's softmax temperature.  The gap between the two largest of 10 standard normal
#: entries is often below 0.3, so at temperature 4 many codes were mixtures of two digits: the
#: AC-GAN DCGAN drew the code's digit for 86.9 % of samples (81.9 % scored >= 0.9) after 5 epochs;
#: at 20 the code is near one-hot for almost every ``z``, and the same recipe drew the code's digit
#: for 96.1 % after 6 epochs (after 5: 91 % of 1,000 samples scored >= 0.9, against 81 % at 4).
CODE_TEMPERATURE = 20.0


def class_code(z: jax.Array, classes: int, temperature: float) -> jax.Array:
    """The class code a generator reads from its latent ``z``: ``softmax(temperature · z[:, :classes])``.

    Under the prior ``z ~ N(0, I)`` the argmax of the first ``classes`` entries is uniform over the
    classes (i.i.d. entries), so sampling ``z`` samples every class equally often; the generator is
    trained to draw the digit ``argmax(z[:, :classes])`` (AC-GAN [odena2017]_) and the
    code is a soft one-hot, so it stays differentiable: code-space activation maximisation can move
    from one class to another by gradient steps on ``z`` (the generator also reads ``z`` itself).
    """
    return jax.nn.softmax(temperature * z[:, :classes], axis=-1)


def with_class_code(z: jax.Array, classes: int, temperature: float) -> jax.Array:
    """What a generator's first layer reads: ``z`` followed by its :func:`class_code` (``z`` alone
    when ``classes=0``).  Shared by the Linen and NNX generators."""
    return jnp.concatenate([z, class_code(z, classes, temperature)], axis=-1) if classes else z


#: Where code-space activation maximisation of a class-coded generator starts: codes drawn from
#: ``0.1 · N(0, I)``, near the prior's mode, instead of from the prior itself.  At a typical prior
#: sample the class code is saturated (temperature 20), its gradient underflows and the optimiser
#: cannot leave the class the code starts in; near the mode every class is reachable.  Measured on
#: the shipped MLP AC-GAN (docs/design.md §8): from the prior, 0.19-0.97 for the worst digit over
#: keys 0-3; from 0.1 · N(0, I), >= 0.970 for every digit and key (the DCGAN: >= 0.970 either way).
CODE_INIT_SCALE = 0.1


class ClassCodedStart:
    """Mixin of the Linen and NNX generators: the initial-code scale they declare to code-space
    activation maximisation (``code_init_scale``, read by
    :func:`xai_jax.featureviz.codespace.defaults_for`): :data:`CODE_INIT_SCALE` when the generator
    reads a class code, ``None`` (the library's default, the prior) otherwise."""

    classes: int

    @property
    def code_init_scale(self) -> float | None:
        return CODE_INIT_SCALE if self.classes else None


def code_classes(z: jax.Array, classes: int = NUM_CLASSES) -> jax.Array:
    """The class a class-coded generator draws for each code: ``argmax(z[:, :classes])`` ``(B,)``."""
    return jnp.argmax(z[:, :classes], axis=-1)


class GanGenerator(ClassCodedStart, nn.Module):
    """MLP GAN generator (zoo name ``"mnist_gan_generator"``), after Goodfellow et al. 2014.

    ``z (B, 100)`` -> ``depth`` hidden layers ``fc1``, ``fc2``, ... (``hidden``, ``2 · hidden``, ...;
    leaky ReLU 0.2) -> ``fc<depth + 1>`` (784) -> sigmoid -> ``(B, 28, 28, 1)`` in ``[0, 1]``.  With
    ``classes=10`` the class code (:func:`class_code`, 10 entries) is concatenated to ``z`` first
    and the digit drawn is ``argmax(z[:, :10])`` (AC-GAN training, :mod:`xai_jax.models.train`).
    The shipped checkpoint: ``hidden=256, depth=2, classes=10``.
    """

    latent_dim: int = LATENT_DIM
    hidden: int = 128
    depth: int = 1
    classes: int = 0
    temperature: float = CODE_TEMPERATURE
    input_shape: ClassVar[tuple[int, ...]] = (LATENT_DIM,)

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = with_class_code(z, self.classes, self.temperature)
        for i in range(self.depth):
            h = nn.leaky_relu(nn.Dense(self.hidden * 2**i, name=f"fc{i + 1}")(h), negative_slope=0.2)
        x = nn.sigmoid(nn.Dense(28 * 28, name=f"fc{self.depth + 1}")(h))
        return x.reshape((z.shape[0], *IMAGE_SHAPE))


class GanDiscriminator(nn.Module):
    """MLP GAN discriminator (zoo name ``"mnist_gan_discriminator"``).

    ``(B, 28, 28, 1)`` in ``[0, 1]`` -> flatten (784) -> ``depth`` hidden layers ``fc1``, ``fc2``, ...
    (``2^(depth-1) · hidden``, ..., ``hidden``; leaky ReLU 0.2) -> ``fc<depth + 1>`` -> one logit
    ``(B, 1)`` (positive: "real").  The shipped checkpoint: ``hidden=256, depth=2, classes=10``.  With
    ``classes > 0``, ``with_classes=True`` also returns the class logits of ``fc_classes`` on the same
    features: the auxiliary classifier of AC-GAN [odena2017]_, trained on the real digits.
    """

    hidden: int = 128
    depth: int = 1
    classes: int = 0
    input_shape: ClassVar[tuple[int, ...]] = IMAGE_SHAPE

    @nn.compact
    def __call__(self, x: jax.Array, *, with_classes: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
        h = x.reshape((x.shape[0], -1))
        for i in range(self.depth):
            h = nn.leaky_relu(
                nn.Dense(self.hidden * 2 ** (self.depth - 1 - i), name=f"fc{i + 1}")(h), negative_slope=0.2
            )
        return _heads(h, self.classes, with_classes, f"fc{self.depth + 1}")


def _heads(h: jax.Array, classes: int, with_classes: bool, name: str) -> jax.Array | tuple[jax.Array, jax.Array]:
    """The real/fake logit ``name`` and, on request, the auxiliary class logits ``fc_classes``.
    The class head is always created (``init`` builds the whole model), so a checkpoint has one
    tree whichever output is asked for."""
    logit = nn.Dense(1, name=name)(h)
    class_logits = nn.Dense(classes, name="fc_classes")(h) if classes else None
    if with_classes:
        if class_logits is None:
            raise ValueError("this discriminator has no class head (classes=0)")
        return logit, class_logits
    return logit


class DCGANGenerator(ClassCodedStart, nn.Module):
    """DCGAN generator (zoo name ``"dcgan_generator"``), after Radford, Metz & Chintala 2016.

    ``z (B, 100)`` -> concatenate the class code (:func:`class_code`) -> ``fc`` (7·7·2f) -> ``bn0`` ->
    ReLU -> reshape 7x7x2f -> ``deconv1`` (ConvTranspose f, 4x4, stride 2) -> ``bn1`` -> ReLU ->
    ``deconv2`` (ConvTranspose 1, 4x4, stride 2) -> tanh ``t`` -> ``(t + 1) / 2``: images
    ``(B, 28, 28, 1)`` in ``[0, 1]``, the classifiers' input range (``f = features``).  With
    ``classes=10`` the class code is concatenated first and the digit drawn is ``argmax(z[:, :10])``
    (AC-GAN training; the shipped checkpoint); ``classes=0`` (the default) is unconditional.

    ``train=False`` (the default) runs BatchNorm on its stored statistics, so an image depends on
    its own code only -- the right mode for activation maximisation in code space even with a batch
    of one.  ``train=True`` uses batch statistics and needs ``mutable=["batch_stats"]``.
    """

    latent_dim: int = LATENT_DIM
    features: int = 64
    classes: int = 0
    temperature: float = CODE_TEMPERATURE
    input_shape: ClassVar[tuple[int, ...]] = (LATENT_DIM,)

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool = False) -> jax.Array:
        f = self.features
        h = with_class_code(z, self.classes, self.temperature)
        x = nn.Dense(7 * 7 * 2 * f, name="fc")(h)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn0")(x)
        x = nn.relu(x)
        x = x.reshape((z.shape[0], 7, 7, 2 * f))
        x = nn.ConvTranspose(f, (4, 4), strides=(2, 2), padding="SAME", name="deconv1")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn1")(x)
        x = nn.relu(x)
        x = nn.ConvTranspose(1, (4, 4), strides=(2, 2), padding="SAME", name="deconv2")(x)
        return (jnp.tanh(x) + 1.0) / 2.0


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator (zoo name ``"dcgan_discriminator"``), used to train :class:`DCGANGenerator`.

    ``(B, 28, 28, 1)`` in ``[0, 1]`` -> ``conv1`` (f, 4x4, stride 2) -> leaky ReLU (0.2) -> ``conv2``
    (2f, 4x4, stride 2) -> leaky ReLU -> flatten -> ``fc`` -> one logit ``(B, 1)`` (``f = features``).
    With ``classes > 0``, ``with_classes=True`` also returns the auxiliary class logits (``fc_classes``,
    AC-GAN); the shipped checkpoint has ``classes=10``.  No
    BatchNorm, so it has only ``params`` and its output for a sample does not depend on the rest of
    the batch.
    """

    features: int = 64
    classes: int = 0
    input_shape: ClassVar[tuple[int, ...]] = IMAGE_SHAPE

    @nn.compact
    def __call__(self, x: jax.Array, *, with_classes: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
        f = self.features
        x = nn.leaky_relu(nn.Conv(f, (4, 4), strides=(2, 2), name="conv1")(x), negative_slope=0.2)
        x = nn.leaky_relu(nn.Conv(2 * f, (4, 4), strides=(2, 2), name="conv2")(x), negative_slope=0.2)
        x = x.reshape((x.shape[0], -1))
        return _heads(x, self.classes, with_classes, "fc")
