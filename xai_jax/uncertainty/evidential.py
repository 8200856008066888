"""Evidential deep learning: a classifier's outputs read as a Dirichlet over class probabilities.

Sensoy, Kaplan & Kandemir (2018), "Evidential Deep Learning to Quantify Classification
Uncertainty" (NeurIPS).  The network's outputs are non-negative *evidence* ``e_k`` (``relu`` of the
logits in the paper and the seed; ``softplus`` or a clipped ``exp`` also occur in follow-up work)
and parameterise a Dirichlet ``Dir(p | α)`` with

    α_k = e_k + 1,    S = Σ_k α_k,    E[p_k] = α_k / S,    u = K / S     (their Eq. 1-2)

``u ∈ (0, 1]`` is the uncertainty mass: 1 with no evidence at all (``α = 1``, the uniform
Dirichlet), small when the total evidence is large.  Belief masses are ``b_k = e_k / S`` with
``u + Σ_k b_k = 1``.

The losses (Eq. 3 log, Eq. 4 digamma, Eq. 5 expected MSE -- the one the paper and the shipped
``evidential_cnn`` use -- each with the annealed ``KL(Dir(α̃) || Dir(1))`` term, ``α̃ = y + (1 - y) ⊙
α``, weight ``λ_t = min(1, t / 10)``) live with the training code in :mod:`xai_jax.models.losses` and
are re-exported here; the training entry point is ``xai-jax train evidential_cnn``
(:func:`xai_jax.models.train.train`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..core import InputError, Inputs, Problem, compiled, prepare
from ..core.model import Model
from ..models.losses import (
    annealing_weight,
    dirichlet_kl_to_uniform,
    evidential_digamma_loss,
    evidential_log_loss,
    evidential_mse_loss,
)

__all__ = [
    "EVIDENCE",
    "EvidentialOutput",
    "annealing_weight",
    "dirichlet_from_logits",
    "dirichlet_kl_to_uniform",
    "evidential",
    "evidential_digamma_loss",
    "evidential_log_loss",
    "evidential_mse_loss",
]

EVIDENCE = ("relu", "softplus", "exp")


class EvidentialOutput(NamedTuple):
    """The Dirichlet of an evidential classifier for a batch (a pytree of arrays).

    Attributes:
      alpha: ``(B, K)`` Dirichlet concentrations ``α = e + 1``.
      evidence: ``(B, K)`` evidence ``e ≥ 0``.
      probabilities: ``(B, K)`` expected probabilities ``α / S``.
      uncertainty: ``(B,)`` uncertainty mass ``u = K / S`` in ``(0, 1]``.
      strength: ``(B,)`` Dirichlet strength ``S = Σ α``.
      prediction: ``(B,)`` ``argmax`` of the logits -- an argmax of ``α`` (the evidence function is
        monotone), with ties among classes without evidence broken by the logits.  With no evidence
        at all (``u = 1``) the Dirichlet itself is uniform and says "don't know".
    """

    alpha: jax.Array
    evidence: jax.Array
    probabilities: jax.Array
    uncertainty: jax.Array
    strength: jax.Array
    prediction: jax.Array


def dirichlet_from_logits(logits: jax.Array, *, evidence: str = "relu") -> EvidentialOutput:
    """``α = evidence(logits) + 1``, ``E[p] = α / S``, ``u = K / S`` (Sensoy et al. 2018, Eq. 1-2).

    ``evidence``: ``"relu"`` (the paper's and the shipped model's), ``"softplus"``, or ``"exp"``
    (``exp(clip(logits, -10, 10))``).
    """
    logits = jnp.asarray(logits, jnp.float32)
    if logits.ndim < 1 or logits.shape[-1] < 2:
        raise InputError(f"logits must have a class axis of size >= 2 (shape (B, K)); got {tuple(logits.shape)}.")
    if evidence == "relu":
        e = jax.nn.relu(logits)
    elif evidence == "softplus":
        e = jax.nn.softplus(logits)
    elif evidence == "exp":
        e = jnp.exp(jnp.clip(logits, -10.0, 10.0))
    else:
        raise InputError(f"evidence must be one of {EVIDENCE}; got {evidence!r}.")
    alpha = e + 1.0
    strength = jnp.sum(alpha, axis=-1)
    return EvidentialOutput(
        alpha, e, alpha / strength[..., None], logits.shape[-1] / strength, strength, jnp.argmax(logits, axis=-1)
    )


@compiled(static=("evidence",))
def _evidential(problem: Problem, inputs: Inputs, *, evidence: str) -> EvidentialOutput:
    return dirichlet_from_logits(problem.outputs(inputs), evidence=evidence)


def evidential(
    model: Model, variables: Any, x: Any, *, evidence: str = "relu", model_kwargs: Mapping[str, Any] | None = None
) -> EvidentialOutput:
    """Dirichlet parameters, expected probabilities and uncertainty ``u = K / S`` of an evidential model.

    Sensoy et al. (2018): ``α = relu(f(x)) + 1``, ``E[p] = α / S``, ``u = K / S``.  Use with a model
    trained with an evidential loss (``xj.models.load("evidential_cnn")``); on an ordinary
    cross-entropy model the numbers are defined but are not a calibrated uncertainty.

    Returns:
      :class:`EvidentialOutput` ``(alpha, evidence, probabilities, uncertainty, strength, prediction)``.
    """
    if evidence not in EVIDENCE:
        raise InputError(f"evidence must be one of {EVIDENCE}; got {evidence!r}.")
    problem, inputs = prepare(model, variables, x, None, model_kwargs)
    return _evidential(problem, inputs, evidence=evidence)
