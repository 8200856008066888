"""Models: the MNIST zoo (trained checkpoints), checkpoint I/O, and ImageNet architectures.

* :func:`load` / :func:`available`: trained MNIST models by name (``checkpoints/manifest.json``).
* :mod:`xai_jax.models.mnist`: the Linen definitions; :mod:`xai_jax.models.losses`: the evidential
  losses (Sensoy et al. 2018); :mod:`xai_jax.models.train`: how the checkpoints were trained.
* :func:`save_checkpoint` / :func:`load_checkpoint`: verified msgpack checkpoints.
* ``VGG16``, ``VGG19``, ``ResNet18`` and :func:`from_torchvision` (torchvision state dicts).
"""

from . import checkpoint, losses, mnist, zoo
from .checkpoint import load_checkpoint, save_checkpoint
from .mnist import (
    CamCNN, DCGANDiscriminator, DCGANGenerator, EvidentialCNN, GanDiscriminator, GanGenerator, MCDropoutCNN,
    MnistCNN,
)
from .zoo import available, build, info, load

__all__ = [
    "CamCNN", "DCGANDiscriminator", "DCGANGenerator", "EvidentialCNN", "GanDiscriminator", "GanGenerator",
    "MCDropoutCNN", "MnistCNN", "available", "build", "checkpoint", "info", "load", "load_checkpoint", "losses",
    "mnist", "save_checkpoint", "zoo",
]

try:  # ImageNet architectures (written separately; optional until present)
    from .imagenet import VGG16, VGG19, ResNet18
except ImportError:  # pragma: no cover
    pass
else:
    __all__ += ["VGG16", "VGG19", "ResNet18"]

try:
    from .torch_port import from_torchvision
except ImportError:  # pragma: no cover
    pass
else:
    __all__ += ["from_torchvision"]
