"""The Flax/PyTorch twins of tests/twins.py compute the same function, layer by layer.

Every cross-check against Captum/Zennit/pytorch-grad-cam relies on these twins, so a silent layout
slip here (NCHW flatten, BN statistics, a shared ReLU module) would corrupt all of them.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests import twins  # noqa: E402

pytestmark = pytest.mark.torch

NAMES = sorted(twins.TWINS)


@pytest.fixture(scope="module", params=NAMES)
def twin(request):
    return twins.make(request.param, seed=0)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_identical_logits(twin):
    model, variables, tmodel = twin
    x = twins.random_input(model, batch=8, seed=1)
    y = np.asarray(model.apply(variables, x))
    with torch.no_grad():
        yt = twins.to_numpy(tmodel(twins.to_torch(x)))
    assert y.shape == yt.shape == (8, 10)
    assert _rel(y, yt) <= 1e-5
    assert np.abs(y).max() > 0.1  # not a degenerate (all-zero) network


def test_layer_map_outputs_match(twin):
    """Each Flax layer name (``"conv2+relu"``: the inline ReLU after ``conv2``) and its torch twin
    produce the same activation (so a Grad-CAM test can pick "the same layer" on both sides)."""
    import xai_jax as xj

    model, variables, tmodel = twin
    x = twins.random_input(model, batch=2, seed=2)
    got = {}
    hooks = [
        twins.torch_layer(tmodel, name).register_forward_hook(
            lambda m, i, o, name=name: got.__setitem__(name, o.detach().numpy())
        )
        for name in twin.layer_map
    ]
    try:
        with torch.no_grad():
            tmodel(twins.to_torch(x))
    finally:
        for h in hooks:
            h.remove()
    for name in twin.layer_map:
        a = np.asarray(xj.capture(model, variables, x, name)[1])
        t = got[name]
        if t.ndim == 4:
            t = t.transpose(0, 2, 3, 1)
        assert a.shape == t.shape, name
        assert _rel(a, t) <= 1e-5, name


def test_torch_twin_modules_used_once(twin):
    """Captum hooks modules: every leaf module (each ReLU in particular) runs once per forward."""
    _, _, tmodel = twin
    model = twin.flax_model
    calls: dict[str, int] = {}
    leaves = [(n, m) for n, m in tmodel.named_modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: calls.__setitem__(n, calls.get(n, 0) + 1)) for n, m in leaves]
    try:
        with torch.no_grad():
            tmodel(twins.to_torch(twins.random_input(model, batch=1)))
    finally:
        for h in hooks:
            h.remove()
    assert calls == {n: 1 for n, _ in leaves}
    assert not tmodel.training
    assert all(p.dtype == torch.float32 for p in tmodel.parameters())


def test_tiny_cnn_relu_then_clone_before_maxpool():
    """DESIGN.md §7: Captum's DeepLift needs an identity module between a ReLU and a MaxPool."""
    _, _, tmodel = twins.make_tiny_cnn()
    mods = list(tmodel.children())
    for i, m in enumerate(mods):
        if isinstance(m, torch.nn.MaxPool2d):
            assert isinstance(mods[i - 1], twins.clone_module_type())
            assert isinstance(mods[i - 2], torch.nn.ReLU)


def test_res_bn_net_uses_zennit_sum():
    zennit_layer = pytest.importorskip("zennit.layer")
    _, variables, tmodel = twins.make_res_bn_net()
    assert isinstance(tmodel.block.sum, zennit_layer.Sum)
    # the BN statistics are not the trivial (0, 1) ones
    assert np.abs(np.asarray(variables["batch_stats"]["bn1"]["mean"])).max() > 0.05


def test_layout_helpers_roundtrip():
    x = np.random.default_rng(0).standard_normal((2, 5, 4, 3)).astype(np.float32)
    t = twins.to_torch(x)
    assert tuple(t.shape) == (2, 3, 5, 4) and t.dtype == torch.float32
    np.testing.assert_array_equal(twins.to_numpy_nhwc(t), x)
    with pytest.raises(ValueError):
        twins.to_torch(x[0])


def test_seed_changes_weights():
    a = twins.make_tiny_cnn(seed=0).variables["params"]["conv1"]["kernel"]
    b = twins.make_tiny_cnn(seed=1).variables["params"]["conv1"]["kernel"]
    assert not np.allclose(a, b)
