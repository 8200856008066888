"""Operations without a relevance rule are refused, naming the primitive and the layer."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.core.errors import UnsupportedError
from xai_jax.propagation import AttnLRP

X = jax.random.normal(jax.random.key(0), (2, 4, 8))


class Block(nn.Module):
    @nn.compact
    def __call__(self, h, _):
        return h + nn.Dense(8, name="ff")(jax.nn.gelu(h)), None


class Scanned(nn.Module):
    """Layers stacked with ``nn.scan`` (one ``scan`` primitive over the blocks)."""

    @nn.compact
    def __call__(self, x):
        h, _ = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=2)(name="layers")(
            x, None
        )
        return nn.Dense(3, name="head")(h[:, -1])


class Callback(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Dense(8, name="ff")(x)
        h = jax.pure_callback(np.tanh, jax.ShapeDtypeStruct(h.shape, h.dtype), h)
        return nn.Dense(3, name="head")(h[:, -1])


def _tanh_kernel(x_ref, o_ref):
    o_ref[...] = jnp.tanh(x_ref[...])


class Kernel(nn.Module):
    """A custom (Pallas) kernel in a submodule, as a fused attention would be."""

    @nn.compact
    def __call__(self, x):
        from jax.experimental import pallas as pl

        h = nn.Dense(8, name="ff")(x)
        h = pl.pallas_call(_tanh_kernel, out_shape=jax.ShapeDtypeStruct(h.shape, h.dtype), interpret=True)(h)
        return nn.Dense(3, name="head")(h[:, -1])


def _explain(method: str, model: nn.Module):
    variables = model.init(jax.random.key(1), X)
    if method == "lrp":
        return xj.lrp(model, variables, X, 0, composite=AttnLRP())
    return xj.deeplift(model, variables, X, 0)


@pytest.mark.parametrize("method", ["lrp", pytest.param("deeplift", marks=pytest.mark.slow)])
def test_scan_over_layers_is_refused(method: str) -> None:
    with pytest.raises(UnsupportedError, match=r"primitive 'scan' in 'layers'"):
        _explain(method, Scanned())


@pytest.mark.parametrize("method", ["lrp", pytest.param("deeplift", marks=pytest.mark.slow)])
def test_callback_is_refused(method: str) -> None:
    with pytest.raises(UnsupportedError, match=r"pure_callback"):
        _explain(method, Callback())


def test_custom_kernel_says_use_xla() -> None:
    with pytest.raises(UnsupportedError, match=r"fused kernel 'pallas_call'.*implementation='xla'"):
        _explain("lrp", Kernel())


def test_xla_dot_product_attention_is_explained() -> None:
    """``jax.nn.dot_product_attention(implementation='xla')`` traces to softmax and two products:
    AttnLRP's rules apply (CP-LRP conserves on this bias-free model)."""

    class Attention(nn.Module):
        @nn.compact
        def __call__(self, x):
            b, n, _ = x.shape
            q, k, v = (nn.Dense(8, use_bias=False, name=p)(x).reshape(b, n, 2, 4) for p in "qkv")
            out = jax.nn.dot_product_attention(q, k, v, implementation="xla").reshape(b, n, 8)
            return nn.Dense(3, use_bias=False, name="head")(out[:, -1])

    model = Attention()
    variables = model.init(jax.random.key(1), X)
    R = xj.lrp(model, variables, X, 0, composite=xj.composites.CPLRP())
    np.testing.assert_allclose(
        np.asarray(R.sum((1, 2))), np.asarray(model.apply(variables, X)[:, 0]), rtol=1e-5, atol=1e-6
    )
