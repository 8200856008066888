"""torchvision state dict -> from_torchvision -> our Flax VGG/ResNet: the same logits.

Randomly initialised torchvision models (nothing downloaded), with non-zero biases and random
BatchNorm statistics so that a wrong BN mapping or a dropped bias cannot pass.  Sizes are small
(CPU), and include sizes where torch's AdaptiveAvgPool2d has uneven or repeated bins.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from xai_jax.core.errors import CheckpointError, UnknownNameError
from xai_jax.models.imagenet import VGG16, VGG19, ResNet18
from xai_jax.models.torch_port import from_torchvision

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

pytestmark = pytest.mark.torch


def _randomize(model, seed: int):
    """Non-trivial biases and BN parameters/statistics (torchvision initialises them to 0/1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
    return model.eval()


def _build(arch: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return _randomize(getattr(torchvision.models, arch)(weights=None, **kw), seed)


def _compare(flax_model, variables, tmodel, hw, seed=0):
    x = np.random.default_rng(seed).standard_normal((2, *hw, 3)).astype(np.float32)
    y = np.asarray(jax.jit(flax_model.apply)(variables, x))
    with torch.no_grad():
        yt = tmodel(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    assert y.shape == yt.shape
    rel = float(np.abs(y - yt).max() / np.abs(yt).max())
    return rel


def _same_tree(flax_model, variables):
    shapes = jax.eval_shape(flax_model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 32, 32, 3), np.float32))
    assert jax.tree.structure(shapes) == jax.tree.structure(variables)
    for a, b in zip(jax.tree.leaves(shapes), jax.tree.leaves(variables)):
        assert a.shape == b.shape and b.dtype == np.float32


@pytest.fixture(scope="module")
def resnet18():
    tmodel = _build("resnet18")
    return tmodel, from_torchvision("resnet18", tmodel.state_dict())


@pytest.mark.parametrize("hw", [(64, 64), (50, 37)])
def test_resnet18_logits(resnet18, hw):
    tmodel, variables = resnet18
    model = ResNet18()
    _same_tree(model, variables)
    assert _compare(model, variables, tmodel, hw) < 1e-4


def test_resnet18_from_numpy_state_dict(resnet18):
    """Torch is optional: a state dict of NumPy arrays (e.g. from an .npz) gives the same variables."""
    tmodel, variables = resnet18
    sd = {k: v.numpy() for k, v in tmodel.state_dict().items() if not k.endswith("num_batches_tracked")}
    again = from_torchvision("resnet18", sd)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture(scope="module")
def vgg16():
    tmodel = _build("vgg16")
    return tmodel, from_torchvision("vgg16", tmodel.state_dict())


# 64 -> 2x2 features (uneven 7x7 bins); 50x37 -> 1x1 (every bin repeats it); 112x80 -> 3x2.
@pytest.mark.parametrize("hw", [(64, 64), (50, 37), (112, 80)])
def test_vgg16_logits(vgg16, hw):
    tmodel, variables = vgg16
    model = VGG16()
    if hw == (64, 64):
        _same_tree(model, variables)
    assert _compare(model, variables, tmodel, hw) < 1e-4


def test_vgg16_dropout_flag(vgg16):
    """Dropout is off by default (inference) and on with ``deterministic=False`` and a dropout key."""
    _, variables = vgg16
    model = VGG16()
    x = np.random.default_rng(0).standard_normal((1, 32, 32, 3)).astype(np.float32)
    apply = jax.jit(model.apply, static_argnames="deterministic")
    y1 = apply(variables, x)
    assert np.array_equal(y1, apply(variables, x))
    y2 = apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(y1, y2)


@pytest.mark.slow
def test_vgg16_bn_logits_and_num_classes():
    tmodel = _build("vgg16_bn", num_classes=10)
    variables = from_torchvision("vgg16_bn", tmodel.state_dict())  # num_classes read from the dict
    model = VGG16(num_classes=10, batch_norm=True)
    _same_tree(model, variables)
    assert _compare(model, variables, tmodel, (64, 64)) < 1e-4


@pytest.mark.slow
def test_vgg19_logits():
    tmodel = _build("vgg19")
    variables = from_torchvision("vgg19", tmodel.state_dict())
    model = VGG19()
    _same_tree(model, variables)
    assert _compare(model, variables, tmodel, (64, 64)) < 1e-4


# ---------------------------------------------------------------------------------------------------
# State-dict errors
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet_sd(resnet18):
    return dict(resnet18[0].state_dict())


def test_missing_key(resnet_sd):
    sd = dict(resnet_sd)
    del sd["layer3.0.downsample.1.running_var"]
    with pytest.raises(CheckpointError, match=r"Missing keys \(1\): 'layer3.0.downsample.1.running_var'"):
        from_torchvision("resnet18", sd)


def test_unexpected_key(resnet_sd):
    sd = dict(resnet_sd, **{"layer5.0.conv1.weight": np.zeros((1,))})
    with pytest.raises(CheckpointError, match=r"Unexpected keys \(1\): 'layer5.0.conv1.weight'"):
        from_torchvision("resnet18", sd)


def test_shape_mismatch(resnet_sd):
    sd = dict(resnet_sd)
    sd["layer1.0.conv2.weight"] = sd["layer1.0.conv2.weight"][:, :32]
    msg = r"layer1.0.conv2.weight: got \(64, 32, 3, 3\), expected \(64, 64, 3, 3\)"
    with pytest.raises(CheckpointError, match=msg):
        from_torchvision("resnet18", sd)


def test_num_classes_mismatch(resnet_sd):
    with pytest.raises(CheckpointError, match=r"fc.weight: got \(1000, 512\), expected \(10, 512\)"):
        from_torchvision("resnet18", resnet_sd, num_classes=10)


def test_data_parallel_prefix_hint(resnet_sd):
    sd = {f"module.{k}": v for k, v in resnet_sd.items()}
    with pytest.raises(CheckpointError, match="module."):
        from_torchvision("resnet18", sd)


def test_wrong_architecture(resnet_sd):
    with pytest.raises(CheckpointError) as info:
        from_torchvision("vgg16", resnet_sd)
    msg = str(info.value)
    assert "Missing keys (32)" in msg and "'features.0.weight'" in msg
    assert "Unexpected keys (122)" in msg and "'conv1.weight'" in msg and "more)" in msg
    assert isinstance(info.value, ValueError)


def test_unknown_arch(resnet_sd):
    with pytest.raises(UnknownNameError, match="resnet18"):
        from_torchvision("resnet81", resnet_sd)


def test_not_a_mapping():
    with pytest.raises(CheckpointError, match="mapping"):
        from_torchvision("resnet18", [("conv1.weight", np.zeros(1))])
