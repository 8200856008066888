"""Flax/PyTorch twin models with identical weights, for every cross-check against a PyTorch reference.

Why one module: Captum, Zennit and pytorch-grad-cam only run on PyTorch models, so each comparison
needs the *same* network on both sides.  Building twins here, once, keeps the layout conversions
(NHWC/NCHW, flatten order, BatchNorm) in one tested place instead of one copy per test file.

Usage::

    from tests import twins

    model, variables, tmodel = twins.make_tiny_cnn(seed=0)
    x = twins.random_input(model, batch=8)              # NHWC numpy float32
    y_flax = model.apply(variables, x)
    y_torch = tmodel(twins.to_torch(x))                 # NCHW tensor in, logits out
    twins.torch_layer(tmodel, "conv2")                  # torch submodule twin of Flax layer "conv2"

Every ``make_*`` returns a :class:`Twin` (a 3-tuple ``(flax_model, variables, torch_model)``; it also
has ``.layer_map``).  Weights are drawn in Flax (biases and BatchNorm statistics made non-trivial on
purpose, so a test cannot pass by a zero bias or identity BN) and ported to torch with
``xai_jax.models.torch_port``.  Each Flax class has ``LAYER_MAP`` (Flax layer name -> torch submodule
path, ``model.get_submodule(path)``) and ``INPUT_SHAPE`` (one sample, NHWC).

Reference quirks built in (DESIGN.md §2, §7):

* every ReLU use in a torch twin is its own ``nn.ReLU`` instance (Captum's GuidedBackprop/DeepLift
  hook modules, and a module used twice breaks them);
* between a ReLU and a following MaxPool sits a :class:`Clone` module (``z.clone()``), otherwise
  Captum's DeepLift silently drops its max-pool rule;
* residual additions go through ``zennit.layer.Sum`` (stacked on the last axis) so Zennit sees them;
* torch flattens C, H, W: Dense layers after a Flax NHWC flatten have their rows permuted.

Torch is imported lazily (only ``make_*``/``to_torch`` need it), so importing this module is cheap.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from tests import torch_export as te
from xai_jax.models import torch_port as tp

__all__ = [
    "TWINS",
    "NCHWFlattenNet",
    "ResBNNet",
    "TinyCNN",
    "Twin",
    "VGGLikeAvgPool",
    "clone_module_type",
    "make",
    "make_nchw_flatten_net",
    "make_res_bn_net",
    "make_tiny_cnn",
    "make_vgg_like_avg_pool",
    "random_input",
    "to_numpy",
    "to_numpy_nhwc",
    "to_torch",
    "torch_layer",
]

_PAD1 = ((1, 1), (1, 1))  # torch padding=1; always explicit (Flax 'SAME' differs for strided convs)


# ----------------------------------------------------------------------------------------------------
# Layout helpers
# ----------------------------------------------------------------------------------------------------


def to_torch(x_nhwc: Any, *, requires_grad: bool = False):
    """NHWC batch (NumPy/JAX) -> float32 NCHW ``torch.Tensor`` (a fresh copy)."""
    import torch

    x = np.asarray(x_nhwc, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"to_torch expects an NHWC batch (B, H, W, C), got shape {x.shape}")
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)).copy())
    return t.requires_grad_(requires_grad)


def to_numpy(t: Any) -> np.ndarray:
    """Any torch tensor (grad, device) or array -> NumPy, layout unchanged."""
    return tp.to_numpy(t)


def to_numpy_nhwc(t: Any) -> np.ndarray:
    """NCHW torch tensor (an attribution map, an activation) -> NHWC NumPy array."""
    a = tp.to_numpy(t)
    if a.ndim != 4:
        raise ValueError(f"to_numpy_nhwc expects an NCHW tensor, got shape {a.shape}")
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def random_input(model: nn.Module | type, batch: int = 8, seed: int = 0) -> np.ndarray:
    """A standard-normal NHWC float32 batch of the model's ``INPUT_SHAPE``."""
    shape = (batch, *model.INPUT_SHAPE)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def clone_module_type() -> type:
    """The torch ``Clone`` module class (``forward: z.clone()``) the twins put before each MaxPool."""
    return _torch_modules()[1]


def torch_layer(torch_model, flax_name: str):
    """The torch submodule twin of the Flax layer ``flax_name`` (per the model's layer map)."""
    return torch_model.get_submodule(torch_model.layer_map[flax_name])


class Twin(NamedTuple):
    """``(flax_model, variables, torch_model)``; unpacks as a 3-tuple."""

    flax_model: nn.Module
    variables: dict
    torch_model: Any

    @property
    def layer_map(self) -> dict[str, str]:
        """Flax layer name -> torch submodule path."""
        return dict(type(self.flax_model).LAYER_MAP)


@functools.cache
def _torch_modules():
    """torch-side building blocks, defined lazily (importing this file needs no torch) and once (so
    ``isinstance(m, twins.clone_module_type())`` holds across twins)."""
    import torch

    class Clone(torch.nn.Module):
        """Identity that copies: placed between a ReLU and a MaxPool for Captum's DeepLift."""

        def forward(self, z):
            return z.clone()

    class PlainSum(torch.nn.Module):
        """Fallback for ``zennit.layer.Sum``: sum of a stack along ``dim``."""

        def __init__(self, dim: int = -1):
            super().__init__()
            self.dim = dim

        def forward(self, z):
            return torch.sum(z, dim=self.dim)

    return torch, Clone, PlainSum


def _sum_module():
    _, _, plain_sum = _torch_modules()
    try:
        from zennit.layer import Sum
    except ImportError:  # zennit not installed: same forward, just not recognised by Zennit
        return plain_sum()
    return Sum()


# ----------------------------------------------------------------------------------------------------
# Weight drawing and porting
# ----------------------------------------------------------------------------------------------------


def _init(model: nn.Module, seed: int, *, zero_bias: bool = False) -> dict:
    """Variables of ``model`` drawn with NumPy: kernels N(0, 1/fan_in) (Flax's LeCun scale, untruncated),
    biases N(0, 0.1), BatchNorm scale U(0.5, 1.5), bias N(0, 0.1), mean N(0, 0.2), var U(0.5, 1.5).

    Non-trivial biases and BN statistics are on purpose: a test must not pass thanks to a zero bias
    or an identity BN.  NumPy instead of ``model.init``: jaxlib 0.10's XLA:CPU needs ~1.5 s to
    compile each ``jax.random.normal``, which made building a 4-layer twin take ~10 s.  Only shapes
    come from Flax (``jax.eval_shape``), so the tree always matches ``model.init``'s.
    """
    x = jax.ShapeDtypeStruct((1, *model.INPUT_SHAPE), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        names = [getattr(p, "key", str(p)) for p in path]
        coll, leaf_name = names[0], names[-1]
        is_bn = len(names) >= 2 and names[-2].startswith("bn")
        shape = leaf.shape
        if coll == "batch_stats":
            if leaf_name == "mean":
                return rng.normal(0.0, 0.2, shape)
            return rng.uniform(0.5, 1.5, shape)  # var
        if leaf_name == "kernel":
            return rng.normal(0.0, 1.0, shape) / np.sqrt(np.prod(shape[:-1]))
        if leaf_name == "scale":
            return rng.uniform(0.5, 1.5, shape)
        if leaf_name == "bias":
            if zero_bias and not is_bn:
                return np.zeros(shape)
            return rng.normal(0.0, 0.1, shape)
        raise ValueError(f"twins._init: no rule for variable {'/'.join(names)}")

    variables = jax.tree_util.tree_map_with_path(draw, shapes)
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), variables)


def _get(tree: dict, path: str) -> dict:
    for p in path.split("/"):
        tree = tree[p]
    return tree


def _port(variables: dict, entries: list[tuple[str, str, str, Any]]) -> dict:
    """Torch state dict (tensors) from Flax ``variables``.

    ``entries``: ``(flax path, torch prefix, kind, extra)`` with kind ``conv``, ``dense``,
    ``dense_flatten`` (extra = the (C, H, W) being flattened by torch) or ``bn``.
    """
    import torch

    sd: dict[str, Any] = {}
    params, stats = variables["params"], variables.get("batch_stats", {})
    for fpath, tpre, kind, extra in entries:
        p = _get(params, fpath)
        if kind == "bn":
            for k, v in te.batchnorm_to_torch(p, _get(stats, fpath)).items():
                sd[f"{tpre}.{k}"] = v
            continue
        if kind == "conv":
            sd[f"{tpre}.weight"] = te.conv_kernel_to_torch(p["kernel"])
        elif kind == "dense":
            sd[f"{tpre}.weight"] = te.dense_kernel_to_torch(p["kernel"])
        elif kind == "dense_flatten":
            sd[f"{tpre}.weight"] = te.dense_kernel_to_torch_after_flatten(p["kernel"], extra)
        else:
            raise ValueError(kind)
        if "bias" in p:
            sd[f"{tpre}.bias"] = tp.to_numpy(p["bias"])
    return {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in sd.items()}


def _finish(torch_model, state_dict: dict, layer_map: dict[str, str]):
    """Load weights strictly (every torch parameter/buffer must be set), eval mode, float32."""
    torch_model.load_state_dict(state_dict, strict=True)
    torch_model.float().eval()  # parameters keep requires_grad: pytorch-grad-cam needs a graph
    torch_model.layer_map = dict(layer_map)
    return torch_model


# ----------------------------------------------------------------------------------------------------
# TinyCNN
# ----------------------------------------------------------------------------------------------------


class TinyCNN(nn.Module):
    """conv(8)-relu-maxpool2-conv(16)-relu-maxpool2-flatten-dense(32)-relu-dense(10) on (B, 28, 28, 1).

    3x3 convs with padding 1; the flatten is Flax's NHWC one (the torch twin's fc1 rows are permuted).
    """

    num_classes: int = 10
    INPUT_SHAPE: ClassVar[tuple[int, ...]] = (28, 28, 1)
    LAYER_MAP: ClassVar[dict[str, str]] = {
        "conv1": "conv1",
        "conv2": "conv2",
        "conv2+relu": "relu2",
        "fc1": "fc1",
        "fc2": "fc2",
    }

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(8, (3, 3), padding=_PAD1, name="conv1")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(16, (3, 3), padding=_PAD1, name="conv2")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(32, name="fc1")(x))
        return nn.Dense(self.num_classes, name="fc2")(x)


def make_tiny_cnn(seed: int = 0, *, zero_bias: bool = False) -> Twin:
    """:class:`TinyCNN` and its torch twin (a named ``nn.Sequential``: conv1, relu1, clone1, pool1,
    conv2, relu2, clone2, pool2, flatten, fc1, relu3, fc2)."""
    model = TinyCNN()
    variables = _init(model, seed, zero_bias=zero_bias)
    torch, Clone, _ = _torch_modules()
    tnn = torch.nn
    tmodel = tnn.Sequential(
        OrderedDict(
            [
                ("conv1", tnn.Conv2d(1, 8, 3, padding=1)),
                ("relu1", tnn.ReLU()),
                ("clone1", Clone()),
                ("pool1", tnn.MaxPool2d(2)),
                ("conv2", tnn.Conv2d(8, 16, 3, padding=1)),
                ("relu2", tnn.ReLU()),
                ("clone2", Clone()),
                ("pool2", tnn.MaxPool2d(2)),
                ("flatten", tnn.Flatten()),
                ("fc1", tnn.Linear(16 * 7 * 7, 32)),
                ("relu3", tnn.ReLU()),
                ("fc2", tnn.Linear(32, model.num_classes)),
            ]
        )
    )
    sd = _port(
        variables,
        [
            ("conv1", "conv1", "conv", None),
            ("conv2", "conv2", "conv", None),
            ("fc1", "fc1", "dense_flatten", (16, 7, 7)),
            ("fc2", "fc2", "dense", None),
        ],
    )
    return Twin(model, variables, _finish(tmodel, sd, model.LAYER_MAP))


# ----------------------------------------------------------------------------------------------------
# ResBNNet
# ----------------------------------------------------------------------------------------------------


class _ResBlock(nn.Module):
    """conv-BN-relu-conv-BN, + identity, relu (inline ``nn.relu`` and ``+``)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.Conv(self.features, (3, 3), padding=_PAD1, use_bias=False, name="conv1")(x)
        y = nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-5, name="bn1")(y))
        y = nn.Conv(self.features, (3, 3), padding=_PAD1, use_bias=False, name="conv2")(y)
        y = nn.BatchNorm(use_running_average=True, epsilon=1e-5, name="bn2")(y)
        return nn.relu(y + x)


class ResBNNet(nn.Module):
    """conv(8, with bias)-BN-relu, one residual block (bias-free convs, BN), global average pool,
    dense(10), on (B, 16, 16, 3).  BatchNorm in inference mode (running statistics).

    Layer ``block`` is the residual block; capturing it gives its output after the final ReLU.
    """

    num_classes: int = 10
    INPUT_SHAPE: ClassVar[tuple[int, ...]] = (16, 16, 3)
    LAYER_MAP: ClassVar[dict[str, str]] = {
        "conv1": "conv1",
        "bn1": "bn1",
        "bn1+relu": "relu1",
        "block": "block",
        "block/conv1": "block.conv1",
        "block/bn1": "block.bn1",
        "block/bn1+relu": "block.relu1",
        "block/conv2": "block.conv2",
        "block/bn2": "block.bn2",
        "fc": "fc",
    }

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(8, (3, 3), padding=_PAD1, name="conv1")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-5, name="bn1")(x))
        x = _ResBlock(8, name="block")(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="fc")(x)


def make_res_bn_net(seed: int = 0, *, zero_bias: bool = False) -> Twin:
    """:class:`ResBNNet` and its torch twin (``conv1, bn1, relu1, block{conv1, bn1, relu1, conv2, bn2,
    sum, relu2}, pool, flatten, fc``; the residual ``+`` is ``zennit.layer.Sum`` on a stack)."""
    model = ResBNNet()
    variables = _init(model, seed, zero_bias=zero_bias)
    torch, _, _ = _torch_modules()
    tnn = torch.nn

    class TorchResBlock(tnn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.conv1 = tnn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = tnn.BatchNorm2d(c, eps=1e-5)
            self.relu1 = tnn.ReLU()
            self.conv2 = tnn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = tnn.BatchNorm2d(c, eps=1e-5)
            self.sum = _sum_module()
            self.relu2 = tnn.ReLU()

        def forward(self, x):
            y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
            return self.relu2(self.sum(torch.stack([y, x], dim=-1)))

    class TorchResBNNet(tnn.Module):
        def __init__(self, c_in: int, c: int, n_out: int):
            super().__init__()
            self.conv1 = tnn.Conv2d(c_in, c, 3, padding=1)
            self.bn1 = tnn.BatchNorm2d(c, eps=1e-5)
            self.relu1 = tnn.ReLU()
            self.block = TorchResBlock(c)
            self.pool = tnn.AdaptiveAvgPool2d(1)
            self.flatten = tnn.Flatten()
            self.fc = tnn.Linear(c, n_out)

        def forward(self, x):
            x = self.block(self.relu1(self.bn1(self.conv1(x))))
            return self.fc(self.flatten(self.pool(x)))

    tmodel = TorchResBNNet(model.INPUT_SHAPE[-1], 8, model.num_classes)
    sd = _port(
        variables,
        [
            ("conv1", "conv1", "conv", None),
            ("bn1", "bn1", "bn", None),
            ("block/conv1", "block.conv1", "conv", None),
            ("block/bn1", "block.bn1", "bn", None),
            ("block/conv2", "block.conv2", "conv", None),
            ("block/bn2", "block.bn2", "bn", None),
            ("fc", "fc", "dense", None),
        ],
    )
    # BN buffers torch tracks but Flax has no use for
    for name, buf in tmodel.state_dict().items():
        if name.endswith("num_batches_tracked"):
            sd[name] = buf
    return Twin(model, variables, _finish(tmodel, sd, model.LAYER_MAP))


# ----------------------------------------------------------------------------------------------------
# NCHWFlattenNet
# ----------------------------------------------------------------------------------------------------


class NCHWFlattenNet(nn.Module):
    """conv(4)-relu-conv(6, stride 2)-relu, then a *torch-style* NCHW flatten
    (``x.transpose(0, 3, 1, 2).reshape(B, -1)``), dense(16)-relu-dense(10), on (B, 12, 10, 3).

    A model ported by hand from PyTorch often looks like this; its Dense kernels are torch's
    transposed, with no row permutation.  Non-square input catches H/W mix-ups.
    """

    num_classes: int = 10
    INPUT_SHAPE: ClassVar[tuple[int, ...]] = (12, 10, 3)
    LAYER_MAP: ClassVar[dict[str, str]] = {
        "conv1": "conv1",
        "conv2": "conv2",
        "conv2+relu": "relu2",
        "fc1": "fc1",
        "fc2": "fc2",
    }

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(4, (3, 3), padding=_PAD1, name="conv1")(x))
        x = nn.relu(nn.Conv(6, (3, 3), strides=(2, 2), padding=_PAD1, name="conv2")(x))
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(16, name="fc1")(x))
        return nn.Dense(self.num_classes, name="fc2")(x)


def make_nchw_flatten_net(seed: int = 0, *, zero_bias: bool = False) -> Twin:
    """:class:`NCHWFlattenNet` and its torch twin (``nn.Sequential``: conv1, relu1, conv2, relu2,
    flatten, fc1, relu3, fc2)."""
    model = NCHWFlattenNet()
    variables = _init(model, seed, zero_bias=zero_bias)
    torch, _, _ = _torch_modules()
    tnn = torch.nn
    tmodel = tnn.Sequential(
        OrderedDict(
            [
                ("conv1", tnn.Conv2d(3, 4, 3, padding=1)),
                ("relu1", tnn.ReLU()),
                ("conv2", tnn.Conv2d(4, 6, 3, stride=2, padding=1)),
                ("relu2", tnn.ReLU()),
                ("flatten", tnn.Flatten()),
                ("fc1", tnn.Linear(6 * 6 * 5, 16)),
                ("relu3", tnn.ReLU()),
                ("fc2", tnn.Linear(16, model.num_classes)),
            ]
        )
    )
    sd = _port(
        variables,
        [
            ("conv1", "conv1", "conv", None),
            ("conv2", "conv2", "conv", None),
            ("fc1", "fc1", "dense", None),
            ("fc2", "fc2", "dense", None),
        ],
    )
    return Twin(model, variables, _finish(tmodel, sd, model.LAYER_MAP))


# ----------------------------------------------------------------------------------------------------
# VGGLikeAvgPool
# ----------------------------------------------------------------------------------------------------


class VGGLikeAvgPool(nn.Module):
    """conv(8)-relu-conv(8)-relu-avgpool2-conv(16)-relu-avgpool2-flatten-dense(32)-relu-dense(10) on
    (B, 16, 16, 3): a small VGG-style stack with *average* pooling, for LRP rules on pooling layers."""

    num_classes: int = 10
    INPUT_SHAPE: ClassVar[tuple[int, ...]] = (16, 16, 3)
    LAYER_MAP: ClassVar[dict[str, str]] = {
        "conv1": "conv1",
        "conv2": "conv2",
        "conv3": "conv3",
        "fc1": "fc1",
        "fc2": "fc2",
    }

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(8, (3, 3), padding=_PAD1, name="conv1")(x))
        x = nn.relu(nn.Conv(8, (3, 3), padding=_PAD1, name="conv2")(x))
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(16, (3, 3), padding=_PAD1, name="conv3")(x))
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(32, name="fc1")(x))
        return nn.Dense(self.num_classes, name="fc2")(x)


def make_vgg_like_avg_pool(seed: int = 0, *, zero_bias: bool = False) -> Twin:
    """:class:`VGGLikeAvgPool` and its torch twin (``nn.Sequential``: conv1, relu1, conv2, relu2,
    pool1 (AvgPool2d), conv3, relu3, pool2, flatten, fc1, relu4, fc2)."""
    model = VGGLikeAvgPool()
    variables = _init(model, seed, zero_bias=zero_bias)
    torch, _, _ = _torch_modules()
    tnn = torch.nn
    tmodel = tnn.Sequential(
        OrderedDict(
            [
                ("conv1", tnn.Conv2d(3, 8, 3, padding=1)),
                ("relu1", tnn.ReLU()),
                ("conv2", tnn.Conv2d(8, 8, 3, padding=1)),
                ("relu2", tnn.ReLU()),
                ("pool1", tnn.AvgPool2d(2)),
                ("conv3", tnn.Conv2d(8, 16, 3, padding=1)),
                ("relu3", tnn.ReLU()),
                ("pool2", tnn.AvgPool2d(2)),
                ("flatten", tnn.Flatten()),
                ("fc1", tnn.Linear(16 * 4 * 4, 32)),
                ("relu4", tnn.ReLU()),
                ("fc2", tnn.Linear(32, model.num_classes)),
            ]
        )
    )
    sd = _port(
        variables,
        [
            ("conv1", "conv1", "conv", None),
            ("conv2", "conv2", "conv", None),
            ("conv3", "conv3", "conv", None),
            ("fc1", "fc1", "dense_flatten", (16, 4, 4)),
            ("fc2", "fc2", "dense", None),
        ],
    )
    return Twin(model, variables, _finish(tmodel, sd, model.LAYER_MAP))


# ----------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------

TWINS: dict[str, Callable[..., Twin]] = {
    "TinyCNN": make_tiny_cnn,
    "ResBNNet": make_res_bn_net,
    "NCHWFlattenNet": make_nchw_flatten_net,
    "VGGLikeAvgPool": make_vgg_like_avg_pool,
}


def make(name: str, seed: int = 0, **kwargs: Any) -> Twin:
    """``TWINS[name](seed, **kwargs)``, so tests can be parametrized over twin names."""
    return TWINS[name](seed, **kwargs)


# ----------------------------------------------------------------------------------------------------
# The shipped MNIST CNN (xai_jax.models.MnistCNN), for benchmarks and checks on trained weights
# ----------------------------------------------------------------------------------------------------


def mnist_cnn_torch(variables: dict):
    """Torch twin of :class:`xai_jax.models.mnist.MnistCNN` with ``variables`` ported (its convs are
    3x3 'SAME' = torch padding 1; fc1 follows an NHWC flatten of (7, 7, 64))."""
    torch, Clone, _ = _torch_modules()
    tnn = torch.nn
    tmodel = tnn.Sequential(
        OrderedDict(
            [
                ("conv1", tnn.Conv2d(1, 32, 3, padding=1)),
                ("relu1", tnn.ReLU()),
                ("conv2", tnn.Conv2d(32, 32, 3, padding=1)),
                ("relu2", tnn.ReLU()),
                ("clone2", Clone()),
                ("pool1", tnn.MaxPool2d(2)),
                ("conv3", tnn.Conv2d(32, 64, 3, padding=1)),
                ("relu3", tnn.ReLU()),
                ("conv4", tnn.Conv2d(64, 64, 3, padding=1)),
                ("relu4", tnn.ReLU()),
                ("clone4", Clone()),
                ("pool2", tnn.MaxPool2d(2)),
                ("flatten", tnn.Flatten()),
                ("fc1", tnn.Linear(64 * 7 * 7, 128)),
                ("relu5", tnn.ReLU()),
                ("fc2", tnn.Linear(128, 10)),
            ]
        )
    )
    sd = _port(
        variables,
        [
            ("conv1", "conv1", "conv", None),
            ("conv2", "conv2", "conv", None),
            ("conv3", "conv3", "conv", None),
            ("conv4", "conv4", "conv", None),
            ("fc1", "fc1", "dense_flatten", (64, 7, 7)),
            ("fc2", "fc2", "dense", None),
        ],
    )
    layer_map = {name: name for name in ("conv1", "conv2", "conv3", "conv4", "fc1", "fc2")}
    return _finish(tmodel, sd, layer_map)
