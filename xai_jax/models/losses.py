"""Evidential deep learning losses (Sensoy, Kaplan & Kandemir, NeurIPS 2018).

M. Sensoy, L. Kaplan, M. Kandemir, "Evidential Deep Learning to Quantify Classification
Uncertainty", NeurIPS 2018, arXiv:1806.01768.

A network's outputs are read as evidence for a Dirichlet over the class probabilities:
``e = relu(logits)`` (non-negative evidence), ``alpha = e + 1``, strength ``S = sum_j alpha_j``,
expected probability ``p = alpha / S``, uncertainty mass ``u = K / S``.  For a one-hot label ``y``
the paper gives three per-sample losses:

* Eq. 3 (type II maximum likelihood):   ``sum_j y_j (log S - log alpha_j)``
* Eq. 4 (Bayes risk of cross-entropy):  ``sum_j y_j (digamma(S) - digamma(alpha_j))``
* Eq. 5 (Bayes risk of the squared error, the one the paper uses):
  ``sum_j (y_j - p_j)^2 + p_j (1 - p_j) / (S + 1)``

each plus the regulariser ``lambda_t * KL(Dir(alpha_tilde) || Dir(1))`` on the *misleading*
evidence, ``alpha_tilde = y + (1 - y) * alpha`` (the true class's alpha set to 1), with the annealing
weight ``lambda_t = min(1, t / 10)`` at epoch ``t`` (see :func:`annealing_weight`).

All losses here take raw ``logits`` (B, K), one-hot ``labels_onehot`` (B, K) and the weight, and
return the mean over the batch (the paper writes a sum over samples; the mean only rescales the
learning rate).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammaln

__all__ = [
    "annealing_weight",
    "dirichlet_kl_to_uniform",
    "evidential_digamma_loss",
    "evidential_log_loss",
    "evidential_mse_loss",
]


def annealing_weight(epoch: int | jax.Array, annealing_epochs: int = 10) -> jax.Array:
    """KL weight ``lambda_t = min(1, t / annealing_epochs)`` of Sensoy et al. 2018 (t = epoch, from 0)."""
    return jnp.minimum(1.0, jnp.asarray(epoch, jnp.float32) / annealing_epochs)


def _alpha(logits: jax.Array) -> jax.Array:
    return jax.nn.relu(logits) + 1.0


def dirichlet_kl_to_uniform(alpha: jax.Array) -> jax.Array:
    """``KL(Dir(alpha) || Dir(1, ..., 1))`` per sample, over the last axis (Sensoy et al. 2018, Sec. 3).

    ``log Gamma(sum_k alpha_k) - log Gamma(K) - sum_k log Gamma(alpha_k)
    + sum_k (alpha_k - 1) (digamma(alpha_k) - digamma(sum_j alpha_j))``.
    """
    k = alpha.shape[-1]
    strength = jnp.sum(alpha, axis=-1, keepdims=True)
    log_norm = gammaln(strength[..., 0]) - gammaln(float(k)) - jnp.sum(gammaln(alpha), axis=-1)
    return log_norm + jnp.sum((alpha - 1.0) * (digamma(alpha) - digamma(strength)), axis=-1)


def _kl_term(alpha: jax.Array, y: jax.Array) -> jax.Array:
    """KL of the evidence left after removing the true class: ``alpha_tilde = y + (1 - y) * alpha``."""
    return dirichlet_kl_to_uniform(y + (1.0 - y) * alpha)


def evidential_mse_loss(logits: jax.Array, labels_onehot: jax.Array, epoch_weight: float | jax.Array) -> jax.Array:
    """Expected squared error under the Dirichlet, plus the annealed KL (Sensoy et al. 2018, Eq. 5).

    With ``alpha = relu(logits) + 1``, ``S = sum_j alpha_j`` and ``p = alpha / S``, per sample::

        L = sum_j (y_j - p_j)^2 + p_j (1 - p_j) / (S + 1)
            + epoch_weight * KL(Dir(alpha_tilde) || Dir(1)),   alpha_tilde = y + (1 - y) * alpha

    Args:
        logits: network outputs ``(B, K)``.
        labels_onehot: one-hot labels ``(B, K)``.
        epoch_weight: the KL weight, ``min(1, epoch / 10)`` in the paper (:func:`annealing_weight`).

    Returns:
        The mean loss over the batch (a scalar).
    """
    y = labels_onehot.astype(logits.dtype)
    alpha = _alpha(logits)
    strength = jnp.sum(alpha, axis=-1, keepdims=True)
    p = alpha / strength
    err = jnp.sum((y - p) ** 2, axis=-1)
    var = jnp.sum(p * (1.0 - p) / (strength + 1.0), axis=-1)
    return jnp.mean(err + var + epoch_weight * _kl_term(alpha, y))


def evidential_log_loss(logits: jax.Array, labels_onehot: jax.Array, epoch_weight: float | jax.Array) -> jax.Array:
    """Type II maximum likelihood loss plus the annealed KL (Sensoy et al. 2018, Eq. 3).

    Per sample: ``sum_j y_j (log S - log alpha_j) + epoch_weight * KL(Dir(alpha_tilde) || Dir(1))``,
    with ``alpha = relu(logits) + 1``.  Returns the batch mean.
    """
    y = labels_onehot.astype(logits.dtype)
    alpha = _alpha(logits)
    strength = jnp.sum(alpha, axis=-1, keepdims=True)
    nll = jnp.sum(y * (jnp.log(strength) - jnp.log(alpha)), axis=-1)
    return jnp.mean(nll + epoch_weight * _kl_term(alpha, y))


def evidential_digamma_loss(logits: jax.Array, labels_onehot: jax.Array, epoch_weight: float | jax.Array) -> jax.Array:
    """Bayes risk of the cross-entropy plus the annealed KL (Sensoy et al. 2018, Eq. 4).

    Per sample: ``sum_j y_j (digamma(S) - digamma(alpha_j)) + epoch_weight * KL(Dir(alpha_tilde) ||
    Dir(1))``, with ``alpha = relu(logits) + 1``.  Returns the batch mean.
    """
    y = labels_onehot.astype(logits.dtype)
    alpha = _alpha(logits)
    strength = jnp.sum(alpha, axis=-1, keepdims=True)
    risk = jnp.sum(y * (digamma(strength) - digamma(alpha)), axis=-1)
    return jnp.mean(risk + epoch_weight * _kl_term(alpha, y))
