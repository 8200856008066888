"""Per-layer torch <-> Flax weight conversions, checked numerically against PyTorch layers."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from tests import torch_export as te
from xai_jax.models import torch_port as tp

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

RNG = np.random.default_rng(0)


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def _rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.mark.parametrize("stride,padding,groups,dilation", [(1, 1, 1, 1), (2, 1, 1, 1), (2, 0, 2, 1), (1, 2, 1, 2)])
def test_conv_from_torch(stride, padding, groups, dilation):
    conv = torch.nn.Conv2d(4, 6, (3, 2), stride=stride, padding=padding, groups=groups, dilation=dilation)
    x = RNG.standard_normal((2, 9, 8, 4)).astype(np.float32)
    with torch.no_grad():
        want = _nhwc(conv(_nchw(x)))
    flax_conv = nn.Conv(
        6,
        (3, 2),
        strides=stride,
        padding=((padding, padding), (padding, padding)),
        feature_group_count=groups,
        kernel_dilation=dilation,
    )
    params = {"kernel": tp.conv_kernel_from_torch(conv.weight), "bias": tp.to_numpy(conv.bias)}
    got = flax_conv.apply({"params": params}, x)
    assert got.shape == want.shape
    assert _rel(got, want) < 1e-5
    np.testing.assert_array_equal(te.conv_kernel_to_torch(params["kernel"]), conv.weight.detach().numpy())


def test_flax_same_is_not_torch_padding_for_stride_2():
    """Documented pitfall: Flax 'SAME' pads (0, 1) where torch pads (1, 1) for a stride-2 3x3 conv."""
    conv = torch.nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)
    x = RNG.standard_normal((1, 8, 8, 1)).astype(np.float32)
    with torch.no_grad():
        want = _nhwc(conv(_nchw(x)))
    params = {"kernel": tp.conv_kernel_from_torch(conv.weight)}
    same = nn.Conv(1, (3, 3), strides=2, padding="SAME", use_bias=False).apply({"params": params}, x)
    explicit = nn.Conv(1, (3, 3), strides=2, padding=((1, 1), (1, 1)), use_bias=False).apply({"params": params}, x)
    assert same.shape == want.shape and _rel(same, want) > 1e-2
    assert _rel(explicit, want) < 1e-5


def test_dense_and_flatten_order():
    chw = (5, 3, 4)
    lin = torch.nn.Linear(int(np.prod(chw)), 7)
    x = RNG.standard_normal((3, chw[1], chw[2], chw[0])).astype(np.float32)  # NHWC
    with torch.no_grad():
        want = lin(torch.flatten(_nchw(x), 1)).numpy()
    kernel = tp.dense_kernel_from_torch_after_flatten(lin.weight, chw)
    got = nn.Dense(7).apply({"params": {"kernel": kernel, "bias": tp.to_numpy(lin.bias)}}, x.reshape(3, -1))
    assert _rel(got, want) < 1e-5
    np.testing.assert_array_equal(te.dense_kernel_to_torch_after_flatten(kernel, chw), lin.weight.detach().numpy())
    plain = tp.dense_kernel_from_torch(lin.weight)
    assert plain.shape == (60, 7)
    np.testing.assert_array_equal(te.dense_kernel_to_torch(plain), lin.weight.detach().numpy())
    with pytest.raises(ValueError, match="flatten"):
        tp.dense_kernel_from_torch_after_flatten(lin.weight, (5, 3, 5))


def test_batchnorm_roundtrip_and_numerics():
    bn = torch.nn.BatchNorm2d(6, eps=1e-5).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5), bn.bias.normal_(), bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2)
    x = RNG.standard_normal((2, 4, 4, 6)).astype(np.float32)
    with torch.no_grad():
        want = _nhwc(bn(_nchw(x)))
    params, stats = tp.batchnorm_from_torch(bn.weight, bn.bias, bn.running_mean, bn.running_var)
    got = nn.BatchNorm(use_running_average=True, epsilon=1e-5).apply({"params": params, "batch_stats": stats}, x)
    assert _rel(got, want) < 1e-6
    back = te.batchnorm_to_torch(params, stats)
    for k, v in back.items():
        np.testing.assert_array_equal(v, getattr(bn, k).detach().numpy())


# (kernel, stride, padding, output_padding, dilation); the last crops (padding > dilation*(k-1)).
CT_CASES = [
    (3, 2, 1, 1, 1),
    ((4, 3), (2, 1), (0, 1), (1, 0), 1),
    (3, 1, 2, 0, 2),
    (5, 3, 3, 2, 1),
    (2, 2, 2, 0, 1),
]


@pytest.mark.parametrize("transpose_kernel", [False, True])
@pytest.mark.parametrize("k,s,p,op,d", CT_CASES)
def test_conv_transpose_from_torch(k, s, p, op, d, transpose_kernel):
    ct = torch.nn.ConvTranspose2d(3, 5, k, stride=s, padding=p, output_padding=op, dilation=d)
    x = RNG.standard_normal((2, 6, 5, 3)).astype(np.float32)
    with torch.no_grad():
        want = _nhwc(ct(_nchw(x)))
    ks = (k, k) if isinstance(k, int) else k
    ss = (s, s) if isinstance(s, int) else s
    layer = nn.ConvTranspose(
        5,
        ks,
        strides=ss,
        kernel_dilation=(d, d),
        transpose_kernel=transpose_kernel,
        padding=tp.conv_transpose_padding_from_torch(ks, p, op, d),
    )
    kernel = tp.conv_transpose_kernel_from_torch(ct.weight, transpose_kernel=transpose_kernel)
    got = layer.apply({"params": {"kernel": kernel, "bias": tp.to_numpy(ct.bias)}}, x)
    assert got.shape == want.shape
    assert _rel(got, want) < 1e-5
    back = te.conv_transpose_kernel_to_torch(kernel, transpose_kernel=transpose_kernel)
    np.testing.assert_array_equal(back, ct.weight.detach().numpy())


def test_to_numpy_copies_and_accepts_everything():
    t = torch.ones(3, requires_grad=True)
    a = tp.to_numpy(t)
    with torch.no_grad():
        t.add_(1.0)
    assert a.tolist() == [1.0, 1.0, 1.0]  # a copy, not a view of the tensor
    assert tp.to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32
    assert tp.to_numpy(jnp.ones(2)).tolist() == [1.0, 1.0]
    w = torch.ones(1, 4)  # transposes to (4, 1), contiguous both ways: must still be a copy
    k = tp.dense_kernel_from_torch(w)
    w.add_(1.0)
    assert k.max() == 1.0
