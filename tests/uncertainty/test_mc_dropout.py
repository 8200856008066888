"""MC dropout: equal to a Python loop over the same keys; entropy decomposition; OOD separation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
import xai_jax.uncertainty as xu

SAMPLES = 5


def loop_logits(model, variables, x, key, samples):
    """The reference: one ordinary ``model.apply`` per key, in a Python loop (each call jitted, as
    eager op-by-op dropout would take most of the test budget to compile on a busy CPU)."""
    apply = jax.jit(lambda v, x, k: model.apply(v, x, deterministic=False, rngs={"dropout": k}))
    return np.stack([np.asarray(apply(variables, x, k)) for k in jax.random.split(key, samples)])


def softmax(z):
    return np.asarray(jax.nn.softmax(jnp.asarray(z), axis=-1))


def numpy_statistics(p):
    """Gal & Ghahramani / Houlsby et al. statistics from sampled probabilities (T, B, K), in float64."""
    p = p.astype(np.float64)
    mean = p.mean(0)
    h = -(mean * np.log(mean)).sum(-1)
    eh = -(p * np.log(p)).sum(-1).mean(0)
    kl = (p * (np.log(p) - np.log(mean))).sum(-1).mean(0)  # MI = E_t KL(p_t || p̄), a second formula
    return mean, p.std(0), h, eh, kl


@pytest.fixture(scope="module")
def reference(tiny_dropout, tiny_x):
    model, variables = tiny_dropout
    key = jax.random.key(3)
    logits = loop_logits(model, variables, tiny_x, key, SAMPLES)
    return key, softmax(logits), logits


def test_one_pass_at_a_time_equals_python_loop_exactly(tiny_dropout, tiny_x):
    model, variables = tiny_dropout
    key = jax.random.key(3)
    loop = softmax(loop_logits(model, variables, tiny_x, key, SAMPLES))
    result = xu.mc_dropout(model, variables, tiny_x, samples=SAMPLES, key=key, batch_size=1, return_samples=True)
    np.testing.assert_array_equal(np.asarray(result.probabilities), loop)  # bit for bit: same keys, same masks
    mean, std, h, eh, mi = numpy_statistics(loop)
    np.testing.assert_allclose(result.mean, mean, atol=1e-7)
    np.testing.assert_allclose(result.std, std, atol=1e-7)
    np.testing.assert_allclose(result.predictive_entropy, h, atol=1e-6)
    np.testing.assert_allclose(result.expected_entropy, eh, atol=1e-6)
    np.testing.assert_allclose(result.mutual_information, mi, atol=1e-6)
    assert float(result.mutual_information.max()) > 1e-3  # the samples really differ


@pytest.mark.parametrize("batch_size", [None, 2])
def test_vmapped_and_chunked_passes_equal_the_loop(tiny_dropout, tiny_x, reference, batch_size):
    # vmapping S passes makes XLA run a batch of S*B images, whose per-image results may differ from a
    # batch of B in the last bit (XLA:CPU is not batch-invariant): equal to float32 round-off.
    model, variables = tiny_dropout
    key, loop, _ = reference
    result = xu.mc_dropout(
        model, variables, tiny_x, samples=SAMPLES, key=key, batch_size=batch_size, return_samples=True
    )
    np.testing.assert_allclose(np.asarray(result.probabilities), loop, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.mean, loop.mean(0), atol=1e-6)


def test_entropy_decomposition_and_bounds(tiny_dropout, tiny_x):
    model, variables = tiny_dropout
    r = xu.mc_dropout(model, variables, tiny_x, samples=SAMPLES, key=jax.random.key(4), return_samples=True)
    h, eh, mi = (np.asarray(a) for a in (r.predictive_entropy, r.expected_entropy, r.mutual_information))
    np.testing.assert_allclose(h, eh + mi, atol=1e-6 * max(1.0, h.max()))  # H = E[H] + MI to float32
    assert np.all(mi >= 0) and np.all(mi <= h + 1e-7) and np.all(h <= np.log(5) + 1e-6)
    np.testing.assert_allclose(np.asarray(r.mean).sum(-1), 1.0, atol=1e-6)


def test_averages_probabilities_not_logits(tiny_dropout, tiny_x, reference):
    model, variables = tiny_dropout
    key, loop, logits = reference
    r = xu.mc_dropout(model, variables, tiny_x, samples=SAMPLES, key=key, return_samples=True)
    seed_mistake = softmax(logits.mean(0))
    np.testing.assert_allclose(r.mean, loop.mean(0), atol=1e-6)
    assert np.abs(np.asarray(r.mean) - seed_mistake).max() > 1e-3


def test_predictive_statistics_of_identical_samples():
    p = jnp.asarray([[0.7, 0.2, 0.1]] * 4)[:, None]  # (T=4, B=1, K=3)
    r = xu.predictive_statistics(jnp.log(p))
    assert float(r.mutual_information[0]) == 0.0 and float(r.std.max()) == 0.0
    np.testing.assert_allclose(
        r.predictive_entropy, [-(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1))], rtol=1e-6
    )


def test_bad_input(tiny_dropout, tiny_plain, tiny_x):
    model, variables = tiny_dropout
    key = jax.random.key(0)
    for samples in (0, -1, 2.5, True):
        with pytest.raises(xj.InputError, match="samples"):
            xu.mc_dropout(model, variables, tiny_x, samples=samples, key=key)
    with pytest.raises(xj.InputError, match="key"):
        xu.mc_dropout(model, variables, tiny_x, samples=2, key=None)
    with pytest.raises(TypeError, match="key"):
        xu.mc_dropout(model, variables, tiny_x, samples=2)  # keyword-only and required
    with pytest.raises(xj.InputError, match="batch axis"):
        xu.mc_dropout(model, variables, tiny_x[0, ..., 0], samples=2, key=key)
    # dropout switched off: every sample would be identical
    with pytest.raises(xj.InputError, match="identical"):
        xu.mc_dropout(model, variables, tiny_x, samples=2, key=key, stochastic_kwargs={"deterministic": True})
    # a model without dropout (and without a `deterministic` argument): said plainly
    plain, plain_vars = tiny_plain
    with pytest.raises(xj.InputError, match="no dropout.*identical"):
        xu.mc_dropout(plain, plain_vars, tiny_x, samples=2, key=key)
    # switch keywords the model does not take
    with pytest.raises(xj.InputError, match="does not accept the keyword arguments {'train': True}.*stochastic_kwargs"):
        xu.mc_dropout(plain, plain_vars, tiny_x, samples=2, key=key, stochastic_kwargs={"train": True})
    with pytest.raises(xj.InputError, match="identical"):
        xu.mc_dropout(plain, plain_vars, tiny_x, samples=2, key=key, stochastic_kwargs={})
    # documented escape hatch: run anyway; then MI and std are exactly 0
    r = xu.mc_dropout(plain, plain_vars, tiny_x, samples=2, key=key, stochastic_kwargs={}, require_stochastic=False)
    # (not exactly 0: XLA:CPU's vectorised exp may round identical rows differently by position)
    assert float(r.mutual_information.max()) < 1e-6 and float(r.std.max()) < 1e-6


class TrainSwitched(nn.Module):
    """Dropout switched by ``train=True`` (not Flax's usual ``deterministic=False``)."""

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = nn.Dropout(0.5)(nn.Dense(6)(x.reshape((x.shape[0], -1))), deterministic=not train)
        return nn.Dense(3)(x)


def test_model_with_another_dropout_switch(tiny_x):
    model = TrainSwitched()
    variables = model.init(jax.random.key(0), tiny_x)
    key = jax.random.key(1)
    # the default switch is rejected: the error says so and names the way out
    with pytest.raises(xj.InputError, match=r"identical.*does not take \{'deterministic': False\}.*stochastic_kwargs="):
        xu.mc_dropout(model, variables, tiny_x, samples=2, key=key)
    with pytest.raises(xj.InputError, match=r"same map.*does not take \{'deterministic': False\}"):
        xu.explain_mc("gradient", model, variables, tiny_x, 0, samples=2, key=key)
    # require_stochastic=False does not silently drop the switch
    with pytest.raises(xj.InputError, match="does not accept the keyword arguments"):
        xu.mc_dropout(model, variables, tiny_x, samples=2, key=key, require_stochastic=False)
    r = xu.mc_dropout(model, variables, tiny_x, samples=4, key=key, stochastic_kwargs={"train": True})
    assert float(r.std.max()) > 0


def test_rotate():
    image = np.zeros((1, 5, 5, 1), np.float32)
    image[0, 0, 2, 0] = 1.0  # top centre
    np.testing.assert_allclose(xu.rotate(image, 0.0), image, atol=1e-6)
    np.testing.assert_allclose(xu.rotate(image, 90.0), np.rot90(image, 1, axes=(1, 2)), atol=1e-5)  # counter-clockwise
    with pytest.raises(xj.InputError, match="NHWC"):
        xu.rotate(image[..., 0], 90.0)


def auroc(inside, outside):
    """P(score_out > score_in): 1 = perfect separation, 0.5 = none."""
    inside, outside = np.asarray(inside)[:, None], np.asarray(outside)[None, :]
    return float((outside > inside).mean() + 0.5 * (outside == inside).mean())


def test_shipped_model_mutual_information_higher_out_of_distribution():
    model, variables = xj.models.load("mc_dropout_cnn")
    images, _ = xj.data.mnist("sample")  # 300 digits of the standard test split
    clean = images[:32]
    rotated = xu.rotate(clean, 90.0)
    noise = xu.noise_images(jax.random.key(7), clean.shape)
    r = xu.mc_dropout(model, variables, jnp.concatenate([clean, rotated, noise]), samples=8, key=jax.random.key(0))
    mi = np.asarray(r.mutual_information).reshape(3, -1)
    report = {
        name: (float(np.median(m)), auroc(mi[0], m)) for name, m in zip(("clean", "rotated 90°", "uniform noise"), mi)
    }
    print("median MI (nats) and AUROC vs clean:", report)
    assert np.median(mi[1]) > 5 * np.median(mi[0]) and auroc(mi[0], mi[1]) > 0.85
    assert np.median(mi[2]) > 5 * np.median(mi[0]) and auroc(mi[0], mi[2]) > 0.75


def test_composes_with_jit_and_grad(tiny_dropout, tiny_x):
    model, variables = tiny_dropout
    key = jax.random.key(4)  # same configuration as test_entropy_decomposition_and_bounds: no new eager compile

    def total_mutual_information(x):
        return jnp.sum(
            xu.mc_dropout(model, variables, x, samples=SAMPLES, key=key, return_samples=True).mutual_information
        )

    value, grad = jax.jit(jax.value_and_grad(total_mutual_information))(tiny_x)  # e.g. BALD-driven input search
    assert float(value) == pytest.approx(float(total_mutual_information(tiny_x)), rel=1e-5)
    assert grad.shape == tiny_x.shape and bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad).max()) > 0
