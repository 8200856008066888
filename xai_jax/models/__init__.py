"""Models: the MNIST zoo (trained checkpoints), checkpoint I/O, and ImageNet architectures.

* :func:`load` / :func:`available`: trained MNIST models by name (``checkpoints/manifest.json``).
* :mod:`xai_jax.models.mnist`: the Linen definitions; :mod:`xai_jax.models.nnx_mnist`: the same in Flax NNX
  (``load(name, api="nnx")``); :mod:`xai_jax.models.losses`: the evidential
  losses (Sensoy et al. 2018); :mod:`xai_jax.models.train`: how the checkpoints were trained.
* :func:`save_checkpoint` / :func:`load_checkpoint`: verified msgpack checkpoints.
* ``VGG16``, ``VGG19``, ``ResNet18`` and :func:`from_torchvision` (torchvision state dicts).
* :mod:`xai_jax.models.transformers` (ViT, token classifier) and :mod:`xai_jax.models.synthetic` (the
  marker task, a ground truth for token explanations, and its shipped model).
"""

from . import checkpoint, imagenet, losses, mnist, nnx_mnist, synthetic, torch_port, zoo
from .checkpoint import load_checkpoint, save_checkpoint
from .imagenet import VGG16, VGG19, ResNet18
from .mnist import (
    CamCNN,
    DCGANDiscriminator,
    DCGANGenerator,
    EvidentialCNN,
    GanDiscriminator,
    GanGenerator,
    MCDropoutCNN,
    MnistCNN,
)
from .torch_port import from_torchvision
from .zoo import available, build, info, load

__all__ = [
    "VGG16",
    "VGG19",
    "CamCNN",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "EvidentialCNN",
    "GanDiscriminator",
    "GanGenerator",
    "MCDropoutCNN",
    "MnistCNN",
    "ResNet18",
    "available",
    "build",
    "checkpoint",
    "from_torchvision",
    "imagenet",
    "info",
    "load",
    "load_checkpoint",
    "losses",
    "mnist",
    "nnx_mnist",
    "save_checkpoint",
    "synthetic",
    "torch_port",
    "zoo",
]
