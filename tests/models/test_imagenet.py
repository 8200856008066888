"""The Flax ImageNet architectures without torchvision: adaptive pooling, flags, layer names."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xai_jax.models.imagenet import VGG_CFGS, ResNet18, adaptive_avg_pool2d, vgg_layout


def _np_variables(model, hw=(32, 32), seed=0):
    """Random variables from NumPy (He-scaled kernels, BN stats 0/1): a jitted ``model.init`` of VGG-16
    takes ~20 s to compile on XLA:CPU (one ``random.normal`` per layer), this takes under a second."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return rng.standard_normal(leaf.shape, dtype=np.float32) * np.float32(np.sqrt(2 / np.prod(leaf.shape[:-1])))
        if name in ("scale", "var"):
            return np.ones(leaf.shape, np.float32)
        return rng.standard_normal(leaf.shape, dtype=np.float32) * np.float32(0.1)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.mark.parametrize(
    "hw,out",
    [
        ((7, 7), (7, 7)),
        ((14, 21), (7, 7)),
        ((2, 2), (7, 7)),
        ((1, 1), (7, 7)),
        ((10, 13), (3, 4)),
        ((5, 9), (1, 1)),
        ((50, 37), (7, 7)),
    ],
)
def test_adaptive_avg_pool_matches_torch(hw, out):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, *hw, 3)).astype(np.float32)
    got = np.asarray(adaptive_avg_pool2d(jnp.asarray(x), out))
    want = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), out)
    want = want.numpy().transpose(0, 2, 3, 1)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_adaptive_avg_pool_bins_by_hand():
    # in=5 -> out=3: bins [0,2), [1,4), [3,5)  (start=floor(i*5/3), end=ceil((i+1)*5/3))
    x = jnp.arange(5.0).reshape(1, 5, 1, 1)
    got = np.asarray(adaptive_avg_pool2d(x, (3, 1)))[0, :, 0, 0]
    np.testing.assert_allclose(got, [0.5, 2.0, 3.5])


def test_vgg_layout_indices_are_torchvisions():
    convs = [i for kind, i, *_ in vgg_layout(VGG_CFGS["vgg16"], False) if kind == "conv"]
    assert convs == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    bns = [i for kind, i, *_ in vgg_layout(VGG_CFGS["vgg16"], True) if kind == "bn"]
    assert bns[:3] == [1, 4, 8] and len(bns) == 13


def test_resnet18_names_and_train_flag():
    model = ResNet18(num_classes=5)
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    p = shapes["params"]
    assert set(p) == {"conv1", "bn1", "fc"} | {f"layer{k}_{j}" for k in range(1, 5) for j in range(2)}
    assert "downsample_0" in p["layer2_0"] and "downsample_0" not in p["layer1_0"]
    assert p["fc"]["kernel"].shape == (512, 5)
    # train=True needs mutable batch_stats and updates them; default leaves them alone
    variables = _np_variables(model)
    xs = np.random.default_rng(1).standard_normal((2, 32, 32, 3)).astype(np.float32)
    _, upd = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, xs)
    assert not np.allclose(upd["batch_stats"]["bn1"]["mean"], variables["batch_stats"]["bn1"]["mean"])
