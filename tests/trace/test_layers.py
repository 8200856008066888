"""Layer access by module path on a model with a residual block, inference BatchNorm, inline relu."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj


class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        y = nn.relu(nn.Conv(4, (3, 3), name="conv_a")(x))
        y = nn.BatchNorm(use_running_average=True, name="bn_a")(y)
        return nn.relu(x + nn.Conv(4, (3, 3), name="conv_b")(y))


class ResNetLike(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = jnp.maximum(nn.Conv(4, (3, 3), name="stem")(x), 0.0)
        x = Block(name="block")(x)
        x = nn.max_pool(x, (2, 2), (2, 2))
        shared = nn.Dense(4, name="shared")
        x = shared(jax.nn.relu(shared(x.mean(axis=(1, 2)))))
        return nn.Dense(3, name="head")(x)


@pytest.fixture(scope="module")
def net():
    model = ResNetLike()
    x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))
    variables = model.init(jax.random.key(1), x)
    stats = jax.tree_util.tree_map(lambda a: jax.random.uniform(jax.random.key(2), a.shape, minval=0.5, maxval=1.5), variables["batch_stats"])
    return model, {"params": variables["params"], "batch_stats": stats}, x


def test_layers_lists_every_call_with_type_and_shape(net):
    model, variables, x = net
    listed = xj.layers(model, variables, x)
    assert listed.names() == ["stem", "block/conv_a", "block/bn_a", "block/conv_b", "block", "shared", "shared#1", "head"]
    by_name = {layer.name: layer for layer in listed}
    assert by_name["block/bn_a"].type == "BatchNorm"
    assert by_name["block"].shape == (4, 8, 8, 4)
    assert by_name["head"].shape == (4, 3)
    assert "block/conv_b" in str(listed)


def _manual(variables, x):
    """The same network written out by hand, exposing the block's output."""
    p, s = variables["params"], variables["batch_stats"]
    conv = lambda h, q: jax.lax.conv_general_dilated(h, q["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + q["bias"]
    h = jnp.maximum(conv(x, p["stem"]), 0)
    y = jax.nn.relu(conv(h, p["block"]["conv_a"]))
    bn, st = p["block"]["bn_a"], s["block"]["bn_a"]
    y = (y - st["mean"]) / jnp.sqrt(st["var"] + 1e-5) * bn["scale"] + bn["bias"]
    block = jax.nn.relu(h + conv(y, p["block"]["conv_b"]))
    return block


def test_capture_matches_hand_written_forward(net):
    model, variables, x = net
    outputs, block = xj.capture(model, variables, x, "block")
    np.testing.assert_allclose(block, _manual(variables, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs, model.apply(variables, x), rtol=1e-6)


def test_layer_gradient_matches_gradient_of_the_model_split_at_the_layer(net):
    model, variables, x = net
    target = np.array([0, 1, 2, 1])
    activation, grad = xj.layer_gradient(model, variables, x, target, layer="block")

    def head(block):  # the rest of the network after "block", written out by hand
        p = variables["params"]
        z = nn.max_pool(block, (2, 2), (2, 2)).mean(axis=(1, 2))
        dense = lambda h, q: h @ q["kernel"] + q["bias"]
        z = dense(jax.nn.relu(dense(z, p["shared"])), p["shared"])
        return dense(z, p["head"])

    expected = jax.grad(lambda a: jnp.sum(head(a)[jnp.arange(4), target]))(_manual(variables, x))
    np.testing.assert_allclose(activation, _manual(variables, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


def test_layer_gradient_of_a_repeated_call(net):
    model, variables, x = net
    act0, _ = xj.layer_gradient(model, variables, x, 0, layer="shared")
    act1, _ = xj.layer_gradient(model, variables, x, 0, layer="shared#1")
    assert act0.shape == act1.shape == (4, 4)
    assert not np.allclose(act0, act1)


def test_unknown_layer_lists_close_matches(net):
    model, variables, x = net
    with pytest.raises(xj.LayerNotFoundError, match="conv_b"):
        xj.layer_gradient(model, variables, x, layer="block/conv_c")


def test_layer_access_needs_a_linen_module(net):
    model, variables, x = net
    with pytest.raises(xj.InputError, match="flax.linen.Module"):
        xj.layers(lambda v, x: model.apply(v, x), variables, x)


def test_layer_gradient_composes_with_jit(net):
    model, variables, x = net
    eager = xj.layer_gradient(model, variables, x, 1, layer="block/conv_b")[1]
    jitted = jax.jit(lambda x: xj.layer_gradient(model, variables, x, 1, layer="block/conv_b")[1])(x)
    np.testing.assert_allclose(eager, jitted, rtol=1e-6)
