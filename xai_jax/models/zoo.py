"""The model zoo: trained MNIST models by name.

>>> import xai_jax as xj
>>> model, variables = xj.models.load("mnist_cnn")
>>> logits = model.apply(variables, images)          # images (B, 28, 28, 1) in [0, 1]
>>> nnx_model, _ = xj.models.load("mnist_cnn", api="nnx")   # the same weights as a Flax NNX module
>>> logits = nnx_model(images)

Checkpoints live in the repo's ``checkpoints/`` folder (``$XAI_JAX_CHECKPOINTS`` overrides it),
listed with their test accuracy, training settings and sha256 in ``checkpoints/manifest.json``.
Every load is verified (see :mod:`xai_jax.models.checkpoint`).  Retrain any of them with
:func:`xai_jax.models.train.train` (``xai-jax train NAME``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flax.linen as nn

from ..core.errors import CheckpointError, InputError, UnknownNameError, UnsupportedError, unknown_name_message
from . import mnist, nnx_mnist, transformers
from .checkpoint import (
    CHECKPOINTS_ENV,
    MANIFEST_NAME,
    checkpoints_dir,
    construct,
    load_checkpoint,
    manifest_entry_for,
    read_manifest,
    require_file,
)

__all__ = ["ZOO", "ZooEntry", "available", "build", "info", "load", "names"]


@dataclass(frozen=True)
class ZooEntry:
    """A zoo model: its class, constructor kwargs and what it is."""

    cls: type[nn.Module]
    kwargs: dict[str, Any] = field(default_factory=dict)
    kind: str = "classifier"  # "classifier" | "generator" | "discriminator"
    description: str = ""


ZOO: dict[str, ZooEntry] = {
    "mnist_cnn": ZooEntry(mnist.MnistCNN, {}, "classifier", "general MNIST CNN (4 convs, 2 max-pools, 2 dense)"),
    "cam_cnn": ZooEntry(
        mnist.CamCNN, {}, "classifier", "CAM classifier: 5 convs, 2 max-pools, global average pooling, one dense"
    ),
    "mc_dropout_cnn": ZooEntry(mnist.MCDropoutCNN, {}, "classifier", "CNN with dropout for Monte-Carlo dropout"),
    "evidential_cnn": ZooEntry(mnist.EvidentialCNN, {}, "classifier", "CNN trained with the evidential MSE loss"),
    "mnist_gan_generator": ZooEntry(
        mnist.GanGenerator,
        {"hidden": 256, "depth": 2, "classes": 10},
        "generator",
        "MLP GAN (AC-GAN) generator, z (100) -> image; the digit drawn is argmax(z[:, :10])",
    ),
    "mnist_gan_discriminator": ZooEntry(
        mnist.GanDiscriminator,
        {"hidden": 256, "depth": 2, "classes": 10},
        "discriminator",
        "MLP GAN (AC-GAN) discriminator (real/fake logit; class head with with_classes=True)",
    ),
    "dcgan_generator": ZooEntry(
        mnist.DCGANGenerator,
        {"classes": 10},
        "generator",
        "DCGAN (AC-GAN) generator, z (100) -> image; the digit drawn is argmax(z[:, :10])",
    ),
    "dcgan_discriminator": ZooEntry(
        mnist.DCGANDiscriminator,
        {"classes": 10},
        "discriminator",
        "DCGAN (AC-GAN) discriminator (real/fake logit; class head with with_classes=True)",
    ),
    "mnist_vit": ZooEntry(
        transformers.ViT,
        {"stem": 16},
        "classifier",
        "Vision Transformer: 3x3 conv stem, 7x7 patches (16 tokens + class token), 4 blocks, dim 64, 4 heads",
    ),
}


def names() -> list[str]:
    """Every zoo model name (shipped or not)."""
    return list(ZOO)


def _entry(name: str) -> ZooEntry:
    if not isinstance(name, str) or name not in ZOO:
        raise UnknownNameError(unknown_name_message("model", str(name), ZOO))
    return ZOO[name]


def available() -> list[str]:
    """Names of the zoo models with a checkpoint in the checkpoints folder, in zoo order."""
    directory = checkpoints_dir()
    listed = read_manifest(directory)["models"]
    return [n for n in ZOO if n in listed and (directory / str(listed[n].get("file", ""))).is_file()]


def info(name: str) -> dict[str, Any]:
    """The manifest entry of a shipped model (test accuracy, training settings, sha256...)."""
    _entry(name)
    listed = read_manifest(checkpoints_dir())["models"]
    if name not in listed:
        raise CheckpointError(
            f"no checkpoint for {name!r} in {checkpoints_dir()}; train one with `xai-jax train {name}`"
        )
    return dict(listed[name])


def build(name: str, **kwargs: Any) -> nn.Module:
    """A fresh (untrained) instance of zoo model ``name``; ``kwargs`` override its constructor kwargs."""
    entry = _entry(name)
    return entry.cls(**{**entry.kwargs, **kwargs})


API_CHOICES = ("linen", "nnx")


def load(name: str, path: str | os.PathLike | None = None, *, api: str = "linen") -> tuple[Any, Any]:
    """Load a trained zoo model: ``model, variables = load("mnist_cnn")``.

    Args:
        name: a zoo model name (:func:`available` lists the shipped ones).
        path: a checkpoint file to load instead of the shipped one (e.g. one you trained); it must
            hold variables of the same model.
        api: ``"linen"`` (default) or ``"nnx"``: the same architecture as a Flax NNX module
            (:mod:`xai_jax.models.nnx_mnist`) holding the same weights, converted from the checkpoint.

    Returns:
        ``(model, variables)``: with ``api="linen"`` an unbound Linen module and its full variables
        dict (``params``, ``batch_stats`` if any), ready for ``model.apply(variables, x)``; with
        ``api="nnx"`` an ``nnx.Module`` in inference mode (``model.eval()``: BatchNorm on running
        averages, dropout off) and ``None``, so ``xj.gradient(model, variables, x)`` reads the same
        for both.

    Example:
        >>> model, variables = load("mnist_cnn", api="nnx")
        >>> type(model).__module__, variables
        ('xai_jax.models.nnx_mnist', None)

    Raises:
        UnknownNameError: ``name`` is not a zoo model (the message lists the known names).
        CheckpointError: missing, corrupt or mismatched checkpoint file (including one its manifest
            lists under another model name).
    """
    entry = _entry(name)
    if api not in API_CHOICES:
        raise InputError(f"api must be one of {API_CHOICES}; got {api!r}.")
    directory = checkpoints_dir()
    listed = read_manifest(directory)["models"].get(name)
    where = f"manifest {directory / MANIFEST_NAME}, entry {name!r}"
    kwargs = dict(entry.kwargs)
    if listed is not None:
        if not isinstance(listed, Mapping):
            raise CheckpointError(
                f"{where}: expected a mapping (file, class, kwargs, sha256...), got {type(listed).__name__}"
            )
        if listed.get("class", entry.cls.__name__) != entry.cls.__name__:
            raise CheckpointError(
                f"manifest entry {name!r} names class {listed.get('class')!r}, but the zoo's {name!r} is "
                f"{entry.cls.__name__}"
            )
        stored = listed.get("kwargs") or {}
        if not isinstance(stored, Mapping):
            raise CheckpointError(f"{where}: 'kwargs' must be a mapping of argument names, got {stored!r}")
        kwargs.update(stored)
    model = construct(entry.cls, kwargs, where)
    if path is None:
        file = (listed or {}).get("file", f"{name}.msgpack")
        path = directory / file
        if not Path(path).is_file():
            raise CheckpointError(
                f"no checkpoint for {name!r}: {path} does not exist. Shipped: {', '.join(available()) or '(none)'}; "
                f"train it with `xai-jax train {name}` (writes ./xai_jax_checkpoints/{name}.msgpack) and load it with "
                f"path=..., or point ${CHECKPOINTS_ENV} at a folder that has it"
            )
    else:
        path = Path(path)
        require_file(path)  # before reading the manifest beside it: a directory's "beside" is its parent
        _check_listed_as(name, path)
    variables = load_checkpoint(path, model)
    if api == "nnx":
        return _as_nnx(model, variables), None
    return model, variables


def _as_nnx(model: nn.Module, variables: Any) -> Any:
    """The NNX twin of a loaded Linen zoo model, with its weights, in inference mode."""
    factory = nnx_mnist.NNX_CLASSES.get(type(model).__name__)
    if factory is None:
        with_nnx = ", ".join(n for n, e in ZOO.items() if e.cls.__name__ in nnx_mnist.NNX_CLASSES)
        raise UnsupportedError(
            f"{type(model).__name__} has no Flax NNX version in the zoo yet; load it with api='linen' "
            f"(NNX versions exist for {with_nnx})."
        )
    fields = {f: getattr(model, f) for f in _init_fields(model)}
    nnx_model = nnx_mnist.from_linen(nnx_mnist.build(factory, **fields), variables)
    nnx_model.eval()  # our own fresh object: BatchNorm on running averages, dropout off
    return nnx_model


def _init_fields(model: nn.Module) -> list[str]:
    """Constructor fields of a Linen zoo model that differ from the class default (passed on to
    the NNX twin, whose constructor takes the same names)."""
    return [
        f.name
        for f in dataclasses.fields(model)
        if f.init and f.name not in ("parent", "name") and getattr(model, f.name) != f.default
    ]


def _check_listed_as(name: str, path: Path) -> None:
    """Refuse a file that the manifest beside it lists under another model's name.  The MNIST
    classifiers share one parameter tree, so the structure check alone would take an
    ``evidential_cnn`` file as a ``mnist_cnn`` (a file with no manifest cannot be told apart)."""
    listed = manifest_entry_for(path)
    if listed is not None and listed[0] != name and listed[0] in ZOO:
        raise CheckpointError(
            f"checkpoint {path} is the {listed[0]!r} model's (per {path.parent / MANIFEST_NAME}), not {name!r}; "
            f"load it with xj.models.load({listed[0]!r}, path=...)"
        )
