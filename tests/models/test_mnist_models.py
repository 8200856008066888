"""The MNIST zoo: shapes and dtypes, shipped checkpoints load and are accurate, training steps are
deterministic and their fast gradients equal plain autodiff, the evidential loss is Sensoy et al.'s."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
import optax
import pytest
from jax.scipy.special import digamma, gammaln

from xai_jax.models import losses, mnist, zoo
from xai_jax.models import train as T
from tests.models.utils import np_init

CLASSIFIERS = ["mnist_cnn", "cam_cnn", "mc_dropout_cnn", "evidential_cnn"]
GENERATORS = ["mnist_gan_generator", "dcgan_generator"]
SHIPPED = CLASSIFIERS + GENERATORS


def _images(n=3, seed=0):
    return jnp.asarray(np.random.default_rng(seed).random((n, 28, 28, 1), np.float32))


def _normal(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


@pytest.fixture(scope="module")
def test_digits():
    """The 300 test digits bundled with the package (30 per class, from the standard test split)."""
    from xai_jax.data import mnist as load_mnist

    x, y = load_mnist("sample")
    return jnp.asarray(x), np.asarray(y)


@pytest.mark.parametrize("name", zoo.names())
def test_shapes_and_dtypes(name):
    model = zoo.build(name)
    x = mnist.example_input(model, batch=3) + 0.5
    variables = jax.eval_shape(lambda a: model.init(jax.random.key(0), a), x)
    out = jax.eval_shape(lambda v, a: model.apply(v, a), variables, x)
    kind = zoo.ZOO[name].kind
    expected = {"classifier": (3, 10), "generator": (3, 28, 28, 1), "discriminator": (3, 1)}[kind]
    assert out.shape == expected and out.dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))


def test_layer_names():
    variables = jax.eval_shape(lambda a: mnist.MnistCNN().init(jax.random.key(0), a), _images(1))
    assert list(variables["params"]) == ["conv1", "conv2", "conv3", "conv4", "fc1", "fc2"]
    variables = jax.eval_shape(lambda a: mnist.CamCNN().init(jax.random.key(0), a), _images(1))
    assert list(variables["params"]) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc"]


def test_mc_dropout_modes():
    model = mnist.MCDropoutCNN()
    x = _images()
    v = np_init(model, x)
    np.testing.assert_array_equal(jax.jit(model.apply)(v, x), model.apply(v, x, deterministic=True))
    mc = jax.jit(lambda v, x, key: model.apply(v, x, deterministic=False, rngs={"dropout": key}))
    a, b, c = mc(v, x, jax.random.key(1)), mc(v, x, jax.random.key(1)), mc(v, x, jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_dcgan_inference_mode_is_per_sample():
    model = mnist.DCGANGenerator()
    z = _normal((3, 100))
    v = np_init(model, z)
    apply = jax.jit(model.apply)
    whole = apply(v, z)
    one = apply(v, z[:1])
    np.testing.assert_allclose(whole[:1], one, atol=1e-6)  # running averages: no batch coupling
    assert float(whole.min()) >= 0.0 and float(whole.max()) <= 1.0


# --------------------------------------------------------------------------- shipped checkpoints


def test_available_lists_shipped():
    assert set(SHIPPED) <= set(zoo.available())


@pytest.mark.parametrize("name", SHIPPED)
def test_zoo_load(name):
    model, variables = zoo.load(name)
    assert isinstance(model, zoo.ZOO[name].cls)
    x = mnist.example_input(model, batch=2)
    out = jax.jit(model.apply)(variables, x)
    assert out.shape[0] == 2 and bool(jnp.all(jnp.isfinite(out)))
    if name == "dcgan_generator":
        assert "batch_stats" in variables


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_checkpoint_accuracy(name, test_digits):
    x, y = test_digits
    model, variables = zoo.load(name)
    pred = np.asarray(jnp.argmax(jax.jit(model.apply)(variables, x), axis=-1))
    assert (pred == y).mean() >= 0.97
    assert zoo.info(name)["test_accuracy"] >= 0.985


@pytest.mark.parametrize("name", GENERATORS)
def test_generator_samples_look_like_digits(name):
    gen, gv = zoo.load(name)
    clf, cv = zoo.load("mnist_cnn")
    images = jax.jit(gen.apply)(gv, _normal((64, 100)))
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    probs = jax.nn.softmax(jax.jit(clf.apply)(cv, images))
    assert float(probs.max(axis=1).mean()) >= 0.7  # shipped: ~0.8 (manifest "sample_quality")
    assert len(np.unique(np.asarray(probs.argmax(axis=1)))) >= 7  # no mode collapse


# --------------------------------------------------------------------------------- training step


def test_training_step_deterministic():
    model = mnist.MCDropoutCNN()
    x, y = _images(8), jnp.arange(8) % 10
    params = np_init(model, x)["params"]
    opt = optax.adam(1e-3)
    step = T.make_classifier_step(model, opt, model_kwargs={"deterministic": False})
    a = step(params, opt.init(params), x, y, jax.random.key(5), 0.0)
    b = step(params, opt.init(params), x, y, jax.random.key(5), 0.0)
    c = step(params, opt.init(params), x, y, jax.random.key(6), 0.0)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(u, v)
    assert float(a[2]) != float(c[2])  # the key drives dropout


def test_fast_gradient_equals_autodiff():
    model = mnist.MnistCNN()
    x, y = _images(4), jnp.arange(4)
    params = np_init(model, x)["params"]
    opt = optax.sgd(1.0)  # the update is the gradient
    fast = T.make_classifier_step(model, opt, fast=True)(params, opt.init(params), x, y, jax.random.key(0), 0.0)
    slow = T.make_classifier_step(model, opt, fast=False)(params, opt.init(params), x, y, jax.random.key(0), 0.0)
    for u, v in zip(jax.tree.leaves(fast), jax.tree.leaves(slow)):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def test_conv_transpose_training_rule_equals_autodiff():
    layer = nn.ConvTranspose(3, (4, 4), strides=(2, 2), padding="SAME")
    x = _normal((2, 5, 5, 4))
    v = np_init(layer, x)
    w = _normal((2, 10, 10, 3), seed=2)

    def f(v, x):
        return jnp.sum(layer.apply(v, x) * w)

    np.testing.assert_allclose(T._fast(f)(v, x), f(v, x), rtol=1e-6)
    fast = jax.jit(jax.grad(T._fast(f), argnums=(0, 1)))(v, x)
    slow = jax.jit(jax.grad(f, argnums=(0, 1)))(v, x)
    for u, s in zip(jax.tree.leaves(fast), jax.tree.leaves(slow)):
        np.testing.assert_allclose(u, s, rtol=1e-5, atol=1e-5)


def test_gan_step_updates_batch_stats():
    g, d = mnist.DCGANGenerator(), mnist.DCGANDiscriminator()
    real = _images(4)
    gv = dict(np_init(g, jnp.zeros((1, 100))))
    dp = np_init(d, real)["params"]
    opt = optax.adam(1e-3)
    out = T.make_gan_step(g, d, opt, opt)(gv, dp, opt.init(gv["params"]), opt.init(dp), real, jax.random.key(2))
    new_gv, new_dp, _, _, d_loss, g_loss = out
    assert np.isfinite(float(d_loss)) and np.isfinite(float(g_loss))
    assert jax.tree.structure(new_gv) == jax.tree.structure(gv)
    assert not np.allclose(new_gv["batch_stats"]["bn0"]["mean"], gv["batch_stats"]["bn0"]["mean"])
    assert not np.allclose(new_dp["fc"]["kernel"], dp["fc"]["kernel"])


def test_unknown_training_name():
    with pytest.raises(KeyError, match="mnist_cnn"):
        T.train("mnist_cn")


# ------------------------------------------------------------------------------ evidential losses


def _reference_kl(alpha):
    k = alpha.shape[-1]
    s = alpha.sum(-1, keepdims=True)
    return (gammaln(s[..., 0]) - gammaln(float(k)) - gammaln(alpha).sum(-1)
            + ((alpha - 1) * (digamma(alpha) - digamma(s))).sum(-1))


def test_evidential_mse_matches_eq5():
    logits = jnp.array([[3.0, -1.0, 0.5], [-2.0, -2.0, -2.0]])
    y = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    alpha = np.maximum(np.asarray(logits), 0) + 1
    s = alpha.sum(-1, keepdims=True)
    p = alpha / s
    mse = ((np.asarray(y) - p) ** 2 + p * (1 - p) / (s + 1)).sum(-1)
    kl = np.asarray(_reference_kl(jnp.asarray(np.asarray(y) + (1 - np.asarray(y)) * alpha)))
    np.testing.assert_allclose(losses.evidential_mse_loss(logits, y, 0.0), mse.mean(), rtol=1e-6)
    np.testing.assert_allclose(losses.evidential_mse_loss(logits, y, 0.4), (mse + 0.4 * kl).mean(), rtol=1e-6)
    # no evidence at all: alpha = 1 everywhere, KL to the uniform Dirichlet is 0
    np.testing.assert_allclose(losses.dirichlet_kl_to_uniform(jnp.ones((2, 10))), 0.0, atol=2e-5)
    assert float(losses.annealing_weight(3)) == pytest.approx(0.3)
    assert float(losses.annealing_weight(25)) == 1.0


def test_evidential_log_and_digamma_losses():
    logits = jnp.array([[2.0, 0.0, -1.0]])
    y = jnp.array([[0.0, 1.0, 0.0]])
    alpha = np.array([3.0, 1.0, 1.0])
    np.testing.assert_allclose(losses.evidential_log_loss(logits, y, 0.0), np.log(5.0) - np.log(1.0), rtol=1e-6)
    np.testing.assert_allclose(losses.evidential_digamma_loss(logits, y, 0.0), float(digamma(5.0) - digamma(1.0)), rtol=1e-6)
    kl = float(_reference_kl(jnp.asarray(np.array([3.0, 1.0, 1.0]))))
    np.testing.assert_allclose(losses.evidential_log_loss(logits, y, 1.0), np.log(5.0) + kl, rtol=1e-6)
    assert alpha.sum() == 5.0
