"""Prediction difference analysis with conditional sampling.

Zintgraf, Cohen, Adel & Welling (2017) ([zintgraf2017]_), after Robnik-Šikonja & Kononenko (2008)
([robnik2008]_).  The relevance of a window ``x_w`` (``k x k`` pixels, all channels) is the *weight
of evidence* the model loses when the window is unknown,

    WE_w = log₂ odds p(c | x) - log₂ odds p(c | x_{\\w}),      odds(p) = p / (1 - p)
    p(c | x_{\\w}) ≈ (1/S) Σ_s p(c | x with x_w ← x̃_s),        x̃_s ~ p(x_w | x_ŵ)

where ``x_ŵ`` is the frame of ``context`` pixels around the window (*conditional sampling*: the
window is resampled given its surroundings, not from its marginal).  ``p(x_w | x_ŵ)`` is the
conditional of a multivariate Gaussian fitted to all ``(k + 2·context)²`` patches of ``data``
(padded by ``context`` pixels repeating the border: a frame reaching outside the image sees the
nearest image pixels, for the fit and for the explained input alike), ``μ_{w|ŵ} = μ_w + Σ_{wŵ} Σ_{ŵŵ}⁻¹ (x_ŵ - μ_ŵ)``,
``Σ_{w|ŵ} = Σ_ww - Σ_{wŵ} Σ_{ŵŵ}⁻¹ Σ_{ŵw}`` (paper Sec. 3.1; ``sampling="marginal"`` draws from
``N(μ_w, Σ_ww)`` instead).  A pixel's relevance is the mean ``WE`` of the windows containing it.
Probabilities are Laplace-corrected, ``p ← (p N + 1)/(N + K)`` (paper; ``laplace_count = N``,
0 = off, then clipped to ``[10⁻⁷, 1 - 10⁻⁷]``).  Windows and samples run as vmapped forward passes
in chunks of ``batch_size`` windows.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..core import (
    ArrayOption,
    Choice,
    ChunkSize,
    InputError,
    Inputs,
    Key,
    NonNegativeInt,
    OptionContext,
    PositiveInt,
    Problem,
    chunked_sum,
    method,
)
from ..core.checks import check_finite_array
from .features import image_only

#: Ridge added to the patch covariance, relative to its mean variance (constant pixels, e.g. MNIST
#: borders, make the empirical covariance singular).
COVARIANCE_RIDGE = 1e-4


class ConditionalGaussian(NamedTuple):
    """``p(window | frame)`` of a Gaussian over flattened patches: ``mean`` ``(d,)``, ``gain``
    ``(d_w, d_f)`` = ``Σ_wf Σ_ff⁻¹``, ``chol`` ``(d_w, d_w)`` of the conditional covariance."""

    mean: jax.Array
    gain: jax.Array
    chol: jax.Array


def patch_masks(window: int, context: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the window's and the frame's elements in a flattened ``(k+2l, k+2l, C)`` patch."""
    size = window + 2 * context
    inside = np.zeros((size, size, channels), bool)
    inside[context : context + window, context : context + window] = True
    flat = inside.reshape(-1)
    return np.flatnonzero(flat), np.flatnonzero(~flat)


def fit_conditional(data: jax.Array, window: int, context: int, conditional: bool) -> ConditionalGaussian:
    """Fit the Gaussian over all patches of ``data`` (NHWC, edge-padded by ``context``) and condition it."""
    size = window + 2 * context
    padded = jnp.pad(data, ((0, 0), (context, context), (context, context), (0, 0)), mode="edge")
    patches = jax.lax.conv_general_dilated_patches(
        padded,
        (size, size),
        (1, 1),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    channels = data.shape[-1]
    # conv patches come out channel-major (C, kh, kw): reorder to (kh, kw, C) to match the image layout
    patches = patches.reshape(-1, channels, size, size).transpose(0, 2, 3, 1).reshape(-1, size * size * channels)
    mean = patches.mean(axis=0)
    centred = patches - mean
    cov = jnp.dot(centred.T, centred, precision=jax.lax.Precision.HIGHEST) / max(patches.shape[0] - 1, 1)
    cov = cov + COVARIANCE_RIDGE * jnp.maximum(jnp.trace(cov) / cov.shape[0], 1e-12) * jnp.eye(
        cov.shape[0], dtype=cov.dtype
    )
    inner, frame = patch_masks(window, context, channels)
    c_ww = cov[np.ix_(inner, inner)]
    if not conditional or frame.size == 0:
        return ConditionalGaussian(mean, jnp.zeros((inner.size, frame.size), cov.dtype), jnp.linalg.cholesky(c_ww))
    c_wf, c_ff = cov[np.ix_(inner, frame)], cov[np.ix_(frame, frame)]
    gain = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(c_ff), c_wf.T).T
    c_cond = c_ww - gain @ c_wf.T
    c_cond = 0.5 * (c_cond + c_cond.T)
    return ConditionalGaussian(mean, gain, jnp.linalg.cholesky(c_cond))


def window_starts(height: int, width: int, window: int, stride: int) -> np.ndarray:
    """``(P, 2)`` top-left corners of every window that fits, ``stride`` apart (the last row and column
    of windows are moved to the border so every pixel is covered)."""
    rows = sorted(set([*list(range(0, height - window + 1, stride)), height - window]))
    cols = sorted(set([*list(range(0, width - window + 1, stride)), width - window]))
    return np.array([(i, j) for i in rows for j in cols], np.int32)


def _validate(ctx: OptionContext) -> None:
    image_only(ctx, "prediction difference analysis")
    x = ctx.inputs.x
    window, context = ctx.options["window"], ctx.options["context"]
    if window > min(x.shape[1:3]):
        raise InputError(f"window {window} is larger than the image {tuple(x.shape[1:3])}.")
    data = ctx.options["data"]
    if data is not None:
        if data.ndim != 4 or tuple(data.shape[1:]) != tuple(x.shape[1:]):
            raise InputError(
                f"data must be images of x's sample shape, (N, {', '.join(map(str, x.shape[1:]))}); got "
                f"{tuple(data.shape)}."
            )
        check_finite_array("data", data)
    if ctx.options["score"] == "softmax" and ctx.problem.target.kind == "callable":
        raise InputError(
            "score='softmax' needs class outputs; with a callable target returning probabilities pass "
            "score='probability'."
        )
    del context


@method(
    "prediction_difference",
    family="perturbation",
    signed=True,
    report_options={"window": 7, "stride": 7, "samples": 4},
    validate=_validate,
)
def prediction_difference(
    problem: Problem,
    inputs: Inputs,
    *,
    key: Key,
    data: ArrayOption | None = None,
    window: PositiveInt = 4,
    context: NonNegativeInt = 2,
    stride: PositiveInt = 1,
    samples: PositiveInt = 10,
    sampling: Choice("conditional", "marginal") = "conditional",  # type: ignore[valid-type]
    score: Choice("softmax", "probability") = "softmax",  # type: ignore[valid-type]
    laplace_count: NonNegativeInt = 0,
    batch_size: ChunkSize = "auto",
) -> jax.Array:
    """Prediction difference analysis ([zintgraf2017]_): weight of evidence lost when a window is
    resampled conditionally on its surroundings.

    ``WE_w = log₂ odds p(c|x) - log₂ odds (1/S) Σ_s p(c | x_w ← x̃_s)``, ``x̃_s ~ p(x_w | x_ŵ)`` from a
    Gaussian fitted to the patches of ``data``; each pixel averages the windows covering it.

    Args:
      key: ``jax.random`` key for the window samples.
      data: images ``(N, H, W, C)`` whose patches fit the Gaussian (default: the explained batch itself).
      window: side ``k`` of the square window (all channels).
      context: width of the frame the window is conditioned on (the paper's ``(l - k)/2``).
      stride: step between windows (1: every position, as in the paper).
      samples: draws ``S`` per window.
      sampling: ``"conditional"`` or ``"marginal"``.
      score: ``"softmax"`` (the model returns logits) or ``"probability"`` (it returns probabilities).
      laplace_count: ``N`` of the Laplace correction (0: none).
      batch_size: windows evaluated at once (each ``S`` forward passes of the batch).

    Returns:
      ``x``-shaped relevance in bits (positive: the pixels support the class).

    Example:
      >>> we = xj.prediction_difference(model, variables, x, key=jax.random.key(0), window=7, stride=7, samples=2)
      >>> we.shape == x.shape
      True
    """
    x = inputs.x
    batch, height, width, channels = x.shape
    indices = problem.class_indices(inputs)
    gaussian = fit_conditional(x if data is None else data, window, context, sampling == "conditional")
    inner, frame = patch_masks(window, context, channels)
    size = window + 2 * context
    padded = jnp.pad(x, ((0, 0), (context, context), (context, context), (0, 0)), mode="edge")

    def probability(images: jax.Array) -> jax.Array:
        outputs = problem.outputs(inputs, images)
        if score == "softmax":
            outputs = jax.nn.softmax(outputs, axis=-1)
        classes = (
            outputs.shape[-1] if getattr(outputs, "ndim", 0) == 2 else 2
        )  # K of the correction (2: one probability)
        p = problem.target.select(outputs, indices)
        if laplace_count:
            return (p * laplace_count + 1) / (laplace_count + classes)
        return jnp.clip(p, 1e-7, 1 - 1e-7)

    def log_odds(p: jax.Array) -> jax.Array:
        return jnp.log2(p) - jnp.log2(1 - p)

    evidence = log_odds(probability(x))
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]

    def term(start: jax.Array, draw_key: jax.Array) -> tuple[jax.Array, jax.Array]:
        i, j = start[0], start[1]
        patch = jax.lax.dynamic_slice(padded, (0, i, j, 0), (batch, size, size, channels)).reshape(batch, -1)
        mean = gaussian.mean[inner] + (patch[:, frame] - gaussian.mean[frame]) @ gaussian.gain.T  # (B, d_w)
        noise = jax.random.normal(draw_key, (samples, batch, inner.size), x.dtype)
        draws = mean[None] + noise @ gaussian.chol.T  # (S, B, d_w)

        def replaced(draw: jax.Array) -> jax.Array:
            return probability(
                jax.lax.dynamic_update_slice(x, draw.reshape(batch, window, window, channels), (0, i, j, 0))
            )

        p_without = jax.vmap(replaced)(draws).mean(axis=0)
        we = evidence - log_odds(p_without)
        box = ((rows >= i) & (rows < i + window) & (cols >= j) & (cols < j + window)).astype(x.dtype)
        return we[:, None, None] * box[None], box

    starts = jnp.asarray(window_starts(height, width, window, stride))
    total, counts = chunked_sum(term, starts, jax.random.split(key, starts.shape[0]), chunk_size=batch_size)
    relevance = total / jnp.maximum(counts, 1.0)
    return jnp.broadcast_to(relevance[..., None], x.shape)


__all__ = ["ConditionalGaussian", "fit_conditional", "patch_masks", "prediction_difference", "window_starts"]
