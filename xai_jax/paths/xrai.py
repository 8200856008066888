"""XRAI: attributions of regions, grown greedily from over-segmentations.

Kapishnikov et al. (2019) ([kapishnikov2019]_).  A pixel attribution ``a`` (integrated gradients
averaged over a black and a white baseline, maximum over channels) is summarised over candidate
regions -- the segments of Felzenszwalb's graph segmentation ([felzenszwalb2004]_) at six scales,
each dilated by 5 pixels.  Starting from nothing, the region with the highest *gain density*
``mean(a over the pixels it adds)`` is added, until every candidate is used (or adds fewer than
``min_pixel_diff`` new pixels, then dropped) or the selected area exceeds ``area_threshold``; every
pixel receives the gain of the region that added it, and the pixels no region covered the mean
attribution over them.

Equal to PAIR ``saliency``'s ``XRAI`` (``algorithm="full"``) on the same weights: the same
segmentation (computed here with scikit-image exactly as PAIR does: the image scaled to [-1, 1] and
resized to 224 x 224 with cubic interpolation, ``felzenszwalb(scale ∈ {50, 100, 150, 250, 500,
1200}, sigma=0.8, min_size=150)``, segments resized back by nearest neighbour, dilated by a disk of
radius 5), the same base attribution (integrated gradients with ``steps`` points on
``linspace(0, 1, steps)``, each weighted ``1/steps``), the same greedy order (ties to the first
region).  The segmentation runs eagerly on the host (scikit-image, the extra
``xai-jax[perturbation]``); the greedy selection runs for every sample in one jitted
``while_loop`` over padded ``(B, K, H·W)`` region masks.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import (
    ChunkSize,
    InputError,
    InputMethod,
    Inputs,
    MethodCall,
    NonNegativeInt,
    Option,
    OptionContext,
    PositiveFloat,
    PositiveInt,
    Problem,
    fix_target,
    method,
)
from ..core.checks import is_traced
from ..perturbation.features import import_skimage_segmentation
from ..trace.gradients import target_gradient
from .gradients import summed_gradients

#: PAIR's segmentation settings (``saliency.core.xrai``).
FELZENSZWALB_SCALES = (50, 100, 150, 250, 500, 1200)
FELZENSZWALB_SIGMA = 0.8
FELZENSZWALB_MIN_SIZE = 150
SEGMENTATION_SIZE = (224, 224)
DILATION_RADIUS = 5


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Regions:
    """Candidate regions of every sample: ``masks`` ``(B, K, H, W)`` bool, ``valid`` ``(B, K)`` (padding
    rows are invalid: images have different numbers of segments)."""

    masks: jax.Array
    valid: jax.Array

    def tree_flatten(self) -> tuple[tuple[jax.Array, jax.Array], None]:
        return (self.masks, self.valid), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: tuple[jax.Array, jax.Array]) -> Regions:
        return cls(*children)


def felzenszwalb_regions(
    image: np.ndarray, *, resize: bool = True, dilation: int = DILATION_RADIUS
) -> list[np.ndarray]:
    """PAIR's candidate regions of one ``(H, W, C)`` image: boolean ``(H, W)`` masks (module docstring)."""
    segmentation = import_skimage_segmentation()
    from skimage.morphology import dilation as dilate
    from skimage.morphology import disk
    from skimage.transform import resize as resize_image

    image = np.asarray(image, np.float64)
    shape = image.shape[:2]
    low, high = image.min(), image.max()
    scaled = (image - low) / (high - low) * 2.0 - 1.0  # PAIR: min-max to [-1, 1] (a constant image gives NaN there too)
    if resize:
        scaled = resize_image(
            scaled, SEGMENTATION_SIZE, order=3, mode="constant", preserve_range=True, anti_aliasing=True
        )
    masks: list[np.ndarray] = []
    for scale in FELZENSZWALB_SCALES:
        segments = segmentation.felzenszwalb(
            scaled, scale=scale, sigma=FELZENSZWALB_SIGMA, min_size=FELZENSZWALB_MIN_SIZE
        )
        if resize:
            segments = resize_image(
                segments, shape, order=0, preserve_range=True, mode="constant", anti_aliasing=False
            ).astype(int)
        masks.extend(segments == label for label in range(segments.min(), segments.max() + 1))
    if dilation:
        footprint = disk(dilation)
        masks = [dilate(mask, footprint=footprint) for mask in masks]
    return masks


def regions_from(value: Any, x: np.ndarray | jax.Array) -> Regions:
    """:class:`Regions` from ``"felzenszwalb"`` (PAIR's segmentation of every image), integer label
    maps ``(H, W)`` / ``(B, H, W)`` (one region per label, not dilated), boolean masks ``(K, H, W)``
    shared by every sample, or a per-sample list of such masks."""
    batch, height, width = x.shape[:3]
    if isinstance(value, Regions):
        return value
    if isinstance(value, str):
        if value != "felzenszwalb":
            raise InputError(f"segments must be 'felzenszwalb', label maps or boolean masks; got {value!r}.")
        if is_traced(x):
            raise InputError("XRAI segments the concrete image; x is traced here. Pass segments= computed outside jit.")
        per_sample = [felzenszwalb_regions(image) for image in np.asarray(x)]
    elif isinstance(value, (list, tuple)) and len(value) == batch and all(np.ndim(v) == 3 for v in value):
        per_sample = [list(np.asarray(v, bool)) for v in value]
    else:
        array = np.asarray(value)
        if array.dtype == bool and array.ndim == 3 and array.shape[1:] == (height, width):
            per_sample = [list(array)] * batch
        elif np.issubdtype(array.dtype, np.integer) and array.shape in ((height, width), (batch, height, width)):
            maps = np.broadcast_to(array, (batch, height, width))
            per_sample = [[m == label for label in np.unique(m)] for m in maps]
        else:
            raise InputError(
                f"segments of shape {array.shape} ({array.dtype}) do not fit images {(height, width)}: pass "
                f"'felzenszwalb', integer labels ({height}, {width}) or ({batch}, {height}, {width}), or boolean "
                f"masks (K, {height}, {width})."
            )
    count = max(len(masks) for masks in per_sample)
    if count == 0:
        raise InputError("XRAI needs at least one candidate region per image.")
    padded = np.zeros((batch, count, height, width), bool)
    valid = np.zeros((batch, count), bool)
    for b, masks in enumerate(per_sample):
        for k, mask in enumerate(masks):
            padded[b, k], valid[b, k] = mask, True
    return Regions(jnp.asarray(padded), jnp.asarray(valid))


def _check_segments(ctx: OptionContext, name: str, value: Any) -> Regions:
    if ctx.inputs.x.ndim != 4:
        raise InputError(f"XRAI segments NHWC images; x has shape {tuple(ctx.inputs.x.shape)}.")
    return regions_from(value, ctx.inputs.x)


Segments = Annotated[Any, Option(_check_segments)]


def greedy_gains(
    attr: jax.Array, masks: jax.Array, valid: jax.Array, area_threshold: float, min_pixel_diff: int
) -> jax.Array:
    """XRAI's greedy region selection for one sample: ``attr`` ``(P,)``, ``masks`` ``(K, P)`` bool,
    ``valid`` ``(K,)``; returns every pixel's gain ``(P,)`` (PAIR's ``XRAI._xrai``)."""
    pixels = attr.shape[0]
    masks_f = masks.astype(attr.dtype)

    def go_on(state: tuple[Any, ...]) -> jax.Array:
        current, remaining, _, stop = state
        return (current.mean() <= area_threshold) & remaining.any() & ~stop

    def add_best(state: tuple[Any, ...]) -> tuple[Any, ...]:
        current, remaining, output, _ = state
        new = masks_f * (~current).astype(attr.dtype)[None]  # (K, P): pixels each region would add
        added = new.sum(axis=1)
        remaining = remaining & (added >= min_pixel_diff)  # too little new area: dropped for good
        gain = jnp.where(remaining, (new @ attr) / jnp.maximum(added, 1.0), -jnp.inf)
        best = jnp.argmax(gain)  # the first maximum, as PAIR's strict ">"
        stop = ~remaining.any()
        chosen = masks[best] & ~current & ~stop
        output = jnp.where(chosen, gain[best], output)
        current = current | chosen
        remaining = remaining & ~((jnp.arange(remaining.shape[0]) == best) & ~stop)
        return current, remaining, output, stop

    state = (jnp.zeros(pixels, bool), valid, jnp.full(pixels, -jnp.inf, attr.dtype), jnp.asarray(False))
    _, _, output, _ = jax.lax.while_loop(go_on, add_best, state)
    uncovered = output == -jnp.inf
    fill = jnp.where(uncovered, attr, 0.0).sum() / jnp.maximum(uncovered.sum(), 1)
    return jnp.where(uncovered, fill, output)


def xrai_integrated_gradients(problem: Problem, inputs: Inputs, steps: int, batch_size: ChunkSize) -> jax.Array:
    """XRAI's base attribution: the mean of integrated gradients from a black (``min x``) and a white
    (``max x``) constant image, ``steps`` points on ``linspace(0, 1, steps)`` weighted ``1/steps``."""
    x = inputs.x
    flat = x.reshape(x.shape[0], -1)
    shape = (-1, *[1] * (x.ndim - 1))
    references = (
        flat.min(axis=1).reshape(shape) * jnp.ones_like(x),
        flat.max(axis=1).reshape(shape) * jnp.ones_like(x),
    )
    alphas = jnp.linspace(0.0, 1.0, steps, dtype=x.dtype)
    total = jnp.zeros_like(x)
    for reference in references:
        delta = x - reference

        def term(
            alpha: jax.Array, rules: Any = None, reference: jax.Array = reference, delta: jax.Array = delta
        ) -> jax.Array:
            return target_gradient(problem, inputs, reference + alpha * delta, inputs.indices, rules)

        total = total + summed_gradients(term, (alphas,), batch_size) * delta / steps
    return total / len(references)


@method("xrai", family="path", signed=True, report_options={"steps": 16})
def xrai(
    problem: Problem,
    inputs: Inputs,
    *,
    segments: Segments = "felzenszwalb",
    attribution: InputMethod | None = None,
    steps: PositiveInt = 100,
    area_threshold: PositiveFloat = 1.0,
    min_pixel_diff: NonNegativeInt = 50,
    batch_size: ChunkSize = "auto",
) -> jax.Array:
    """XRAI ([kapishnikov2019]_; PAIR ``saliency`` ``XRAI``): region-level attributions by greedy gain density.

    Regions are added in decreasing order of ``mean_{p ∈ R \\ S} a_p`` (``S``: pixels already
    selected); each pixel gets the gain of the region that added it.  ``a`` is the base attribution,
    maximum over channels.

    Args:
      segments: candidate regions: ``"felzenszwalb"`` (PAIR's multi-scale segmentation, needs
        scikit-image), integer label maps ``(H, W)`` / ``(B, H, W)``, boolean masks ``(K, H, W)``, or
        a list of per-sample boolean masks.
      attribution: the base attribution, a method value with ``x``-shaped maps (default: XRAI's
        integrated gradients from black and white, module docstring).
      steps: path points of the default base attribution.
      area_threshold: stop once the selected fraction of the image exceeds this (1: cover everything).
      min_pixel_diff: regions adding fewer new pixels are dropped.
      batch_size: path points of the default base attribution evaluated at once.

    Returns:
      ``x``-shaped map of region gains (the same value in every channel of a pixel).

    Example:
      >>> labels = np.arange(28 * 28).reshape(28, 28) // 196  # four horizontal bands
      >>> sal = xj.xrai(model, variables, x, segments=labels, steps=4, min_pixel_diff=1)
      >>> sal.shape == x.shape
      True
    """
    problem, inputs = fix_target(problem, inputs)
    x = inputs.x
    if attribution is None:
        base = xrai_integrated_gradients(problem, inputs, steps, batch_size)
    else:
        call: MethodCall = attribution
        base = call.apply(problem, inputs)
    pixel_attr = base.max(axis=-1).reshape(x.shape[0], -1)
    regions: Regions = segments
    masks = regions.masks.reshape(*regions.masks.shape[:2], -1)
    gains = jax.vmap(lambda a, m, v: greedy_gains(a, m, v, area_threshold, min_pixel_diff))(
        pixel_attr, masks, regions.valid
    )
    return jnp.broadcast_to(gains.reshape(*x.shape[:3], 1), x.shape)


__all__ = ["Regions", "felzenszwalb_regions", "greedy_gains", "regions_from", "xrai", "xrai_integrated_gradients"]
