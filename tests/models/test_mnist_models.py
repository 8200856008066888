"""The MNIST zoo: shapes and dtypes, shipped checkpoints load and are accurate, training steps are
deterministic and their fast gradients equal plain autodiff, the evidential loss is Sensoy et al.'s."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.special import digamma, gammaln

from tests.models.utils import np_init
from xai_jax.models import losses, mnist, zoo
from xai_jax.models import train as T

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


def _sample_scores(name, n=1000, seed=3):
    gen, gv = zoo.load(name)
    clf, cv = zoo.load("mnist_cnn")
    z = _normal((n, 100), seed=seed)
    images = jax.jit(gen.apply)(gv, z)
    probs = np.asarray(jax.nn.softmax(jax.jit(clf.apply)(cv, images)))
    return z, images, probs


@pytest.mark.parametrize("name", GENERATORS)
def test_generator_samples_look_like_digits(name):
    gen, gv = zoo.load(name)
    clf, cv = zoo.load("mnist_cnn")
    images = jax.jit(gen.apply)(gv, _normal((64, 100)))
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    first = jax.nn.softmax(jax.jit(clf.apply)(cv, images))
    assert float(first.max(axis=1).mean()) >= 0.7  # as before the retraining
    assert len(np.unique(np.asarray(first.argmax(axis=1)))) >= 7  # no mode collapse
    z, images, probs = _sample_scores(name)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    top = probs.max(axis=1)
    # the manifest's measurement (10,000 samples) is what 1,000 fresh samples show, within 4 binomial
    # standard deviations of the 1,000-sample estimate
    quality = zoo.info(name)["sample_quality"]
    recorded = quality["fraction_top_probability_ge_0.9"]
    assert abs((top >= 0.9).mean() - recorded) <= 4 * np.sqrt(recorded * (1 - recorded) / len(z)), (top >= 0.9).mean()
    assert zoo.info(name)["size_bytes"] <= 4_000_000


@pytest.mark.parametrize("name", ["mnist_gan_generator", "dcgan_generator"])
def test_generator_quality_bar(name):
    """The bar of issue 14: >= 90 % of samples z ~ N(0, I) scored >= 0.9 by the classifier, every class
    >= 5 % of them (here on 1,000 samples; the manifest holds the measurement on 10,000)."""
    z, _, probs = _sample_scores(name)
    top, predicted = probs.max(axis=1), probs.argmax(axis=1)
    assert (top >= 0.9).mean() >= 0.9, (top >= 0.9).mean()
    counts = np.bincount(predicted, minlength=10)
    assert counts.min() >= 0.05 * len(z), counts


def test_class_code_is_uniform_under_the_prior_and_differentiable():
    z = _normal((20_000, 100), seed=4)
    counts = np.bincount(np.asarray(mnist.code_classes(z)), minlength=10)
    assert np.all(np.abs(counts / len(z) - 0.1) < 0.01), counts
    code = mnist.class_code(z[:4], 10, 4.0)
    np.testing.assert_allclose(code.sum(axis=1), 1.0, rtol=1e-6)
    grad = jax.grad(lambda z: mnist.class_code(z, 10, 4.0)[:, 3].sum())(z[:4])
    assert float(jnp.abs(grad[:, :10]).max()) > 0 and float(jnp.abs(grad[:, 10:]).max()) == 0.0
    # classes=0: a plain unconditional generator, no code read
    g = mnist.GanGenerator(classes=0, hidden=256, depth=2)
    v = np_init(g, jnp.zeros((1, 100)))
    assert v["params"]["fc1"]["kernel"].shape == (100, 256) and v["params"]["fc2"]["kernel"].shape == (256, 512)
    coded = np_init(mnist.GanGenerator(classes=10), jnp.zeros((1, 100)))
    assert coded["params"]["fc1"]["kernel"].shape == (110, 128)  # z and its class code


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


def _reference_gan_step(g, d, opt, real_label, class_weight, gv, dp, gs, ds, real, key, labels):
    """The GAN step written plainly: two generator forward passes, autodiff through both losses."""
    stats = gv.get("batch_stats")

    def gen(params, z):
        if stats is None:
            return g.apply({"params": params}, z), None
        out, upd = g.apply({"params": params, "batch_stats": stats}, z, train=True, mutable=["batch_stats"])
        return out, upd["batch_stats"]

    def bce(logits, label):
        return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)).mean()

    z = jax.random.normal(key, (real.shape[0], 100))
    fake = gen(gv["params"], z)[0]

    def d_loss(dp):
        real_logit, real_classes = d.apply({"params": dp}, real, with_classes=True)
        fake_logit, _ = d.apply({"params": dp}, fake, with_classes=True)
        ce = optax.softmax_cross_entropy_with_integer_labels(real_classes, labels).mean()
        return bce(real_logit, real_label) + bce(fake_logit, 0.0) + ce

    dl, dg = jax.value_and_grad(d_loss)(dp)
    upd, ds = opt.update(dg, ds, dp)
    dp = optax.apply_updates(dp, upd)

    def g_loss(params):
        image, new_stats = gen(params, z)
        logit, classes = d.apply({"params": dp}, image, with_classes=True)
        ce = optax.softmax_cross_entropy_with_integer_labels(classes, jnp.argmax(z[:, :10], axis=-1)).mean()
        return bce(logit, 1.0) + class_weight * ce, new_stats

    (gl, new_stats), gg = jax.value_and_grad(g_loss, has_aux=True)(gv["params"])
    upd, gs = opt.update(gg, gs, gv["params"])
    new_gv = {"params": optax.apply_updates(gv["params"], upd)}
    if stats is not None:
        new_gv["batch_stats"] = new_stats
    return new_gv, dp, gs, ds, dl, gl


@pytest.mark.parametrize(
    "g, d",
    [
        (mnist.DCGANGenerator(features=8, classes=10), mnist.DCGANDiscriminator(features=8, classes=10)),
        (mnist.GanGenerator(hidden=16, depth=2, classes=10), mnist.GanDiscriminator(hidden=16, depth=2, classes=10)),
    ],
)
def test_ac_gan_step_equals_plain_autodiff(g, d):
    """One generator forward pass per step (its pull-back reused after the discriminator's update)
    gives the same update as differentiating the two losses separately; labels train the class head."""
    real, labels = _images(6), jnp.arange(6) % 10
    gv = dict(np_init(g, jnp.zeros((1, 100))))
    dp = np_init(d, real)["params"]
    opt = optax.sgd(0.1)  # the update is the gradient: a wrong gradient shows
    args = (gv, dp, opt.init(gv["params"]), opt.init(dp), real, jax.random.key(4), labels)
    step = T.make_gan_step(g, d, opt, opt, real_label=0.9, class_weight=2.0, fast=False)
    ours, reference = step(*args), _reference_gan_step(g, d, opt, 0.9, 2.0, *args)
    for u, v in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours[1]["fc_classes"]["kernel"], dp["fc_classes"]["kernel"])  # the class head learns
    fast = T.make_gan_step(g, d, opt, opt, real_label=0.9, class_weight=2.0, fast=True)(*args)
    for u, v in zip(jax.tree.leaves(fast), jax.tree.leaves(reference)):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5)


def test_refreshed_batch_stats_are_the_population_statistics():
    """After the refresh, BatchNorm's stored mean/variance of ``bn0`` are those of its input over
    codes z ~ N(0, I) (measured here on 8,192 fresh codes), whatever they were before."""
    g = mnist.DCGANGenerator(features=8)
    gv = np_init(g, jnp.zeros((1, 100)))
    stale = {**gv, "batch_stats": jax.tree.map(lambda a: a + 3.0, gv["batch_stats"])}
    fresh = T.refresh_batch_stats(g, stale, jax.random.key(1), batches=100, batch_size=256)
    z = jax.random.normal(jax.random.key(2), (8192, 100))
    _, state = g.apply(
        gv, z, train=True, mutable=["intermediates", "batch_stats"], capture_intermediates=lambda m, _: m.name == "fc"
    )
    pre = state["intermediates"]["fc"]["__call__"][0]  # bn0's input
    # momentum 0.9 averages ~10 batches of 256: a few percent of noise, far below the stale shift of 3
    np.testing.assert_allclose(fresh["batch_stats"]["bn0"]["mean"], pre.mean(axis=0), atol=0.1)
    np.testing.assert_allclose(fresh["batch_stats"]["bn0"]["var"], pre.var(axis=0), rtol=0.25)
    assert T.refresh_batch_stats(mnist.GanGenerator(), {"params": {}}, jax.random.key(0), batches=1, batch_size=1) == {
        "params": {}
    }


def test_averaging_forgets_the_initial_weights():
    recipe = T.GanRecipe(ema_decay=0.999)
    assert recipe.ema_weight(0) == pytest.approx(0.1) and recipe.ema_weight(10**6) == 0.999
    weights = [recipe.ema_weight(t) for t in range(859)]  # one epoch of the MLP GAN at batch size 64
    assert np.prod(weights) < 1e-3  # the random initial weights no longer count after one epoch


def test_unknown_training_name():
    with pytest.raises(KeyError, match="mnist_cnn"):
        T.train("mnist_cn")


# ------------------------------------------------------------------------------ evidential losses


def _reference_kl(alpha):
    k = alpha.shape[-1]
    s = alpha.sum(-1, keepdims=True)
    return (
        gammaln(s[..., 0])
        - gammaln(float(k))
        - gammaln(alpha).sum(-1)
        + ((alpha - 1) * (digamma(alpha) - digamma(s))).sum(-1)
    )


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
    np.testing.assert_allclose(
        losses.evidential_digamma_loss(logits, y, 0.0), float(digamma(5.0) - digamma(1.0)), rtol=1e-6
    )
    kl = float(_reference_kl(jnp.asarray(np.array([3.0, 1.0, 1.0]))))
    np.testing.assert_allclose(losses.evidential_log_loss(logits, y, 1.0), np.log(5.0) + kl, rtol=1e-6)
    assert alpha.sum() == 5.0


def _shifted(image: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """``image`` (H, W, C) moved down by ``dr`` and right by ``dc`` pixels, zeros moved in."""
    h, w = image.shape[:2]
    out = np.zeros_like(image)
    out[max(dr, 0) : h + min(dr, 0), max(dc, 0) : w + min(dc, 0)] = image[
        max(-dr, 0) : h + min(-dr, 0), max(-dc, 0) : w + min(-dc, 0)
    ]
    return out


def test_random_translation_moves_each_image_by_its_own_offset():
    images = np.asarray(jax.random.uniform(jax.random.key(0), (64, 9, 8, 2)))
    moved = np.asarray(T.random_translation(jax.random.key(1), jnp.asarray(images), 2))
    offsets = []
    for image, result in zip(images, moved):
        shifts = [(dr, dc) for dr in range(-2, 3) for dc in range(-2, 3)]
        matches = [s for s in shifts if np.array_equal(result, _shifted(image, *s))]
        assert len(matches) == 1  # exactly one whole-pixel shift within 2 px, zero fill
        offsets += matches
    assert len(set(offsets)) > 15  # each image draws its own offset (25 possible)
