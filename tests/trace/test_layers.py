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
    stats = jax.tree_util.tree_map(
        lambda a: jax.random.uniform(jax.random.key(2), a.shape, minval=0.5, maxval=1.5), variables["batch_stats"]
    )
    return model, {"params": variables["params"], "batch_stats": stats}, x


def test_layers_lists_every_call_with_type_and_shape(net):
    model, variables, x = net
    listed = xj.layers(model, variables, x)
    # "+relu": the activation applied directly to a layer's output (jnp.maximum, nn.relu, jax.nn.relu);
    # conv_b feeds the residual sum, not an activation, so it has none
    assert listed.names() == [
        "stem",
        "stem+relu",
        "block/conv_a",
        "block/conv_a+relu",
        "block/bn_a",
        "block/conv_b",
        "block",
        "shared",
        "shared+relu",
        "shared#1",
        "head",
    ]
    by_name = {layer.name: layer for layer in listed}
    assert by_name["block/bn_a"].type == "BatchNorm"
    assert by_name["stem+relu"].type == "relu" and by_name["stem+relu"].shape == by_name["stem"].shape
    assert by_name["block"].shape == (4, 8, 8, 4)
    assert by_name["head"].shape == (4, 3)
    assert "block/conv_b" in str(listed)


def _manual(variables, x):
    """The same network written out by hand, exposing the block's output."""
    p, s = variables["params"], variables["batch_stats"]
    conv = lambda h, q: (
        jax.lax.conv_general_dilated(h, q["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        + q["bias"]
    )
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


def test_activation_after_a_layer_value_and_gradient(net):
    """``"shared+relu"``: the ReLU between the two calls of ``shared``; its gradient is the head's
    weights through the second call, by hand (no ReLU mask: the probe sits after the ReLU)."""
    model, variables, x = net
    _, pre = xj.capture(model, variables, x, "shared")
    _, post = xj.capture(model, variables, x, "shared+relu")
    np.testing.assert_array_equal(post, jnp.maximum(pre, 0))
    p = variables["params"]
    target = np.array([0, 1, 2, 1])
    activation, grad = xj.layer_gradient(model, variables, x, target, layer="shared+relu")
    expected = (p["shared"]["kernel"] @ p["head"]["kernel"])[:, target].T
    np.testing.assert_allclose(activation, post, rtol=1e-6)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
    # nested path, inline nn.relu: the rectified conv_a maps and the gradient of the model split there
    _, conv_a = xj.capture(model, variables, x, "block/conv_a")
    act, g = xj.layer_gradient(model, variables, x, 1, layer="block/conv_a+relu")
    np.testing.assert_array_equal(act, jax.nn.relu(conv_a))
    _, g_bn = xj.layer_gradient(model, variables, x, 1, layer="block/conv_a")
    np.testing.assert_allclose(g * (conv_a > 0), g_bn, rtol=1e-5, atol=1e-7)  # the chain rule through the ReLU
    assert not np.allclose(g, g_bn)


def test_activation_names_must_match(net):
    model, variables, x = net
    with pytest.raises(xj.LayerNotFoundError, match="block/conv_a\\+relu"):
        xj.capture(model, variables, x, "block/conv_a+tanh")
    with pytest.raises(xj.LayerNotFoundError):
        xj.capture(model, variables, x, "block/conv_b+relu")  # feeds the residual sum, not a ReLU


class LeakyTanh(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = jax.nn.leaky_relu(nn.Conv(3, (3, 3), name="c1")(x), negative_slope=0.3)
        x = jnp.tanh(nn.Conv(3, (3, 3), name="c2")(x))
        return nn.Dense(2, name="fc")(x.reshape(x.shape[0], -1))


def test_other_activations_and_the_truncated_forward():
    """tanh (a primitive) and leaky_relu with its own slope (a named jit): the listed values, and the
    feature-visualization forward that stops at the layer gives the same (the slope is kept)."""
    from xai_jax.core.model import make_forward
    from xai_jax.featureviz.engine import truncated_forward

    model = LeakyTanh()
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 1))
    variables = model.init(jax.random.key(1), x)
    names = xj.layers(model, variables, x).names()
    assert names == ["c1", "c1+leaky_relu", "c2", "c2+tanh", "fc"]
    forward, _ = make_forward(model, None)
    _, c1 = xj.capture(model, variables, x, "c1")
    _, c2 = xj.capture(model, variables, x, "c2")
    for layer, expected in (("c1+leaky_relu", jax.nn.leaky_relu(c1, 0.3)), ("c2+tanh", jnp.tanh(c2))):
        np.testing.assert_allclose(xj.capture(model, variables, x, layer)[1], expected, rtol=1e-6)
        np.testing.assert_allclose(truncated_forward(forward, layer)(variables, x, {}), expected, rtol=1e-6)


class Ident(nn.Module):
    @nn.compact
    def __call__(self, x):
        return x


class Pair(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3, name="p")(x), x


class Awkward(nn.Module):
    """Names with "+", a tuple-valued module, and an identity module on a value already rectified."""

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(4, name="a+b")(x)
        r = nn.relu(h)
        skip = Ident(name="skip")(h)  # returns h, which the ReLU took *before* this module
        first, _ = Pair(name="pair")(r + skip)
        z = jnp.tanh(nn.Dense(4, name="c+relu")(first))
        return nn.Dense(2, name="head")(z)


def test_awkward_names_and_outputs():
    model = Awkward()
    x = jax.random.normal(jax.random.key(0), (3, 5))
    variables = model.init(jax.random.key(1), x)
    names = xj.layers(model, variables, x).names()
    assert names == ["a+b", "a+b+relu", "skip", "pair/p", "pair", "c+relu", "c+relu+tanh", "head"]
    _, h = xj.capture(model, variables, x, "a+b")
    np.testing.assert_array_equal(xj.capture(model, variables, x, "a+b+relu")[1], jax.nn.relu(h))
    _, c = xj.capture(model, variables, x, "c+relu")  # a module literally named so
    np.testing.assert_allclose(xj.capture(model, variables, x, "c+relu+tanh")[1], jnp.tanh(c), rtol=1e-6)
    with pytest.raises(xj.LayerNotFoundError):
        xj.capture(model, variables, x, "skip+relu")
