"""Standard ImageNet architectures (VGG-16/19, ResNet-18) in Flax Linen, torchvision-compatible.

Why these exist: feature visualisation, DeepDream and every "does the method scale" check need the
networks people actually explain, and the weights people have are torchvision checkpoints.  The
modules below compute *exactly* what torchvision's ``vgg16``/``vgg19`` (and ``_bn`` variants) and
``resnet18`` compute, on NHWC input, so that ``xai_jax.models.torch_port.from_torchvision`` can load
a torchvision state dict and reproduce its logits to float32 rounding.

Layer names (use them with ``xj.layers``/``xj.capture``/Grad-CAM) mirror torchvision's module paths,
with ``.`` replaced by ``_`` inside a level and ``/`` between Flax modules:

* VGG: ``features_<i>`` is torchvision's ``features[i]`` (a ``Conv``; with ``batch_norm=True`` the
  ``BatchNorm`` right after it is ``features_<i+1>``), ``classifier_0``, ``classifier_3``,
  ``classifier_6`` are the three ``Dense`` layers (``classifier_2``/``classifier_5`` the dropouts).
  ReLUs and max-pools are inline functions, not modules, so e.g. the last conv of VGG-16 is
  ``features_28`` and its *pre*-ReLU output is what capturing that name returns.
* ResNet-18: ``conv1``, ``bn1``, ``layer<k>_<j>`` (the BasicBlock ``layer<k>[j]``; capturing it
  returns the block output after the final ReLU, like torchvision's ``layer4[-1]``), inside a block
  ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample_0`` (1x1 conv), ``downsample_1`` (BN); ``fc``.

Semantics kept from torchvision (and where Flax defaults differ):

* Padding is always explicit: torch's ``padding=p`` is ``((p, p), (p, p))``.  Flax's ``'SAME'`` pads
  *asymmetrically* for stride 2 (0 before, 1 after for a 3x3 kernel on even input), which would shift
  every strided conv of a ResNet by one pixel.
* Max-pool 3x3/2 with padding 1 pads with ``-inf`` in both libraries (``nn.max_pool`` uses
  ``reduce_window`` with ``-inf`` init), floor mode.
* ``AdaptiveAvgPool2d`` is reproduced exactly (``adaptive_avg_pool2d``), for any input size.
* VGG's classifier follows a torch NCHW flatten; here the flatten is NHWC and the importer permutes
  ``classifier_0``'s kernel rows instead, so the model stays plain Flax.
* BatchNorm: ``epsilon=1e-5``, Flax ``momentum=0.9`` (= 1 - torch's 0.1), inference mode by default.
  Known difference in *training* mode only: torch updates ``running_var`` with the unbiased batch
  variance, Flax with the biased one.
* Initialisers mirror torchvision's (Kaiming-normal fan-out convs, N(0, 0.01) VGG linears, torch's
  default uniform for ResNet's ``fc``), so training from scratch starts where torchvision would.

Inputs are NHWC float batches ``(B, H, W, 3)``, normalised by the caller (``IMAGENET_MEAN``/``STD``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESNET18_STAGES",
    "VGG16",
    "VGG19",
    "VGG_CFGS",
    "BasicBlock",
    "ResNet18",
    "adaptive_avg_pool2d",
    "vgg_layout",
]

#: Per-channel RGB mean/std torchvision's ImageNet weights expect (inputs scaled to [0, 1] first).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

#: torchvision's VGG configurations: output channels of each 3x3 conv, "M" for a 2x2/2 max-pool.
VGG_CFGS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}

#: ResNet-18 stages: (channels, stride of the first block); two BasicBlocks per stage.
RESNET18_STAGES: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (256, 2), (512, 2))

# torchvision initialisers: kaiming_normal_(mode="fan_out", nonlinearity="relu") for convs,
# N(0, 0.01) for VGG's linears, and torch.nn.Linear's default U(+-1/sqrt(fan_in)) for ResNet's fc.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # untruncated, as torch
_vgg_dense_init = nn.initializers.normal(0.01)
_torch_linear_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _torch_linear_bias_init(fan_in: int) -> Callable[..., jax.Array]:
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


# ----------------------------------------------------------------------------------------------------
# Adaptive average pooling
# ----------------------------------------------------------------------------------------------------


def _adaptive_bins(n_in: int, n_out: int) -> list[tuple[int, int]]:
    """torch's AdaptiveAvgPool bins: start = floor(i*in/out), end = ceil((i+1)*in/out)."""
    return [((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out)]


def _adaptive_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix whose row i averages bin i."""
    m = np.zeros((n_out, n_in), np.float32)
    for i, (s, e) in enumerate(_adaptive_bins(n_in, n_out)):
        m[i, s:e] = 1.0 / (e - s)
    return m


def adaptive_avg_pool2d(x: jax.Array, output_size: int | Sequence[int]) -> jax.Array:
    """``torch.nn.AdaptiveAvgPool2d`` on an NHWC batch ``(B, H, W, C)`` -> ``(B, oh, ow, C)``.

    Bins are torch's (possibly overlapping, possibly repeating when the input is smaller than the
    output).  The cheapest faithful form is chosen statically, because the trace engine and LRP see
    the primitives: identity when the sizes already match (VGG at 224x224), a plain mean for a 1x1
    output (ResNet), a reshape-mean when the size divides evenly, and otherwise two small constant
    averaging matrices (a rectangle's mean is the row-mean of the column-means).
    """
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    oh, ow = (int(s) for s in output_size)
    b, h, w, c = x.shape
    if (h, w) == (oh, ow):
        return x
    if (oh, ow) == (1, 1):
        return jnp.mean(x, axis=(1, 2), keepdims=True)
    if h % oh == 0 and w % ow == 0:
        return jnp.mean(x.reshape(b, oh, h // oh, ow, w // ow, c), axis=(2, 4))
    mh = jnp.asarray(_adaptive_matrix(h, oh), x.dtype)
    mw = jnp.asarray(_adaptive_matrix(w, ow), x.dtype)
    return jnp.einsum("ih,jw,bhwc->bijc", mh, mw, x, precision=jax.lax.Precision.HIGHEST)


# ----------------------------------------------------------------------------------------------------
# VGG
# ----------------------------------------------------------------------------------------------------


def vgg_layout(cfg: Sequence[int | str], batch_norm: bool) -> Iterator[tuple]:
    """Walk torchvision's ``features`` Sequential: yields ``("conv", i, c_in, c_out)``,
    ``("bn", i, c)`` and ``("pool", i)`` with ``i`` the index torchvision gives that module.

    Shared by the Flax module (for its layer names) and the state-dict importer (for its keys), so
    the two can never disagree.
    """
    i, c_in = 0, 3
    for v in cfg:
        if v == "M":
            yield ("pool", i)
            i += 1
            continue
        yield ("conv", i, c_in, int(v))
        i += 1
        if batch_norm:
            yield ("bn", i, int(v))
            i += 1
        i += 1  # the ReLU
        c_in = int(v)


class _VGG(nn.Module):
    """torchvision VGG on NHWC input.  Subclasses set ``CFG``.

    Attributes:
        num_classes: size of the last layer (1000 for ImageNet checkpoints).
        batch_norm: the ``_bn`` variant (BatchNorm after every conv).
        deterministic: dropout off (inference).  Set ``False`` (and pass ``rngs={"dropout": key}``)
            for training or MC dropout.  The call argument of the same name overrides it.
        train: BatchNorm uses batch statistics (needs ``mutable=["batch_stats"]``); only meaningful
            with ``batch_norm=True``.  The call argument of the same name overrides it.
        dropout_rate: torchvision's 0.5.
    """

    num_classes: int = 1000
    batch_norm: bool = False
    deterministic: bool = True
    train: bool = False
    dropout_rate: float = 0.5

    CFG: ClassVar[tuple[int | str, ...]] = ()

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool | None = None, train: bool | None = None) -> jax.Array:
        deterministic = self.deterministic if deterministic is None else deterministic
        train = self.train if train is None else train
        for item in vgg_layout(self.CFG, self.batch_norm):
            if item[0] == "pool":
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            elif item[0] == "conv":
                x = nn.Conv(
                    item[3], (3, 3), padding=((1, 1), (1, 1)), kernel_init=_conv_init, name=f"features_{item[1]}"
                )(x)
                if not self.batch_norm:
                    x = nn.relu(x)
            else:  # bn
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f"features_{item[1]}")(
                    x
                )
                x = nn.relu(x)
        x = adaptive_avg_pool2d(x, (7, 7))
        x = x.reshape(x.shape[0], -1)  # NHWC flatten; the importer permutes classifier_0 to match
        x = nn.relu(nn.Dense(4096, kernel_init=_vgg_dense_init, name="classifier_0")(x))
        x = nn.Dropout(self.dropout_rate, name="classifier_2")(x, deterministic=deterministic)
        x = nn.relu(nn.Dense(4096, kernel_init=_vgg_dense_init, name="classifier_3")(x))
        x = nn.Dropout(self.dropout_rate, name="classifier_5")(x, deterministic=deterministic)
        return nn.Dense(self.num_classes, kernel_init=_vgg_dense_init, name="classifier_6")(x)


class VGG16(_VGG):
    """torchvision ``vgg16`` (``batch_norm=True``: ``vgg16_bn``) on NHWC input ``(B, H, W, 3)``."""

    CFG: ClassVar[tuple[int | str, ...]] = VGG_CFGS["vgg16"]


class VGG19(_VGG):
    """torchvision ``vgg19`` (``batch_norm=True``: ``vgg19_bn``) on NHWC input ``(B, H, W, 3)``."""

    CFG: ClassVar[tuple[int | str, ...]] = VGG_CFGS["vgg19"]


# ----------------------------------------------------------------------------------------------------
# ResNet-18
# ----------------------------------------------------------------------------------------------------


def _bn(name: str, train: bool) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: conv3x3(stride)-BN-ReLU-conv3x3-BN, + shortcut, ReLU.

    The shortcut is a 1x1 strided conv + BN (``downsample_0``/``downsample_1``) when the shape
    changes, the identity otherwise; the addition is a plain ``+``.
    """

    features: int
    strides: int = 1
    downsample: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        s = self.strides
        y = nn.Conv(
            self.features,
            (3, 3),
            strides=(s, s),
            padding=((1, 1), (1, 1)),
            use_bias=False,
            kernel_init=_conv_init,
            name="conv1",
        )(x)
        y = nn.relu(_bn("bn1", train)(y))
        y = nn.Conv(
            self.features, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, kernel_init=_conv_init, name="conv2"
        )(y)
        y = _bn("bn2", train)(y)
        if self.downsample:
            x = nn.Conv(
                self.features,
                (1, 1),
                strides=(s, s),
                padding=((0, 0), (0, 0)),
                use_bias=False,
                kernel_init=_conv_init,
                name="downsample_0",
            )(x)
            x = _bn("downsample_1", train)(x)
        return nn.relu(y + x)


class ResNet18(nn.Module):
    """torchvision ``resnet18`` on NHWC input ``(B, H, W, 3)``.

    Attributes:
        num_classes: size of ``fc`` (1000 for ImageNet checkpoints).
        train: BatchNorm uses batch statistics and updates ``batch_stats`` (pass
            ``mutable=["batch_stats"]``).  Default ``False``: inference with running statistics, which
            is what attribution methods need (an explanation must not depend on the rest of the batch).
            The call argument of the same name overrides it.
    """

    num_classes: int = 1000
    train: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        train = self.train if train is None else train
        x = nn.Conv(
            64, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)), use_bias=False, kernel_init=_conv_init, name="conv1"
        )(x)
        x = nn.relu(_bn("bn1", train)(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        c_in = 64
        for k, (c, s) in enumerate(RESNET18_STAGES, start=1):
            for j in range(2):
                stride = s if j == 0 else 1
                x = BasicBlock(c, stride, downsample=(stride != 1 or c_in != c), name=f"layer{k}_{j}")(x, train)
                c_in = c
        x = jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d((1, 1)) + flatten
        return nn.Dense(
            self.num_classes, kernel_init=_torch_linear_init, bias_init=_torch_linear_bias_init(512), name="fc"
        )(x)
