"""Monte-Carlo dropout: the predictive distribution of a dropout network and its uncertainty.

Gal & Ghahramani (2016), "Dropout as a Bayesian Approximation: Representing Model Uncertainty in
Deep Learning" (ICML): keeping dropout on at test time and averaging ``T`` stochastic forward passes
approximates the predictive distribution of a Bayesian network,

    p̄(y | x) = (1/T) Σ_t softmax(f_{ω_t}(x)),        ω_t ~ q(ω)  (a dropout mask per pass).

The average is over **probabilities**, not logits (the seed averaged logits, which is not the
predictive distribution).  From the ``T`` samples ``p_t = softmax(f_{ω_t}(x))``:

* predictive entropy (total uncertainty)   ``H[p̄] = -Σ_k p̄_k log p̄_k``
* expected entropy (aleatoric part)         ``E[H] = (1/T) Σ_t -Σ_k p_tk log p_tk``
* mutual information (epistemic part, BALD, Houlsby, Huszár, Ghahramani & Lengyel 2011, "Bayesian
  Active Learning for Classification and Preference Learning")
  ``MI = I[y; ω | x] = H[p̄] - E[H] = (1/T) Σ_t KL(p_t || p̄) ≥ 0``
* per-class standard deviation              ``σ_k = sqrt((1/T) Σ_t (p_tk - p̄_k)²)`` (population, ddof 0)

``MI`` is computed as ``(1/T) Σ_t KL(p_t || p̄)`` and clipped to ``[0, H]`` against round-off, so
``H = E[H] + MI`` holds to float32 and identical samples give ``MI = 0`` exactly.  Entropies are in
nats; ``log p_t`` comes from ``log_softmax`` and ``log p̄`` from a shifted log-mean-exp over
samples, so no ``log 0`` appears.

All ``T`` passes are one jitted call: the keys ``jax.random.split(key, samples)`` are vmapped, in
chunks of ``batch_size`` passes (``lax.map``), so peak memory is one chunk of passes.  Sample ``t``
runs ``model.apply(variables, x, **model_kwargs, **stochastic_kwargs, rngs={"dropout": keys[t]})``
-- exactly what a Python loop over the same keys computes (tested).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..core import InputError, Inputs, Problem, chunked_vmap, compiled
from ..core.checks import check_chunk_size, check_key, check_positive_int
from ..core.model import Model
from ..core.numerics import guarded_jit
from ._common import output_depends_on_rng, prepare_stochastic, with_rng

__all__ = ["MCDropoutResult", "mc_dropout", "predictive_statistics"]


class MCDropoutResult(NamedTuple):
    """Monte-Carlo dropout statistics of a batch (a pytree; every field a ``jax.Array``).

    Attributes:
      mean: ``(B, K)`` predictive mean probabilities ``p̄`` (the MC prediction is ``mean.argmax(-1)``).
      std: ``(B, K)`` per-class standard deviation of the sampled probabilities (ddof 0).
      predictive_entropy: ``(B,)`` ``H[p̄]`` (nats).
      expected_entropy: ``(B,)`` ``E_t H[p_t]`` (nats).
      mutual_information: ``(B,)`` ``H[p̄] - E[H]`` (BALD score, nats), ``0 ≤ MI ≤ H``.
      probabilities: ``(T, B, K)`` the sampled probabilities when ``return_samples=True``, else ``None``.
    """

    mean: jax.Array
    std: jax.Array
    predictive_entropy: jax.Array
    expected_entropy: jax.Array
    mutual_information: jax.Array
    probabilities: jax.Array | None = None

    @property
    def prediction(self) -> jax.Array:
        """``(B,)`` the class with the highest predictive mean probability."""
        return jnp.argmax(self.mean, axis=-1)


def predictive_statistics(log_probabilities: jax.Array, probabilities: jax.Array | None = None) -> MCDropoutResult:
    """The statistics of :class:`MCDropoutResult` from sampled log-probabilities ``(T, B, K)``.

    Works for any ensemble of categorical predictions (MC dropout, deep ensembles, SWAG samples).
    ``probabilities`` (``exp`` of the first argument, e.g. ``softmax(logits)``) may be passed when
    already computed.  Means are taken relative to the first sample (``p̄ = p_1 + mean_t(p_t - p_1)``,
    ``log p̄`` likewise in the log domain), and ``MI = mean_t KL(p_t || p̄)``, so identical samples
    give ``MI = 0`` and ``std = 0`` exactly.
    """
    log_p = jnp.asarray(log_probabilities, jnp.float32)
    if log_p.ndim < 2:
        raise InputError(f"log_probabilities must have shape (samples, ..., classes); got {tuple(log_p.shape)}.")
    p = jnp.exp(log_p) if probabilities is None else jnp.asarray(probabilities, jnp.float32)
    return _statistics(log_p, p)


@guarded_jit
def _statistics(log_p: jax.Array, p: jax.Array) -> MCDropoutResult:
    mean = p[0] + jnp.mean(p - p[0], axis=0)
    shift = log_p - log_p[0]
    top = jnp.max(shift, axis=0)
    log_mean = jnp.minimum(log_p[0] + top + jnp.log(jnp.mean(jnp.exp(shift - top), axis=0)), 0.0)
    predictive_entropy = jnp.maximum(-jnp.sum(mean * log_mean, axis=-1), 0.0)
    expected_entropy = jnp.mean(-jnp.sum(p * log_p, axis=-1), axis=0)
    mutual_information = jnp.clip(jnp.mean(jnp.sum(p * (log_p - log_mean), axis=-1), axis=0), 0.0, predictive_entropy)
    std = jnp.sqrt(jnp.mean(jnp.square(p - mean), axis=0))
    return MCDropoutResult(mean, std, predictive_entropy, expected_entropy, mutual_information)


@compiled(static=("samples", "batch_size", "rng_collection", "return_samples"))
def _mc_dropout(
    problem: Problem,
    inputs: Inputs,
    key: jax.Array,
    *,
    samples: int,
    batch_size: int | str | None,
    rng_collection: str,
    return_samples: bool,
) -> MCDropoutResult:
    def one(k: jax.Array) -> jax.Array:
        return problem.forward(inputs.variables, inputs.x, with_rng(inputs.kwargs, rng_collection, k)).astype(
            jnp.float32
        )

    logits = chunked_vmap(one, jax.random.split(key, samples), chunk_size=batch_size)
    stats = _statistics(jax.nn.log_softmax(logits, axis=-1), jax.nn.softmax(logits, axis=-1))
    return stats._replace(probabilities=jax.nn.softmax(logits, axis=-1)) if return_samples else stats


def mc_dropout(
    model: Model,
    variables: Any,
    x: Any,
    *,
    samples: int,
    key: jax.Array,
    batch_size: int | str | None = None,
    return_samples: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    stochastic_kwargs: Mapping[str, Any] | None = None,
    rng_collection: str = "dropout",
    require_stochastic: bool = True,
) -> MCDropoutResult:
    """Monte-Carlo dropout predictive distribution and uncertainty (Gal & Ghahramani 2016).

    ``samples`` stochastic forward passes with dropout on, all in one jitted, vmapped (chunked) call;
    pass ``t`` uses ``jax.random.split(key, samples)[t]`` as the dropout rng.  See the module
    docstring for the equations (predictive mean of probabilities, predictive entropy, expected
    entropy, mutual information / BALD of Houlsby et al. 2011, per-class std).

    Args:
      model: a Linen classifier with dropout (e.g. ``xj.models.load("mc_dropout_cnn")``) or a
        function ``f(variables, x, **kwargs)`` returning logits ``(B, K)``.
      variables: the model's variables.
      x: a batch ``(B, ...)``.
      samples: number of stochastic passes ``T`` (≥ 1).
      key: ``jax.random`` key (required).
      batch_size: passes evaluated at once (``None``: all ``T`` in one vmapped batch; ``"auto"``: from
        the memory budget).
      return_samples: also return the sampled probabilities ``(T, B, K)``.
      model_kwargs: other keyword arguments for the model.
      stochastic_kwargs: the keyword arguments that switch dropout on; default
        ``{"deterministic": False}`` (Flax's convention; use e.g. ``{"train": True}`` for models
        that name it otherwise).
      rng_collection: the rng stream dropout draws from (Flax: ``"dropout"``).
      require_stochastic: raise if the output does not depend on the dropout rng (see Raises).

    Returns:
      :class:`MCDropoutResult` (a NamedTuple of arrays).

    Raises:
      InputError: ``samples < 1``; a missing/invalid key; a model that does not accept
        ``stochastic_kwargs``; and (with ``require_stochastic``) a model whose output does not depend
        on the dropout rng -- no dropout layer, rate 0, or dropout not switched on -- for which all
        samples would be identical (checked on the traced model, not by comparing numbers).
    """
    samples = check_positive_int("samples", samples)
    batch_size = check_chunk_size("batch_size", batch_size)
    key = check_key("key", key)
    problem, inputs, note = prepare_stochastic(
        model,
        variables,
        x,
        None,
        key,
        model_kwargs=model_kwargs,
        stochastic_kwargs=stochastic_kwargs,
        rng_collection=rng_collection,
        run_without_switch=bool(require_stochastic),
    )
    if require_stochastic and not output_depends_on_rng(problem, inputs, rng_collection):
        raise InputError(
            f"the model's output does not depend on the {rng_collection!r} rng with "
            f"{dict(problem.forward.static_kwargs)}: it has no dropout (or rate 0, or dropout is not switched "
            "on), so all Monte-Carlo samples would be identical. Use a model with dropout (e.g. "
            "xj.models.load('mc_dropout_cnn')), pass stochastic_kwargs= that switch it on, or "
            "require_stochastic=False to run anyway." + note
        )
    return _mc_dropout(
        problem,
        inputs,
        key,
        samples=samples,
        batch_size=batch_size,
        rng_collection=rng_collection,
        return_samples=bool(return_samples),
    )
