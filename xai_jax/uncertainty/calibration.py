"""Calibration: expected/maximum calibration error, reliability bins, and temperature scaling.

Guo, Pleiss, Sun & Weinberger (2017), "On Calibration of Modern Neural Networks" (ICML).

With confidence ``ĉ_i = max_k p_ik``, prediction ``ŷ_i = argmax_k p_ik`` and ``M`` equal-width bins
``B_m = {i : ĉ_i ∈ ((m-1)/M, m/M]}`` (a confidence of exactly 0 falls in the first bin):

    acc(B_m)  = (1/|B_m|) Σ_{i∈B_m} 1[ŷ_i = y_i],      conf(B_m) = (1/|B_m|) Σ_{i∈B_m} ĉ_i
    ECE = Σ_m (|B_m| / n) |acc(B_m) - conf(B_m)|        (their Eq. 3; M = 15 by default)
    MCE = max_{m : |B_m| > 0} |acc(B_m) - conf(B_m)|    (their Eq. 4)

Temperature scaling divides the logits by one scalar ``T > 0`` fitted by minimising the negative
log-likelihood ``NLL(T) = -(1/n) Σ_i log softmax(z_i / T)_{y_i}`` on a **held-out** split (the
validation split carved from the training set -- never the test set, whose numbers it would
inflate; the seed fitted it on training data).  ``T`` is optimised as ``log T`` (so it stays
positive) with L-BFGS (``optax.lbfgs``, default) or Adam.  ``T = 1`` is the identity; for any ``T``
the argmax, hence the accuracy, is unchanged; ``T > 1`` softens overconfident predictions.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core import InputError, check_input, compat, make_forward
from ..core.checks import check_positive_int
from ..core.model import Model, adapt_model
from ..core.numerics import guarded_jit

__all__ = [
    "ReliabilityBins",
    "TemperatureFit",
    "expected_calibration_error",
    "fit_temperature",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "predict_logits",
    "reliability_bins",
    "temperature_scale",
]


class ReliabilityBins(NamedTuple):
    """Per-bin calibration statistics (``M`` equal-width confidence bins on ``[0, 1]``).

    Attributes:
      edges: ``(M + 1,)`` bin edges ``0, 1/M, ..., 1``; bin ``m`` is ``(edges[m], edges[m+1]]``.
      counts: ``(M,)`` number of samples per bin.
      accuracy: ``(M,)`` fraction correct per bin, ``NaN`` for an empty bin (masked in pictures).
      confidence: ``(M,)`` mean confidence per bin, ``NaN`` for an empty bin.
      ece: expected calibration error (scalar).
      mce: maximum calibration error over non-empty bins (scalar).
    """

    edges: jax.Array
    counts: jax.Array
    accuracy: jax.Array
    confidence: jax.Array
    ece: jax.Array
    mce: jax.Array


def _check_labels(labels: Any, n: int, num_classes: int) -> jax.Array:
    if compat.is_tracer(labels):
        return labels.astype(jnp.int32)
    arr = np.asarray(labels)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"labels must be integer class indices; got dtype {arr.dtype}.")
    if arr.shape != (n,):
        raise InputError(f"labels must have shape ({n},), one per sample; got {arr.shape}.")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        bad = arr[(arr < 0) | (arr >= num_classes)]
        raise InputError(
            f"labels {bad.tolist()[:8]} out of range: there are {num_classes} classes (valid 0..{num_classes - 1})."
        )
    return jnp.asarray(arr, jnp.int32)


def _check_scores(values: Any, name: str) -> jax.Array:
    if compat.is_tracer(values):
        return values
    arr = jnp.asarray(values)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] < 2:
        raise InputError(
            f"{name} must have shape (N, classes) with N >= 1 and at least 2 classes; got {tuple(arr.shape)}."
        )
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise InputError(f"{name} must be floating; got dtype {arr.dtype}.")
    if not bool(jnp.all(jnp.isfinite(arr))):
        raise InputError(f"{name} contains NaN or infinite values.")
    return arr.astype(jnp.float32)


def _check_probabilities(probabilities: Any) -> jax.Array:
    p = _check_scores(probabilities, "probabilities")
    if not compat.is_tracer(p) and (
        bool(jnp.any(p < 0)) or bool(jnp.any(p > 1)) or not bool(jnp.all(jnp.abs(jnp.sum(p, -1) - 1) < 1e-3))
    ):
        raise InputError(
            "probabilities must lie in [0, 1] and sum to 1 over classes (pass softmax(logits), not logits)."
        )
    return p


@guarded_jit
def _bins(p: jax.Array, labels: jax.Array, edges: jax.Array) -> ReliabilityBins:
    m = edges.shape[0] - 1
    confidence = jnp.max(p, axis=-1)
    correct = (jnp.argmax(p, axis=-1) == labels).astype(jnp.float32)
    index = jnp.clip(jnp.searchsorted(edges[1:-1], confidence, side="left"), 0, m - 1)
    counts = jax.ops.segment_sum(jnp.ones_like(confidence), index, m)
    sum_correct = jax.ops.segment_sum(correct, index, m)
    sum_conf = jax.ops.segment_sum(confidence, index, m)
    filled = counts > 0
    safe = jnp.where(filled, counts, 1.0)
    accuracy = jnp.where(filled, sum_correct / safe, jnp.nan)
    mean_conf = jnp.where(filled, sum_conf / safe, jnp.nan)
    gap = jnp.abs(sum_correct - sum_conf)  # |B_m| |acc - conf|
    ece = jnp.sum(gap) / confidence.shape[0]
    mce = jnp.max(jnp.where(filled, gap / safe, 0.0))
    return ReliabilityBins(edges, counts.astype(jnp.int32), accuracy, mean_conf, ece, mce)


def reliability_bins(probabilities: Any, labels: Any, *, bins: int = 15) -> ReliabilityBins:
    """Accuracy and confidence in ``bins`` equal-width bins of the max probability, with ECE and MCE.

    Args:
      probabilities: ``(N, K)`` predicted probabilities (softmax outputs, not logits).
      labels: ``(N,)`` integer labels in ``0..K-1``.
      bins: number of equal-width bins ``M`` (Guo et al. use 15).
    """
    bins = check_positive_int("bins", bins)
    p = _check_probabilities(probabilities)
    y = _check_labels(labels, p.shape[0], p.shape[1])
    return _bins(p, y, jnp.linspace(0.0, 1.0, bins + 1, dtype=jnp.float32))


def expected_calibration_error(probabilities: Any, labels: Any, *, bins: int = 15) -> jax.Array:
    """ECE ``Σ_m (|B_m|/n) |acc(B_m) - conf(B_m)|`` over ``bins`` equal-width bins (Guo et al. 2017)."""
    return reliability_bins(probabilities, labels, bins=bins).ece


def maximum_calibration_error(probabilities: Any, labels: Any, *, bins: int = 15) -> jax.Array:
    """MCE ``max_m |acc(B_m) - conf(B_m)|`` over non-empty bins (Guo et al. 2017)."""
    return reliability_bins(probabilities, labels, bins=bins).mce


@guarded_jit
def _nll(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def negative_log_likelihood(logits: Any, labels: Any) -> jax.Array:
    """Mean negative log-likelihood ``-(1/n) Σ_i log softmax(z_i)_{y_i}`` (nats)."""
    z = _check_scores(logits, "logits")
    return _nll(z, _check_labels(labels, z.shape[0], z.shape[1]))


def temperature_scale(logits: Any, temperature: float | jax.Array) -> jax.Array:
    """``logits / T`` (``T > 0``); ``softmax(logits / T)`` are the calibrated probabilities."""
    if not compat.is_tracer(temperature) and not float(temperature) > 0:
        raise InputError(f"temperature must be > 0; got {temperature}.")
    return jnp.asarray(logits) / temperature


class TemperatureFit(NamedTuple):
    """Result of :func:`fit_temperature`; the ``*_before``/``*_after`` metrics are on the fit split.

    Attributes:
      temperature: the fitted ``T`` (Python float).
      nll_before, nll_after: mean NLL at ``T = 1`` and at the fitted ``T``.
      ece_before, ece_after: ECE (``bins`` bins) at ``T = 1`` and at the fitted ``T``.
      mce_before, mce_after: MCE at ``T = 1`` and at the fitted ``T``.
    """

    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    mce_before: float
    mce_after: float


@functools.partial(guarded_jit, static_argnames=("method", "steps"))
def _fit_log_t(logits: jax.Array, labels: jax.Array, learning_rate: jax.Array, *, method: str, steps: int) -> jax.Array:
    def loss(log_t: jax.Array) -> jax.Array:
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits / jnp.exp(log_t), labels))

    log_t = jnp.zeros((), jnp.float32)
    if method == "lbfgs":
        opt = optax.lbfgs()
        value_and_grad = optax.value_and_grad_from_state(loss)

        def step(carry: Any, _: Any) -> tuple[Any, None]:
            params, state = carry
            value, grad = value_and_grad(params, state=state)
            updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
            return (optax.apply_updates(params, updates), state), None
    else:
        opt = optax.adam(learning_rate)

        def step(carry: Any, _: Any) -> tuple[Any, None]:
            params, state = carry
            grad = jax.grad(loss)(params)
            updates, state = opt.update(grad, state, params)
            return (optax.apply_updates(params, updates), state), None

    (log_t, _), _ = jax.lax.scan(step, (log_t, opt.init(log_t)), None, length=steps)
    return log_t


def fit_temperature(
    logits: Any,
    labels: Any,
    *,
    method: str = "lbfgs",
    steps: int | None = None,
    learning_rate: float = 0.05,
    bins: int = 15,
) -> TemperatureFit:
    """Fit the temperature ``T`` of Guo et al. (2017) by minimising the NLL of ``softmax(logits / T)``.

    Pass the logits and labels of a **held-out** split (``xj.data.mnist("validation")``), never the
    test split.  The returned metrics are on that same split; evaluate on the test split with
    :func:`temperature_scale` and :func:`expected_calibration_error`.

    Args:
      logits: ``(N, K)`` un-normalised scores (:func:`predict_logits`).
      labels: ``(N,)`` integer labels.
      method: ``"lbfgs"`` (``optax.lbfgs`` with its zoom line search; default 30 steps) or ``"adam"``
        (``optax.adam(learning_rate)``; default 300 steps), both on ``log T``.
      bins: bins for the ECE/MCE reported before and after.
    """
    if method not in ("lbfgs", "adam"):
        raise InputError(f"method must be 'lbfgs' or 'adam'; got {method!r}.")
    steps = check_positive_int("steps", steps if steps is not None else (30 if method == "lbfgs" else 300))
    bins = check_positive_int("bins", bins)
    z = _check_scores(logits, "logits")
    y = _check_labels(labels, z.shape[0], z.shape[1])
    log_t = _fit_log_t(z, y, jnp.asarray(learning_rate, jnp.float32), method=method, steps=steps)
    temperature = float(jnp.exp(log_t))
    if not np.isfinite(temperature) or temperature <= 0:
        raise InputError(f"the temperature fit diverged (T = {temperature}); check the logits and labels.")
    before = reliability_bins(jax.nn.softmax(z, axis=-1), y, bins=bins)
    after = reliability_bins(jax.nn.softmax(z / temperature, axis=-1), y, bins=bins)
    return TemperatureFit(
        temperature,
        float(_nll(z, y)),
        float(_nll(z / temperature, y)),
        float(before.ece),
        float(after.ece),
        float(before.mce),
        float(after.mce),
    )


def predict_logits(
    model: Model, variables: Any, x: Any, *, batch_size: int = 1000, model_kwargs: Mapping[str, Any] | None = None
) -> jax.Array:
    """The model's outputs on a whole split, ``batch_size`` images at a time (one jitted forward)."""
    batch_size = check_positive_int("batch_size", batch_size)
    x = check_input(x)
    model, variables = adapt_model(model, variables)
    forward, dynamic = make_forward(model, model_kwargs)
    run = _forward_jit(forward)
    parts = [run(variables, x[i : i + batch_size], dynamic) for i in range(0, x.shape[0], batch_size)]
    return jnp.concatenate(parts)


_FORWARDS: dict[Any, Any] = {}


def _forward_jit(forward: Any) -> Any:
    if forward not in _FORWARDS:
        _FORWARDS[forward] = guarded_jit(lambda v, x, kw: forward(v, x, kw))
    return _FORWARDS[forward]
