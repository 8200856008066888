"""LIME: a weighted linear surrogate of the model around each input.

Ribeiro, Singh & Guestrin (2016) ([ribeiro2016]_):  ``ξ(x) = argmin_g Σ_z π_x(z) (f_c(x_z) - g(z))² + Ω(g)``
over coalitions ``z`` of interpretable features (superpixels, grid cells, a user mask; see
:mod:`.features`), with ``g(z) = c + z·β`` linear.  The attribution of an element is the coefficient
``β_j`` of its feature.  Two presets reproduce the two common implementations exactly (same
coalitions -> same coefficients, tested):

===============  ==========================================  ==========================================
                 ``preset="lime"`` (``lime`` package,        ``preset="captum"`` (Captum ``Lime``
                 ``LimeImageExplainer``)                     defaults)
===============  ==========================================  ==========================================
coalitions       Bernoulli(½) per feature, the first one     Bernoulli(½) per feature
                 all ones (the input itself)
removed feature  the mean colour of its superpixel           ``baseline`` (default 0)
                 (``hide_color=None``), or ``baseline``
distance ``d``   cosine distance between ``z`` and 1         cosine distance between ``x`` and ``x_z``
                 (interpretable space)                       (input space, flattened)
weight ``π``     ``sqrt(exp(-d² / w²))``, ``w = 0.25``       ``exp(-d² / (2 w²))``, ``w = 1``
surrogate        ``Ridge(alpha=1)`` with intercept           ``Lasso(alpha=0.01)`` with intercept
===============  ==========================================  ==========================================

The ``lime`` package selects features first when asked for fewer than all of them
(``num_features``); with its default (100000, i.e. all) the fit above is what it returns.  The
lasso is solved to convergence (scikit-learn's default tolerance 1e-4 stops earlier; compared at a
tight tolerance).  All samples, all coalitions: vmapped forward passes in chunks of ``batch_size``;
one surrogate per sample, fitted in the same jitted computation.
"""

from __future__ import annotations

from typing import Annotated, Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import (
    Choice,
    ChunkSize,
    InputError,
    Inputs,
    Key,
    NonNegativeFloat,
    Option,
    OptionContext,
    PositiveFloat,
    PositiveInt,
    Problem,
    chunked_vmap,
    method,
    resolve_baseline,
)
from ..core.checks import is_traced
from .coalitions import bernoulli_coalition, check_coalitions, draw
from .features import FeatureMask, Features, compose
from .surrogate import lasso, ridge

PRESETS: dict[str, dict[str, Any]] = {
    "lime": {"kernel_width": 0.25, "alpha": 1.0, "baseline": "segment_mean"},
    "captum": {"kernel_width": 1.0, "alpha": 0.01, "baseline": 0.0},
}
#: The fill value that replaces a removed feature by the mean of its elements (per channel).
SEGMENT_MEAN = "segment_mean"


def _check_fill(ctx: OptionContext, name: str, value: Any) -> Any:
    if isinstance(value, str):
        if value != SEGMENT_MEAN:
            raise InputError(f"{name} must be {SEGMENT_MEAN!r}, a number, an array or a callable; got {value!r}.")
        labels = ctx.options["features"].labels
        if is_traced(labels):
            raise InputError(
                f"{name}={SEGMENT_MEAN!r} needs a concrete feature mask to check that it groups the channels of "
                "each pixel; the mask is traced here. Build it outside jax.jit (fm = "
                "xj.perturbation.feature_mask(x, features)) and close over it instead of passing it as an "
                "argument of the jitted function, or give a numeric baseline."
            )
        labels = np.asarray(labels)  # numpy: under a caller's jit a jnp comparison would be staged, not evaluated
        if ctx.inputs.x.ndim != 4 or not np.all(labels == labels[..., :1]):
            raise InputError(
                f"{name}={SEGMENT_MEAN!r} fills a superpixel with its mean colour: it needs NHWC images and a "
                "feature mask that groups all channels of a pixel together."
            )
        return value
    return resolve_baseline(value, ctx.inputs.x, name)


def _check_coalitions(ctx: OptionContext, name: str, value: Any) -> jax.Array:
    return check_coalitions(name, value, ctx.inputs.x.shape[0], ctx.options["features"].num_features)


Fill = Annotated[Any, Option(_check_fill)]
Coalitions = Annotated[jax.Array | None, Option(_check_coalitions)]


def _resolve_preset(ctx: OptionContext) -> dict[str, Any]:
    preset = PRESETS[ctx.options["preset"]]
    out = {
        name: ctx.options[name] if ctx.options[name] is not None else preset[name] for name in ("kernel_width", "alpha")
    }
    if ctx.options["baseline"] is None:
        out["baseline"] = _check_fill(ctx, "baseline", preset["baseline"])
    return out


def cosine_distance(a: jax.Array, b: jax.Array) -> jax.Array:
    """``1 - a·b / max(|a| |b|, 1e-8)`` along the last axis (scikit-learn and torch agree for non-zero vectors)."""
    dot = jnp.sum(a * b, axis=-1)
    norms = jnp.sqrt(jnp.sum(a * a, axis=-1)) * jnp.sqrt(jnp.sum(b * b, axis=-1))
    return 1.0 - dot / jnp.maximum(norms, 1e-8)


@method("lime", family="perturbation", signed=True, report_options={"samples": 128}, validate=_resolve_preset)
def lime(
    problem: Problem,
    inputs: Inputs,
    *,
    key: Key,
    features: Features = "auto",
    samples: PositiveInt = 1000,
    preset: Choice(*PRESETS) = "lime",  # type: ignore[valid-type]
    baseline: Fill = None,
    kernel_width: PositiveFloat | None = None,
    alpha: NonNegativeFloat | None = None,
    coalitions: Coalitions = None,
    batch_size: ChunkSize = "auto",
) -> jax.Array:
    """LIME ([ribeiro2016]_): coefficients of a locally weighted linear surrogate over feature coalitions.

    ``β = argmin_β Σ_z π(z) (f_c(x_z) - c - z·β)² + Ω(β)`` with ``Ω = α‖β‖²`` (``preset="lime"``, the
    ``lime`` package) or ``Ω = α‖β‖₁`` scaled as scikit-learn's ``Lasso`` (``"captum"``, Captum's
    ``Lime``); the presets also fix the sampler, the fill of removed features and the kernel ``π``
    (module docstring).  ``kernel_width``, ``alpha`` and ``baseline`` override the preset.

    Args:
      key: ``jax.random`` key for the coalitions (unused when ``coalitions`` are given).
      features: interpretable features (see :func:`xj.perturbation.feature_mask`): ``"quickshift"``
        (``lime``'s segmentation, needs scikit-image), a grid (default, 8 x 8 cells) or a mask.
      samples: number of coalitions ``n`` (``lime``'s ``num_samples``, Captum's ``n_samples``).
      preset: ``"lime"`` or ``"captum"``.
      baseline: fill of removed features: ``"segment_mean"`` (``lime``'s ``hide_color=None``), a
        number or an array (``hide_color`` / Captum's ``baselines``).
      kernel_width: ``w`` of the proximity kernel.
      alpha: regularisation strength (ridge or lasso).
      coalitions: explicit 0/1 coalitions ``(n, M)`` or ``(B, n, M)``, used as given (no forced
        first row): the injection point for comparing with another implementation.
      batch_size: coalitions scored at once (each a forward pass of the batch).

    Returns:
      ``x``-shaped attributions: each element carries its feature's coefficient.

    Example:
      >>> attr = xj.lime(model, variables, x, key=jax.random.key(0), samples=64)
      >>> attr.shape == x.shape
      True
    """
    mask: FeatureMask = features
    assert kernel_width is not None and alpha is not None  # _resolve_preset fills them from the preset
    x = inputs.x
    indices = problem.class_indices(inputs)
    f = problem.scalar_fn(inputs, indices)
    active = mask.active()
    if isinstance(baseline, str):  # the mean colour of each superpixel
        fill = jnp.take_along_axis(mask.feature_means(x), mask.labels[..., 0].reshape(x.shape[0], -1, 1), axis=1)
        baseline = fill.reshape(x.shape)
    if coalitions is None:
        coalitions = draw(key, active, samples, bernoulli_coalition)
        if preset == "lime":  # lime_image's data[0, :] = 1: the unperturbed input is the first sample
            coalitions = coalitions.at[0].set(active.astype(coalitions.dtype))
    coalitions = coalitions * active[None].astype(coalitions.dtype)
    flat_x = x.reshape(x.shape[0], -1)

    def score(z: jax.Array) -> tuple[jax.Array, jax.Array]:
        composed = compose(mask, x, baseline, z)
        if preset == "captum":
            distance = cosine_distance(flat_x, composed.reshape(x.shape[0], -1))
        else:
            distance = cosine_distance(z, active.astype(z.dtype))
        return f(composed), distance

    values, distances = chunked_vmap(score, coalitions, chunk_size=batch_size)  # (n, B) each
    if preset == "captum":
        weights = jnp.exp(-(distances**2) / (2 * kernel_width**2))
        fit = lambda z, y, w, a: lasso(z, y, w, alpha, a)
    else:
        weights = jnp.sqrt(jnp.exp(-(distances**2) / kernel_width**2))
        fit = lambda z, y, w, a: ridge(z, y, w, alpha, a)
    beta, _ = jax.vmap(fit)(jnp.swapaxes(coalitions, 0, 1), values.T, weights.T, active)
    return mask.expand(beta)


__all__ = ["PRESETS", "SEGMENT_MEAN", "cosine_distance", "lime"]
