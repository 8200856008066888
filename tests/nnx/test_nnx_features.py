"""NNX beyond the attribution registry: layer listing and capture against the Linen twin, feature
visualisation on a layer, Monte-Carlo dropout from NNX rng streams, the upstream Flax NNX MNIST CNN,
and the MNIST zoo served as NNX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import xai_jax as xj
from tests import twins
from tests.nnx import nnx_twins, upstream
from tests.nnx.common import max_relative_difference, run
from tests.nnx.test_calling_convention import TARGET, X, _net
from xai_jax.core.errors import ModelModeError


@pytest.fixture(scope="module")
def res():
    pair = nnx_twins.make("ResBNNet")
    return pair, twins.random_input(pair.linen, batch=2, seed=3)


def test_layer_listing_and_capture_match_linen(res):
    pair, x = res
    linen = xj.layers(pair.linen, pair.variables, x)
    nnx_listing = xj.layers(pair.nnx_model, None, x)
    assert linen.names() == nnx_listing.names()
    same_type = {"Dense": "Linear"}  # Linen's class names and NNX's for the same layer
    for a, b in zip(linen, nnx_listing):
        assert (a.name, same_type.get(a.type, a.type), a.shape) == (b.name, b.type, b.shape)
    for layer in ("block", "block/bn1+relu", "bn1"):
        out_a, act_a = xj.capture(pair.linen, pair.variables, x, layer)
        out_b, act_b = xj.capture(pair.nnx_model, None, x, layer)
        assert max_relative_difference((out_a, act_a), (out_b, act_b)) <= 1e-6, layer


def test_layer_gradient_and_lrp_at_a_layer_match_linen(res):
    pair, x = res
    target = np.array([1, 3])
    a = xj.layer_gradient(pair.linen, pair.variables, x, target, layer="block/bn1+relu")
    b = xj.layer_gradient(pair.nnx_model, None, x, target, layer="block/bn1+relu")
    assert max_relative_difference(a, b) <= 1e-6
    a = xj.lrp(pair.linen, pair.variables, x, target, layer="block")
    b = xj.lrp(pair.nnx_model, None, x, target, layer="block")
    assert max_relative_difference(a, b) <= 1e-6


def test_feature_visualisation_on_a_layer_matches_linen(res):
    pair, _ = res
    options = dict(layer="block/bn1+relu", shape=(8, 8, 3), steps=5, key=jax.random.key(0))
    a = xj.activation_maximization(pair.linen, pair.variables, [0, 3], **options)
    b = xj.activation_maximization(pair.nnx_model, None, [0, 3], **options)
    assert max_relative_difference(a.images, b.images) <= 1e-6
    assert max_relative_difference(a.scores, b.scores) <= 1e-6


# ---------------------------------------------------------------------------------------------------
# Monte-Carlo dropout from NNX rng streams
# ---------------------------------------------------------------------------------------------------


def _dropout_on_with_keys(model: nnx.Module, key: jax.Array) -> nnx.Module:
    """By hand, as documented: a copy with dropout on whose ``j``-th dropout stream (graph order) has
    key ``fold_in(key, j)`` and count 0."""
    copy = nnx.clone(model)
    copy.set_attributes(deterministic=False, raise_if_not_found=False)
    streams = []
    for _, node in nnx.iter_graph(copy):
        if isinstance(node, nnx.Dropout) and isinstance(node.rngs, nnx.RngStream) and node.rngs not in streams:
            streams.append(node.rngs)
    for j, stream in enumerate(streams):
        stream.key.set_value(jax.random.fold_in(key, j))
        stream.count.set_value(jnp.zeros_like(stream.count.get_value()))
    return copy


def test_mc_dropout_samples_are_the_models_own_dropout_masks():
    model = _net()  # inference mode; one nnx.Dropout(0.5) with its own stream
    key = jax.random.key(7)
    result = xj.uncertainty.explain_mc("gradient", model, None, X, TARGET, samples=3, key=key, return_samples=True)
    keys = jax.random.split(key, 3)
    by_hand = []
    for k in keys:
        graphdef, state = nnx.split(_dropout_on_with_keys(model, k))

        def score(x, graphdef=graphdef, state=state):
            fresh = jax.tree_util.tree_map(lambda leaf: leaf, state)  # new Variables, created in this trace
            return jnp.sum(nnx.merge(graphdef, fresh)(x)[jnp.arange(3), TARGET])

        by_hand.append(jax.grad(score)(X))
    by_hand = np.stack(by_hand)
    np.testing.assert_allclose(result.samples, by_hand, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.mean, by_hand.mean(0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(by_hand[0], by_hand[1])  # the masks differ between samples
    assert model.drop.deterministic is True  # the user's model stays in inference mode


@pytest.mark.slow
def test_mc_dropout_with_lrp_runs_through_the_dropout_product():
    model = _net()
    result = xj.uncertainty.explain_mc(
        "lrp", model, None, X, TARGET, samples=2, key=jax.random.key(3), return_samples=True
    )
    assert np.all(np.isfinite(result.samples)) and not np.allclose(result.samples[0], result.samples[1])


def test_mc_dropout_without_a_stream_is_refused_with_what_to_do():
    class NoStream(nnx.Module):
        def __init__(self, *, rngs):
            self.fc = nnx.Linear(4, 3, rngs=rngs)
            self.drop = nnx.Dropout(0.5)

        def __call__(self, x):
            return self.drop(self.fc(x))

    model = NoStream(rngs=nnx.Rngs(0))
    model.eval()
    with pytest.raises(xj.InputError, match=r"nnx.Dropout\(rate, rngs=rngs\)"):
        xj.uncertainty.explain_mc("gradient", model, None, jnp.ones((2, 4)), 0, samples=2, key=jax.random.key(0))


# ---------------------------------------------------------------------------------------------------
# The upstream Flax NNX MNIST CNN
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream_cnn():
    return upstream.make(upstream.CNN), jnp.asarray(np.random.default_rng(0).uniform(size=(2, 28, 28, 1)), jnp.float32)


def test_upstream_cnn_gradient_is_the_models_gradient(upstream_cnn):
    model, x = upstream_cnn
    want = jax.grad(lambda x: jnp.sum(model(x)[jnp.arange(2), jnp.array([3, 5])]))(x)
    np.testing.assert_allclose(xj.gradient(model, None, x, np.array([3, 5])), want, rtol=1e-5, atol=1e-7)
    assert "conv2+relu" in xj.layers(model, None, x).names()


#: the upstream CNN has no global average pooling before its head: CAM (not Grad-CAM) does not apply
UPSTREAM_NOT_APPLICABLE = {
    "cam": "no global-average-pooled layer feeds the dense head",
    "attention_rollout": "a CNN has no attention",
    "chefer_attention": "a CNN has no attention",
}
UPSTREAM_FAST = {"grad_cam", "lrp"}


@pytest.mark.parametrize(
    "method", [m if m in UPSTREAM_FAST else pytest.param(m, marks=pytest.mark.slow) for m in sorted(xj.METHODS)]
)
def test_upstream_cnn_runs_every_applicable_method(upstream_cnn, method):
    model, x = upstream_cnn
    got = run(method, model, None, x, np.array([3, 5]), "conv2+relu")
    if method in UPSTREAM_NOT_APPLICABLE:
        assert isinstance(got, xj.InputError), got
        return
    assert not isinstance(got, Exception), got
    leaves = jax.tree_util.tree_leaves(got)
    assert leaves and all(np.all(np.isfinite(np.asarray(leaf))) for leaf in leaves)
    assert any(np.any(np.asarray(leaf) != 0) for leaf in leaves)


def test_upstream_cnn_with_batchnorm_and_dropout_needs_eval():
    model = upstream.make(upstream.CNNWithBNDropout)
    x = jnp.ones((1, 28, 28, 1))
    with pytest.raises(ModelModeError, match=r"model.eval\(\)"):
        xj.gradient(model, None, x, 0)
    model.eval()
    want = jax.grad(lambda x: model(x)[0, 0])(x)
    np.testing.assert_allclose(xj.gradient(model, None, x, 0), want, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------------
# The MNIST zoo as NNX
# ---------------------------------------------------------------------------------------------------


#: Shipped models without an NNX version in the zoo (yet): loading them with api="nnx" is refused.
LINEN_ONLY = {"mnist_vit"}


@pytest.mark.parametrize("name", xj.models.available())
def test_zoo_as_nnx_computes_the_linen_model(name):
    if name in LINEN_ONLY:
        with pytest.raises(xj.UnsupportedError, match="no Flax NNX version"):
            xj.models.load(name, api="nnx")
        return
    linen, variables = xj.models.load(name)
    model, state = xj.models.load(name, api="nnx")
    assert state is None and isinstance(model, nnx.Module)
    shape = model.input_shape
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, *shape)), jnp.float32)
    assert max_relative_difference(linen.apply(variables, x), model(x)) <= 1e-6


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        ("GanGenerator", {"hidden": 16, "depth": 2, "classes": 10}),
        ("GanDiscriminator", {"hidden": 16, "depth": 2, "classes": 10}),
        ("DCGANGenerator", {"features": 4, "classes": 10, "temperature": 4.0}),
        ("DCGANDiscriminator", {"features": 4, "classes": 10}),
    ],
)
def test_class_coded_gans_as_nnx_compute_the_linen_model(cls, kwargs):
    """The AC-GAN variants (class code, deeper MLPs, class heads) convert like the shipped ones."""
    from xai_jax.models import mnist, nnx_mnist

    linen = getattr(mnist, cls)(**kwargs)
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(3, *linen.input_shape)), jnp.float32)
    variables = linen.init(jax.random.key(0), x)
    model = nnx_mnist.from_linen(nnx_mnist.build(nnx_mnist.NNX_CLASSES[cls], **kwargs), variables)
    model.eval()
    assert max_relative_difference(linen.apply(variables, x), model(x)) <= 1e-6
    if "Discriminator" in cls:
        _, expected = linen.apply(variables, x, with_classes=True)
        _, got = model(x, with_classes=True)
        assert got.shape == (3, 10) and max_relative_difference(expected, got) <= 1e-6


def test_zoo_as_nnx_explains_like_linen():
    if "cam_cnn" not in xj.models.available():
        pytest.skip("the cam_cnn checkpoint is not shipped in this checkout")
    linen, variables = xj.models.load("cam_cnn")
    model, _ = xj.models.load("cam_cnn", api="nnx")
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 28, 28, 1)), jnp.float32)
    for method in ("cam", "lrp"):
        a = run(method, linen, variables, x, np.array([1, 2]), "conv5+relu")
        b = run(method, model, None, x, np.array([1, 2]), "conv5+relu")
        assert max_relative_difference(a, b) <= 1e-6, method
