"""Faithfulness: does removing what a map calls relevant change the model's output as the map says?

Every function takes ``(model, variables, x, target, attributions, *, options)``, validates eagerly,
and runs one jitted computation in which the perturbed copies of the batch are evaluated in chunks of
``batch_size`` copies per forward pass (``lax.map`` over chunks, ``vmap`` within one), so peak
memory is one chunk.  ``batch_size=None`` picks ``max(1, 256 // B)`` copies.  Randomness comes only
from ``key``; each stochastic metric also accepts its draws directly (``subsets=``, ``perturbations=``,
``noise_draws=``) so that it can be run on another implementation's exact perturbations.

Scores (``score=``): ``"probability"`` (softmax of the outputs at the target class), ``"logit"`` (the
raw output, or a callable target's value), ``"accuracy"`` (1 while the target class is the argmax).
The defaults follow Quantus 0.6's choice for each metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..core import Inputs, Problem, Target, chunked_vmap, compiled, prepare
from ..core.errors import InputError
from ..core.model import Model
from . import _common as c
from .imputation import noisy_linear_imputation, superpixels

Array = jax.Array


class Curve(NamedTuple):
    """A perturbation curve: ``scores[b, k]`` is the model's score for sample ``b`` after step ``k``
    (``k = 0`` is the unperturbed input, or the empty canvas for insertion); ``fractions[k]`` is the
    fraction of features (pixels, patches, segments) perturbed at step ``k``."""

    fractions: Array
    scores: Array


class IROFResult(NamedTuple):
    """IROF's area over the curve per sample and the curve of relative scores behind it."""

    score: Array
    curve: Curve


def _auto_batch(batch_size: int | None, batch: int) -> int:
    if batch_size is None:
        return max(1, c.PERTURBED_IMAGES_PER_PASS // max(batch, 1))
    return c.check_positive_int("batch_size", batch_size)


def _setup(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    attributions: Any,
    model_kwargs: Mapping[str, Any] | None,
    score: str | None,
) -> tuple[Problem, Inputs, Array]:
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    a = c.check_attributions(attributions, inputs.x)
    if score is not None:
        c.check_score(score, problem)
    return problem, inputs, a


# ---------------------------------------------------------------------------------------------------
# Ordered removal of groups of features: pixel flipping, deletion/insertion, region perturbation, IROF
# ---------------------------------------------------------------------------------------------------


def _ordered_group_curve(
    problem: Problem,
    inputs: Inputs,
    fill: Array,
    group_of_feature: Array | None,
    group_scores: Array,
    counts: Array,
    feature_shape: tuple[int, ...],
    *,
    direction: str,
    insert: bool,
    score: str,
    batch_size: int,
) -> Array:
    """Scores ``(K, B)`` after perturbing the ``counts[k]`` highest-ranked groups of every sample.

    ``group_of_feature (B, F)`` assigns each feature to a group (``None``: every feature is its own
    group), ``group_scores (B, G)`` ranks the groups (stable order, see ``_common.order``).  Deletion
    replaces the chosen features by ``fill``; insertion starts from ``fill`` and restores them."""
    x = inputs.x
    indices = problem.class_indices(inputs)
    scores = c.scorer(problem, inputs, indices, score)
    group_rank = c.ranks_from_order(c.order(group_scores, direction))  # (B, G)
    feature_rank = group_rank if group_of_feature is None else jnp.take_along_axis(group_rank, group_of_feature, axis=1)

    def at(count: Array) -> Array:
        chosen = c.expand_feature_mask(feature_rank < count, feature_shape, x.shape)
        perturbed = jnp.where(chosen, x, fill) if insert else jnp.where(chosen, fill, x)
        return scores(perturbed[None])[0]

    return chunked_vmap(at, counts, chunk_size=batch_size)


@compiled(static=("direction", "features_per_step", "baseline", "score", "batch_size", "insert"))
def _pixel_flipping(
    problem: Problem,
    inputs: Inputs,
    attributions: Array,
    baseline_value: Array,
    key: Array | None,
    *,
    direction: str,
    features_per_step: int,
    baseline: c.Baseline,
    score: str,
    batch_size: int,
    insert: bool,
) -> Curve:
    x = inputs.x
    fill = c.fill_values(x, baseline, baseline_value, key)
    a = c.flat(attributions)
    d = a.shape[1]
    counts = jnp.minimum(jnp.arange(math.ceil(d / features_per_step) + 1) * features_per_step, d)
    s = _ordered_group_curve(
        problem,
        inputs,
        fill,
        None,
        a,
        counts,
        attributions.shape,
        direction=direction,
        insert=insert,
        score=score,
        batch_size=batch_size,
    )
    return Curve(counts / d, s.T)


def pixel_flipping(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    attributions: Any,
    *,
    order: str = "morf",
    features_per_step: int = 1,
    baseline: Any = "black",
    score: str = "probability",
    key: Array | None = None,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Curve:
    """Pixel flipping (Bach et al. 2015, "On Pixel-Wise Explanations for Non-Linear Classifier Decisions
    by Layer-Wise Relevance Propagation"; Samek et al. 2017 for the MoRF/LeRF orders).

    Features are replaced by ``baseline`` ``features_per_step`` at a time in the order of the map and
    the target's score is recorded after every step::

        scores[b, k] = f_c(x_b with its first min(k·m, D) features of the order replaced),  k = 0..⌈D/m⌉

    ``order="morf"`` (most relevant first: a faithful map makes the curve fall fast, a low area is
    good) or ``"lerf"`` (least relevant first: it should stay high).  Ties: stable order, lower flat
    index first.  Quantus' ``PixelFlipping`` (defaults: one feature per step, ``"black"`` = the sample's
    minimum, softmax) returns ``scores[:, 1:]``: it omits the unperturbed point k = 0.

    Returns :class:`Curve` with ``scores (B, ⌈D/m⌉ + 1)``; summarise with :func:`auc` or
    :func:`area_between`.
    """
    problem, inputs, a = _setup(model, variables, x, target, attributions, model_kwargs, score)
    c.check_choice("order", order, ("morf", "lerf"))
    m = c.check_positive_int("features_per_step", features_per_step)
    base, value = c.split_baseline(baseline, inputs.x)
    return _pixel_flipping(
        problem,
        inputs,
        a,
        value,
        key,
        direction=order,
        features_per_step=m,
        baseline=base,
        score=score,
        batch_size=_auto_batch(batch_size, inputs.x.shape[0]),
        insert=False,
    )


def deletion(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    attributions: Any,
    *,
    features_per_step: int = 1,
    baseline: Any = "zero",
    score: str = "probability",
    key: Array | None = None,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Curve:
    """Deletion (Petsiuk et al. 2018, "RISE: Randomized Input Sampling for Explanation of Black-box
    Models"): most relevant features replaced by ``baseline`` (zero) first; the area under the
    probability curve (:func:`auc`) should be low.  Pixel flipping with Petsiuk's defaults."""
    return pixel_flipping(
        model,
        variables,
        x,
        target,
        attributions,
        order="morf",
        features_per_step=features_per_step,
        baseline=baseline,
        score=score,
        key=key,
        batch_size=batch_size,
        model_kwargs=model_kwargs,
    )


def insertion(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    attributions: Any,
    *,
    features_per_step: int = 1,
    baseline: Any = "blur",
    score: str = "probability",
    key: Array | None = None,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Curve:
    """Insertion (Petsiuk et al. 2018): start from ``baseline`` (a Gaussian blur of the image, σ = 5
    pixels; another σ: ``baseline=xe.gaussian_blur(x, σ)``) and restore the most relevant features
    first::

        scores[b, k] = f_c(canvas_b with its first min(k·m, D) features of the order set to x_b)

    the area under the curve (:func:`auc`) should be high."""
    problem, inputs, a = _setup(model, variables, x, target, attributions, model_kwargs, score)
    m = c.check_positive_int("features_per_step", features_per_step)
    base, value = c.split_baseline(baseline, inputs.x)
    return _pixel_flipping(
        problem,
        inputs,
        a,
        value,
        key,
        direction="morf",
        features_per_step=m,
        baseline=base,
        score=score,
        batch_size=_auto_batch(batch_size, inputs.x.shape[0]),
        insert=True,
    )


def auc(curve: Curve) -> Array:
    """Area under a perturbation curve over the perturbed fraction, ``∫₀¹ score d(fraction)`` by the
    trapezoidal rule, per sample ``(B,)``.  (Quantus' ``get_auc_score`` integrates over step indices
    instead, ``np.trapz(scores[:, 1:], dx=1)``; that equals this area × number of steps only for
    curves without the k = 0 point.)"""
    f = curve.fractions
    s = curve.scores
    return jnp.sum(0.5 * (s[:, 1:] + s[:, :-1]) * (f[1:] - f[:-1]), axis=1)


def area_between(morf: Curve, lerf: Curve) -> Array:
    """Area between the least-relevant-first and most-relevant-first curves, ``AUC(LeRF) − AUC(MoRF)``
    per sample (the "ABPC" of Schulz et al. 2020, "Restricting the Flow"): large for a faithful map,
    ≈ 0 for a random one."""
    return auc(lerf) - auc(morf)


def aopc(curve: Curve) -> Array:
    """Area over the perturbation curve (Samek et al. 2017, Eq. 12),
    ``AOPC = 1/(L+1) Σ_{k=0}^{L} (s_0 − s_k)`` per sample."""
    s = curve.scores
    return jnp.mean(s[:, :1] - s, axis=1)


def _padding(n: int, patch: int) -> tuple[int, int]:
    """Quantus' centred padding of an axis to a multiple of the patch size."""
    rest = n % patch
    if rest == 0:
        return 0, 0
    total = patch - rest
    return total // 2, total - total // 2


def patch_grid(height: int, width: int, patch_size: int) -> tuple[np.ndarray, int]:
    """``(H, W)`` patch id of every pixel on a grid of ``patch_size`` squares centred on the image (the
    image padded by up to ``patch_size − 1`` pixels split evenly, as in Quantus), and the patch count."""
    (top, _), (left, _) = _padding(height, patch_size), _padding(width, patch_size)
    rows = (np.arange(height) + top) // patch_size
    cols = (np.arange(width) + left) // patch_size
    n_cols = (width + sum(_padding(width, patch_size))) // patch_size
    n_rows = (height + sum(_padding(height, patch_size))) // patch_size
    return (rows[:, None] * n_cols + cols[None, :]).astype(np.int32), n_rows * n_cols


@compiled(static=("direction", "patch_size", "regions", "baseline", "score", "batch_size"))
def _region_perturbation(
    problem: Problem,
    inputs: Inputs,
    attributions: Array,
    baseline_value: Array,
    key: Array | None,
    *,
    direction: str,
    patch_size: int,
    regions: int,
    baseline: c.Baseline,
    score: str,
    batch_size: int,
) -> Curve:
    x = inputs.x
    b, h, w = x.shape[:3]
    ids, n_patches = patch_grid(h, w, patch_size)
    pixel_scores = attributions if attributions.ndim == 3 else jnp.sum(attributions, axis=-1)
    group_scores = jax.vmap(lambda p: jax.ops.segment_sum(p.reshape(-1), jnp.asarray(ids).reshape(-1), n_patches))(
        pixel_scores
    )
    groups = jnp.broadcast_to(jnp.asarray(ids).reshape(-1), (b, h * w))
    fill = c.fill_values(x, baseline, baseline_value, key)
    k = min(regions, n_patches)
    counts = jnp.arange(k + 1)
    s = _ordered_group_curve(
        problem,
        inputs,
        fill,
        groups,
        group_scores,
        counts,
        (b, h, w),
        direction=direction,
        insert=False,
        score=score,
        batch_size=batch_size,
    )
    return Curve(counts / n_patches, s.T)


def region_perturbation(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    attributions: Any,
    *,
    patch_size: int = 8,
    regions: int = 100,
    order: str = "morf",
    baseline: Any = "black",
    score: str = "probability",
    key: Array | None = None,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Curve:
    """Region perturbation (Samek et al. 2017, "Evaluating the Visualization of What a Deep Neural
    Network Has Learned"): non-overlapping ``patch_size`` squares (a grid centred on the image) ranked
    by their summed relevance are replaced by ``baseline`` one at a time, for ``regions`` steps::

        scores[b, k] = f_c(x_b with its k highest-ranked patches replaced),  k = 0..min(regions, #patches)

    Summarise with :func:`aopc` (Samek's AOPC).  Quantus' ``RegionPerturbation`` returns the drops
    ``scores[:, :1] − scores[:, 1:]`` (its defaults: patch 8, 100 regions, ``"black"``, softmax).
    Images (NHWC) only.
    """
    problem, inputs, a = _setup(model, variables, x, target, attributions, model_kwargs, score)
    if inputs.x.ndim != 4:
        raise InputError(f"region_perturbation works on NHWC images; x has shape {tuple(inputs.x.shape)}.")
    c.check_choice("order", order, ("morf", "lerf"))
    p = c.check_positive_int("patch_size", patch_size)
    if p > min(inputs.x.shape[1:3]):
        raise InputError(f"patch_size {p} is larger than the image {tuple(inputs.x.shape[1:3])}.")
    base, value = c.split_baseline(baseline, inputs.x)
    return _region_perturbation(
        problem,
        inputs,
        a,
        value,
        key,
        direction=order,
        patch_size=p,
        regions=c.check_positive_int("regions", regions),
        baseline=base,
        score=score,
        batch_size=_auto_batch(batch_size, inputs.x.shape[0]),
    )


@compiled(static=("max_segments", "baseline", "score", "batch_size"))
def _irof(
    problem: Problem,
    inputs: Inputs,
    attributions: Array,
    segments: Array,
    baseline_value: Array,
    key: Array | None,
    *,
    max_segments: int,
    baseline: c.Baseline,
    score: str,
    batch_size: int,
) -> IROFResult:
    x = inputs.x
    b = x.shape[0]
    seg = segments.reshape(b, -1)
    pixel_scores = c.flat(attributions if attributions.ndim == 3 else jnp.mean(attributions, axis=-1))

    def segment_means(p: Array, s: Array) -> tuple[Array, Array]:
        total = jax.ops.segment_sum(p, s, max_segments)
        size = jax.ops.segment_sum(jnp.ones_like(p), s, max_segments)
        return jnp.where(size > 0, total / jnp.maximum(size, 1), -jnp.inf), size > 0

    means, present = jax.vmap(segment_means)(pixel_scores, seg)
    n = jnp.sum(present, axis=1)
    fill = c.fill_values(x, baseline, baseline_value, key)
    counts = jnp.arange(max_segments + 1)
    s = _ordered_group_curve(
        problem,
        inputs,
        fill,
        seg,
        means,
        counts,
        (b, *x.shape[1:3]),
        direction="morf",
        insert=False,
        score=score,
        batch_size=batch_size,
    ).T  # (B, K+1)
    start = s[:, :1]
    ratios = s / jnp.where(start != 0, start, 1.0)
    # Quantus: AOC = n − trapz(r_1..r_n) over the sample's own n segments (k = 1..n).
    interval = jnp.arange(1, max_segments)[None, :] < n[:, None]
    area = jnp.sum(jnp.where(interval, 0.5 * (ratios[:, 1:-1] + ratios[:, 2:]), 0.0), axis=1)
    return IROFResult(n - area, Curve(counts / max_segments, ratios))


def irof(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    attributions: Any,
    *,
    segments: Any = None,
    segmentation: str = "slic",
    baseline: Any = "mean",
    score: str = "probability",
    key: Array | None = None,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> IROFResult:
    """Iterative removal of features (Rieger & Hansen 2020, "IROF: a low resource evaluation metric for
    explanation methods").  Superpixels ranked by their mean relevance are replaced by ``baseline``
    cumulatively, most relevant first; with ``r_k = f_c(x after k segments) / f_c(x)``, the score is
    the area over that curve in Quantus' units::

        IROF_b = n_b − Σ_{k=1}^{n_b−1} (r_k + r_{k+1}) / 2       (n_b: the sample's segment count)

    ``segments (B, H, W)``: integer labels ``0..n_b−1``; by default SLIC superpixels computed on the host
    (:func:`superpixels`, Quantus' call).  ``baseline="mean"`` is the sample's own mean; Quantus
    recomputes its "mean" over the whole *batch* of already-perturbed images at every step, which makes
    a sample's score depend on its batch-mates and drift as segments are removed.  Quantus pads shorter
    samples' curves with zeros up to the batch's largest segment count; here each sample's area runs
    over its own segments only (they agree for a batch of one).

    Returns :class:`IROFResult` (``score (B,)``; ``curve``: the ratios ``(B, N + 1)`` for k = 0..N
    segments removed, ``fractions = k / N``, N the batch's largest segment count).
    """
    problem, inputs, a = _setup(model, variables, x, target, attributions, model_kwargs, score)
    if inputs.x.ndim != 4:
        raise InputError(f"irof works on NHWC images; x has shape {tuple(inputs.x.shape)}.")
    if segments is None:
        segments = superpixels(np.asarray(inputs.x), segmentation)
    seg = jnp.asarray(segments)
    if tuple(seg.shape) != tuple(inputs.x.shape[:3]) or not jnp.issubdtype(seg.dtype, jnp.integer):
        raise InputError(
            f"segments must be integer labels of shape {tuple(inputs.x.shape[:3])}; got {seg.dtype} {tuple(seg.shape)}."
        )
    if not c.is_concrete(seg):
        raise InputError(
            "irof needs concrete segments (their count sets the number of steps); compute them outside jit."
        )
    labels = np.asarray(seg)
    if labels.min() < 0:
        raise InputError("segments must be non-negative labels 0..n-1.")
    base, value = c.split_baseline(baseline, inputs.x)
    return _irof(
        problem,
        inputs,
        a,
        seg.astype(jnp.int32),
        value,
        key,
        max_segments=int(labels.max()) + 1,
        baseline=base,
        score=score,
        batch_size=_auto_batch(batch_size, inputs.x.shape[0]),
    )


# ---------------------------------------------------------------------------------------------------
# Random subsets: faithfulness correlation, infidelity
# ---------------------------------------------------------------------------------------------------


@compiled(static=("baseline", "score", "batch_size", "subset_size", "runs"))
def _faithfulness_correlation(
    problem: Problem,
    inputs: Inputs,
    attributions: Array,
    baseline_value: Array,
    subsets: Array | None,
    key: Array | None,
    *,
    baseline: c.Baseline,
    score: str,
    batch_size: int,
    subset_size: int,
    runs: int,
) -> Array:
    x = inputs.x
    b = x.shape[0]
    a = c.flat(attributions)
    d = a.shape[1]
    indices = problem.class_indices(inputs)
    scores = c.scorer(problem, inputs, indices, score)
    fill_key, subset_key = (None, None) if key is None else jax.random.split(key)
    fill = c.fill_values(x, baseline, baseline_value, fill_key)
    reference = scores(x[None])[0]

    def run(r: Array, given: Array | None) -> tuple[Array, Array]:
        # Run r's subsets: uniform without replacement, drawn from fold_in(key, r) (memory: one chunk).
        if given is None:
            assert subset_key is not None  # faithfulness_correlation checked key when no subsets are given
            given = jax.lax.top_k(jax.random.uniform(jax.random.fold_in(subset_key, r), (b, d)), subset_size)[1]
        subset = given
        chosen = jnp.zeros((b, d), bool).at[jnp.arange(b)[:, None], subset].set(True)
        perturbed = jnp.where(c.expand_feature_mask(chosen, attributions.shape, x.shape), fill, x)
        drop = reference - scores(perturbed[None])[0]
        return jnp.sum(jnp.where(chosen, a, 0.0), axis=1), drop

    if subsets is None:
        attribution_sums, drops = chunked_vmap(lambda r: run(r, None), jnp.arange(runs), chunk_size=batch_size)
    else:
        attribution_sums, drops = chunked_vmap(
            run, jnp.arange(runs), jnp.swapaxes(subsets, 0, 1), chunk_size=batch_size
        )
    return c.pearson(attribution_sums.T, drops.T)


def faithfulness_correlation(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    attributions: Any,
    *,
    key: Array | None = None,
    runs: int = 100,
    subset_size: int = 224,
    baseline: Any = "black",
    score: str = "logit",
    subsets: Any = None,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Array:
    """Faithfulness correlation (Bhatt, Weller & Moura 2020, "Evaluating and Aggregating Feature-based
    Model Explanations", Eq. 2): over ``runs`` random subsets S of ``subset_size`` features,

        μ_F = corr_S( Σ_{i∈S} a_i ,  f_c(x) − f_c(x with S replaced by the baseline) )

    the Pearson correlation per sample ``(B,)`` (0 when either side is constant).  ``subsets (B, runs,
    subset_size)`` injects the subsets (feature indices into the flattened attributions); otherwise
    they are drawn uniformly without replacement from ``key``.  Quantus defaults: 100 runs, 224
    features, ``"black"``, logits.
    """
    problem, inputs, a = _setup(model, variables, x, target, attributions, model_kwargs, score)
    b, d = a.shape[0], int(np.prod(a.shape[1:]))
    runs = c.check_positive_int("runs", runs)
    size = c.check_positive_int("subset_size", subset_size)
    if size > d:
        raise InputError(f"subset_size {size} is larger than the number of features {d}.")
    if subsets is not None:
        subsets = c.check_draws("subsets", subsets, (b, runs, size), "feature indices per sample and run", jnp.int32)
    else:
        c.check_key(key, True, "faithfulness_correlation")
    base, value = c.split_baseline(baseline, inputs.x)
    return _faithfulness_correlation(
        problem,
        inputs,
        a,
        value,
        subsets,
        key,
        baseline=base,
        score=score,
        batch_size=_auto_batch(batch_size, b),
        subset_size=size,
        runs=runs,
    )


def square_perturbations(key: Array, x: Array, samples: int, patch_size: int, baseline: Any = "black") -> Array:
    """``(samples, B, ...)`` infidelity perturbations ``I = (x − x̄) ⊙ 1_square`` of Yeh et al.'s square
    removal: a ``patch_size`` square at a uniformly random position (fully inside the image) is set to
    the baseline ``x̄`` (``"black"``: the sample's minimum)."""
    base, value = c.split_baseline(baseline, x)
    fill = c.fill_values(x, base, value, None)
    h, w = x.shape[1:3]
    k_row, k_col = jax.random.split(key)
    rows = jax.random.randint(k_row, (samples, x.shape[0]), 0, h - patch_size + 1)
    cols = jax.random.randint(k_col, (samples, x.shape[0]), 0, w - patch_size + 1)
    r = jnp.arange(h)[None, None, :, None]
    q = jnp.arange(w)[None, None, None, :]
    inside = (
        (r >= rows[..., None, None])
        & (r < rows[..., None, None] + patch_size)
        & (q >= cols[..., None, None])
        & (q < cols[..., None, None] + patch_size)
    )
    return jnp.where(inside[..., None], (x - fill)[None], 0.0)


@compiled(static=("score", "batch_size", "normalize"))
def _infidelity(
    problem: Problem,
    inputs: Inputs,
    attributions: Array,
    perturbations: Array,
    *,
    score: str,
    batch_size: int,
    normalize: bool,
) -> Array:
    x = inputs.x
    indices = problem.class_indices(inputs)
    scores = c.scorer(problem, inputs, indices, score)
    reference = scores(x[None])[0]
    a = attributions if attributions.shape == x.shape else attributions[..., None]

    def sample(i: Array) -> tuple[Array, Array]:
        explained = jnp.sum(c.flat(jnp.broadcast_to(a, x.shape) * i), axis=1)  # Iᵀa
        change = reference - scores((x - i)[None])[0]  # f(x) − f(x − I)
        return explained, change

    explained, change = chunked_vmap(sample, perturbations, chunk_size=batch_size)  # (S, B)
    if normalize:  # Captum: the attribution scaled by the least-squares β first
        num = jnp.sum(explained * change, axis=0)
        den = jnp.sum(explained * explained, axis=0)
        beta = jnp.where(den != 0, num / jnp.where(den != 0, den, 1.0), 0.0)
        explained = beta * explained
    return jnp.mean(jnp.square(explained - change), axis=0)


def infidelity(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    attributions: Any,
    *,
    key: Array | None = None,
    samples: int = 10,
    perturbation: str = "gaussian",
    std: float = 0.003,
    patch_size: int = 4,
    baseline: Any = "black",
    normalize: bool = False,
    score: str = "logit",
    perturbations: Any = None,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Array:
    """Infidelity (Yeh et al. 2019, "On the (In)fidelity and Sensitivity of Explanations", Eq. 1)::

        INFD(Φ, f, x) = E_I[ (Iᵀ Φ(x) − (f(x) − f(x − I)))² ]

    estimated over ``samples`` perturbations I, per sample ``(B,)``.  ``perturbation="gaussian"``:
    I ~ N(0, std²) per element (Captum's tutorial, std 0.003); ``"square"``: Yeh's square removal,
    I = (x − baseline) on a random ``patch_size`` square (:func:`square_perturbations`).
    ``perturbations (samples, B, ...)`` injects I directly.  ``normalize=True`` first rescales Φ by the
    least-squares factor β = E[IᵀΦ Δf] / E[(IᵀΦ)²] (Captum's ``normalize``).  Equal to
    ``captum.metrics.infidelity`` given the same I.  Quantus' ``Infidelity`` does not estimate this
    expectation (it replaces every 4×4 patch in raster order cumulatively and averages identical
    passes); its preset here keeps its parameters (square removal, patch 4, "black", 10 samples) with
    the paper's estimator.
    """
    problem, inputs, a = _setup(model, variables, x, target, attributions, model_kwargs, score)
    xs = inputs.x
    n = c.check_positive_int("samples", samples)
    if perturbations is not None:
        draws = c.check_draws("perturbations", perturbations, (n, *xs.shape), "one perturbation I per sample and draw")
    else:
        key = c.check_key(key, True, "infidelity")
        c.check_choice("perturbation", perturbation, ("gaussian", "square"))
        if perturbation == "gaussian":
            draws = c.check_non_negative("std", std) * jax.random.normal(key, (n, *xs.shape), xs.dtype)
        else:
            if xs.ndim != 4:
                raise InputError("perturbation='square' needs NHWC images.")
            p = c.check_positive_int("patch_size", patch_size)
            if p > min(xs.shape[1:3]):
                raise InputError(f"patch_size {p} is larger than the image {tuple(xs.shape[1:3])}.")
            draws = square_perturbations(key, xs, n, p, baseline)
    return _infidelity(
        problem,
        inputs,
        a,
        draws,
        score=score,
        batch_size=_auto_batch(batch_size, xs.shape[0]),
        normalize=bool(normalize),
    )


# ---------------------------------------------------------------------------------------------------
# ROAD
# ---------------------------------------------------------------------------------------------------


@compiled(static=("counts", "direction", "noise", "score", "batch_size"))
def _road(
    problem: Problem,
    inputs: Inputs,
    attributions: Array,
    noise_draws: Array | None,
    key: Array | None,
    *,
    counts: tuple[int, ...],
    direction: str,
    noise: float,
    score: str,
    batch_size: int,
) -> Array:
    x = inputs.x
    indices = problem.class_indices(inputs)
    scores = c.scorer(problem, inputs, indices, score)
    pixel_scores = c.flat(attributions if attributions.ndim == 3 else jnp.sum(attributions, axis=-1))
    rank = c.ranks_from_order(c.order(pixel_scores, direction)).reshape(x.shape[:3])
    impute = jax.vmap(noisy_linear_imputation, in_axes=(0, 0, 0, None))

    def at(step: Array, count: Array, draws: Array | None) -> Array:
        if draws is None:
            assert key is not None  # road checked key when it draws the noise
            draws = jax.random.normal(jax.random.fold_in(key, step), x.shape, x.dtype)
        return scores(impute(x, rank < count, draws, noise)[None])[0]

    steps = jnp.arange(len(counts))
    args = (steps, jnp.asarray(counts, jnp.int32)) + (() if noise_draws is None else (noise_draws,))
    fn = at if noise_draws is not None else (lambda s, k: at(s, k, None))
    return chunked_vmap(fn, *args, chunk_size=batch_size).T


def road(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    attributions: Any,
    *,
    key: Array | None = None,
    percentages: Sequence[float] = tuple(range(1, 100, 2)),
    order: str = "morf",
    noise: float = 0.01,
    score: str = "accuracy",
    noise_draws: Any = None,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Curve:
    """ROAD, RemOve And Debias (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy for
    Attribution Methods"): for each percentage p the ``int(H·W·p/100)`` most (``"morf"``) or least
    (``"lerf"``) relevant pixels are removed and filled by noisy linear imputation (each removed value
    the weighted mean of its 8 neighbours, plus ``noise``·ε; :func:`~xai_jax.evaluation.imputation.
    noisy_linear_imputation`), and the model is scored on the imputed image::

        scores[b, p] = 1[argmax f(x̃_b^p) = c_b]     (score="accuracy", Quantus' default)

    Pixel relevance is the attribution summed over channels.  Averaging ``scores`` over samples gives
    the paper's accuracy curve (Quantus' result, but Quantus averages only the *first* batch of its
    ``batch_size``, and its pixel indices are wrong for multi-channel images).  ``noise_draws (P, B,
    ...)`` injects the standard-normal ε; otherwise drawn from ``key``.

    Returns :class:`Curve` with ``fractions = p / 100`` and ``scores (B, P)``.
    """
    problem, inputs, a = _setup(model, variables, x, target, attributions, model_kwargs, score)
    xs = inputs.x
    if xs.ndim != 4:
        raise InputError(f"road works on NHWC images; x has shape {tuple(xs.shape)}.")
    c.check_choice("order", order, ("morf", "lerf"))
    pct = tuple(float(p) for p in percentages)
    if not pct or any(not 0 <= p <= 100 for p in pct):
        raise InputError(f"percentages must be numbers in [0, 100]; got {list(percentages)}.")
    n_pixels = xs.shape[1] * xs.shape[2]
    counts = tuple(int(n_pixels * p / 100) for p in pct)  # Quantus: int(a_size * p / 100)
    noise = c.check_non_negative("noise", noise)
    if noise_draws is not None:
        noise_draws = c.check_draws(
            "noise_draws", noise_draws, (len(pct), *xs.shape), "standard normal draws per percentage"
        )
    elif noise > 0:
        c.check_key(key, True, "road")
    else:
        noise_draws = jnp.zeros((len(pct), *xs.shape), xs.dtype)
    scores = _road(
        problem,
        inputs,
        a,
        noise_draws,
        key,
        counts=counts,
        direction=order,
        noise=noise,
        score=score,
        batch_size=_auto_batch(batch_size, xs.shape[0]),
    )
    return Curve(jnp.asarray(pct, jnp.float32) / 100, scores)


# ---------------------------------------------------------------------------------------------------
# Sufficiency, completeness
# ---------------------------------------------------------------------------------------------------


@compiled(static=("threshold",))
def _sufficiency(problem: Problem, inputs: Inputs, attributions: Array, *, threshold: float) -> Array:
    a = c.flat(attributions)
    b = a.shape[0]
    predicted = jnp.argmax(problem.outputs(inputs), axis=-1)
    var = jnp.var(a, axis=0, ddof=1) if b > 1 else jnp.zeros(a.shape[1])
    scale = jnp.where(var > 0, 1.0 / jnp.where(var > 0, var, 1.0), 0.0)  # constant features: no evidence
    diff = a[:, None, :] - a[None, :, :]
    dist = jnp.sqrt(jnp.sum(diff * diff * scale, axis=-1))  # standardised Euclidean
    top = jnp.max(dist)
    dist = dist / jnp.where(top > 0, top, 1.0)
    similar = (dist <= threshold) & ~jnp.eye(b, dtype=bool)
    same = predicted[:, None] == predicted[None, :]
    count = jnp.sum(similar, axis=1)
    return jnp.where(count > 0, jnp.sum(similar & same, axis=1) / jnp.maximum(count, 1), 0.0)


def sufficiency(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    attributions: Any,
    *,
    threshold: float = 0.6,
    absolute: bool = True,
    normalise: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Array:
    """Sufficiency (Dasgupta, Frost & Moshkovitz 2022, "Framework for Evaluating Faithfulness of Local
    Explanations"): among the *other samples of the batch* whose explanations are close to sample b's
    (standardised Euclidean distance, divided by the batch's largest distance, ≤ ``threshold``), the
    fraction predicted as the same class::

        suff_b = |{j ≠ b : d(a_b, a_j) ≤ t, ŷ_j = ŷ_b}| / |{j ≠ b : d(a_b, a_j) ≤ t}|   (0 if none)

    A batch-level metric: scores depend on the batch.  Features constant across the batch carry no
    distance and are skipped (SciPy's ``seuclidean``, which Quantus calls, divides them by a zero
    variance and then every score is 0).  Quantus defaults: threshold 0.6, absolute values (its
    normalisation divides the whole batch by one number, which leaves these distances unchanged; a
    per-sample ``normalise`` here would change them, so it is off by default).
    """
    problem, inputs, a = _setup(model, variables, x, target, attributions, model_kwargs, None)
    a = c.preprocess(a, absolute=bool(absolute), normalise_by=c.check_choice("normalise", normalise, c.NORMALISATIONS))
    return _sufficiency(problem, inputs, a, threshold=c.check_non_negative("threshold", threshold))


@compiled(static=("baseline", "score"))
def _completeness(
    problem: Problem, inputs: Inputs, attributions: Array, baseline_value: Array, *, baseline: c.Baseline, score: str
) -> Array:
    x = inputs.x
    indices = problem.class_indices(inputs)
    scores = c.scorer(problem, inputs, indices, score)
    reference = c.fill_values(x, baseline, baseline_value, None)
    both = scores(jnp.stack([x, reference]))
    return jnp.sum(c.flat(attributions), axis=1) - (both[0] - both[1])


def completeness(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    attributions: Any,
    *,
    baseline: Any = "zero",
    score: str = "logit",
    model_kwargs: Mapping[str, Any] | None = None,
) -> Array:
    """Completeness gap (Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep Networks",
    Proposition 1: Σ_i a_i = f(x) − f(x̄))::

        gap_b = Σ_i a_{b,i} − (f_c(x_b) − f_c(x̄_b))

    per sample ``(B,)``; 0 for a complete attribution with the same baseline (Integrated Gradients,
    DeepLIFT, LRP-0 on bias-free nets).  Quantus' ``Completeness`` returns the float equality test
    ``Σa == Δf`` (almost never true in floating point) after normalising the map by its maximum, which
    breaks completeness; here the gap itself, of the raw map (Quantus' preset uses its ``"black"``
    baseline).
    """
    problem, inputs, a = _setup(model, variables, x, target, attributions, model_kwargs, score)
    base, value = c.split_baseline(baseline, inputs.x)
    return _completeness(problem, inputs, a, value, baseline=base, score=score)
