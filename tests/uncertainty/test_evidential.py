"""Evidential deep learning: the losses against the paper's formulas in NumPy, the Dirichlet read-out,
and the shipped evidential CNN's uncertainty in and out of distribution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import digamma, gammaln

import xai_jax as xj
import xai_jax.uncertainty as xu


def paper_terms(logits, y):
    """Sensoy et al. 2018 written out in float64: evidence relu, alpha = e + 1, S = sum alpha."""
    alpha = np.maximum(logits, 0) + 1
    s = alpha.sum(-1, keepdims=True)
    p = alpha / s
    mse = ((y - p) ** 2 + p * (1 - p) / (s + 1)).sum(-1)  # Eq. 5
    log = (y * (np.log(s) - np.log(alpha))).sum(-1)  # Eq. 3
    dig = (y * (digamma(s) - digamma(alpha))).sum(-1)  # Eq. 4
    at = y + (1 - y) * alpha  # misleading evidence only
    k = alpha.shape[-1]
    st = at.sum(-1)
    kl = gammaln(st) - gammaln(k) - gammaln(at).sum(-1) + ((at - 1) * (digamma(at) - digamma(st)[:, None])).sum(-1)
    return mse, log, dig, kl


@pytest.mark.parametrize("epoch", [0, 3, 10, 25])
def test_losses_equal_the_papers_formulas(epoch):
    rng = np.random.default_rng(epoch)
    logits = rng.normal(0, 4, (64, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 64)
    y = np.eye(10)[labels]
    mse, log, dig, kl = paper_terms(logits.astype(np.float64), y)
    weight = min(1.0, epoch / 10)
    assert float(xu.annealing_weight(epoch)) == pytest.approx(weight)
    onehot = jnp.asarray(y, jnp.float32)
    np.testing.assert_allclose(
        xu.dirichlet_kl_to_uniform(jnp.asarray(y + (1 - y) * (np.maximum(logits, 0) + 1), jnp.float32)),
        kl,
        rtol=2e-5,
        atol=2e-5,
    )
    np.testing.assert_allclose(xu.evidential_mse_loss(logits, onehot, weight), np.mean(mse + weight * kl), rtol=2e-5)
    np.testing.assert_allclose(xu.evidential_log_loss(logits, onehot, weight), np.mean(log + weight * kl), rtol=2e-5)
    np.testing.assert_allclose(
        xu.evidential_digamma_loss(logits, onehot, weight), np.mean(dig + weight * kl), rtol=2e-5
    )


def test_dirichlet_read_out():
    logits = jnp.asarray([[0.0, 0.0, 0.0, 0.0], [-3.0, 5.0, 1.0, 0.0], [20.0, -1.0, -2.0, -3.0]])
    out = xu.dirichlet_from_logits(logits)
    np.testing.assert_allclose(out.alpha, [[1, 1, 1, 1], [1, 6, 2, 1], [21, 1, 1, 1]])
    np.testing.assert_allclose(out.strength, [4, 10, 24])
    np.testing.assert_allclose(out.uncertainty, [1.0, 0.4, 4 / 24], rtol=1e-6)  # u = K / S; no evidence: u = 1
    np.testing.assert_allclose(out.probabilities.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        out.uncertainty + (out.evidence / out.strength[:, None]).sum(-1), 1.0, rtol=1e-6
    )  # u + Σ b = 1
    np.testing.assert_array_equal(out.prediction, [0, 1, 0])
    tie = xu.dirichlet_from_logits(jnp.asarray([[-3.0, -1.0, -2.0]]))  # no evidence: uniform Dirichlet, u = 1
    assert float(tie.uncertainty[0]) == 1.0 and int(tie.prediction[0]) == 1  # ties broken by the logits
    soft = xu.dirichlet_from_logits(logits, evidence="softplus")
    assert bool(jnp.all(soft.uncertainty < 1))
    with pytest.raises(xj.InputError, match="evidence"):
        xu.dirichlet_from_logits(logits, evidence="sigmoid")


def auroc(inside, outside):
    inside, outside = np.asarray(inside)[:, None], np.asarray(outside)[None, :]
    return float((outside > inside).mean() + 0.5 * (outside == inside).mean())


def test_shipped_evidential_model_is_more_uncertain_out_of_distribution():
    model, variables = xj.models.load("evidential_cnn")
    images, labels = xj.data.mnist("sample")  # 300 digits of the standard test split
    clean = images[:100]
    rotated = xu.rotate(clean, 90.0)
    noise = xu.noise_images(jax.random.key(3), clean.shape)
    out = xu.evidential(model, variables, jnp.concatenate([clean, rotated, noise]))
    u = np.asarray(out.uncertainty).reshape(3, -1)
    median = {name: float(np.median(v)) for name, v in zip(("clean", "rotated 90°", "uniform noise"), u)}
    print(
        "median evidential uncertainty u:",
        median,
        "accuracy on the clean digits:",
        float((np.asarray(out.prediction[:100]) == labels[:100]).mean()),
    )
    separation = {name: auroc(u[0], v) for name, v in zip(("rotated 90°", "uniform noise"), u[1:])}
    print("AUROC of u, out- vs in-distribution:", separation)
    assert median["rotated 90°"] > 2 * median["clean"] and median["uniform noise"] > 2 * median["clean"]
    assert min(separation.values()) > 0.8
    np.testing.assert_allclose(out.probabilities.sum(-1), 1.0, rtol=1e-5)
