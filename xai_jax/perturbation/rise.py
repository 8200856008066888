"""RISE: randomized input sampling for explanation.

Petsiuk, Das & Saenko (2018) ([petsiuk2018]_): probe the model with the input multiplied by random
smooth masks ``M_1..M_N`` and average the masks weighted by the scores they leave,

    S(λ) = 1 / (E[M] · N) · Σ_k s(x ⊙ M_k) · M_k(λ)        (paper, eq. 6; an estimate of E[s(x ⊙ M) | M(λ) = 1])

Masks (generated on the device, one ``jax.random`` key each): a ``cells x cells`` grid of
Bernoulli(``p``) cells, upsampled bilinearly to ``(cells + 1) · ⌈H/cells⌉`` pixels (half-pixel
centres, edges clamped), then cropped to ``H x W`` at a random shift in ``[0, ⌈H/cells⌉)`` per axis.

Implementations differ in the normalisation and the score; ``normalization`` makes the choice explicit:

=============  ==================================================  ====================================
``"paper"``    ``Σ_k s_k M_k / (N p)``                              Petsiuk et al.'s estimator (their
                                                                    code divides by ``N · p``)
``"torchray"`` ``Σ_k s_k M_k / N``                                  TorchRay's ``rise`` (which also
                                                                    scores with ``sigmoid(logits)``:
                                                                    ``score="sigmoid"``)
``"xplique"``  ``Σ_k s_k M_k / (Σ_k M_k + 10⁻⁴)`` per pixel          Xplique's ``Rise``: the empirical
                                                                    conditional mean, whatever the
                                                                    masks' actual coverage
=============  ==================================================  ====================================

With exactly balanced masks (every pixel kept in a fraction ``p`` of them) ``"paper"`` and
``"xplique"`` agree up to the 10⁻⁴; ``"torchray"`` is ``p`` times ``"paper"``.  The masks' own
generators differ too (the paper resizes with reflection at the borders, TorchRay pads by
reflection and resizes with ``align_corners=False``, Xplique crops one random window per batch of
masks); tests compare the estimators on injected masks (``masks=``).  Masks are evaluated in chunks
of ``batch_size`` (each a forward pass of the batch), so memory is bounded by the chunk.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import (
    Baseline,
    Choice,
    ChunkSize,
    InputError,
    Inputs,
    Key,
    Option,
    OptionContext,
    PositiveInt,
    Problem,
    chunked_sum,
    method,
)
from ..core.checks import check_finite_array, check_float, is_traced
from .features import image_only

NORMALIZATIONS = ("paper", "torchray", "xplique")
SCORES = ("output", "softmax", "sigmoid")
#: Xplique's ``Rise.EPSILON``, added to the per-pixel mask sum.
XPLIQUE_EPSILON = 1e-4


def rise_mask(grid_key: jax.Array, shift_key: jax.Array, shape: tuple[int, int], cells: int, p: float) -> jax.Array:
    """One ``(H, W)`` RISE mask with values in [0, 1] (see the module docstring): the grid drawn from
    ``grid_key``, the shift from ``shift_key``."""
    height, width = shape
    cell = (math.ceil(height / cells), math.ceil(width / cells))
    grid = jax.random.bernoulli(grid_key, p, (cells, cells)).astype(jnp.float32)
    upsampled = jax.image.resize(grid, ((cells + 1) * cell[0], (cells + 1) * cell[1]), method="linear")
    # uniform, not randint: randint splits its key, and a chunk must only consume keys (core.batching
    # sizes chunks from the jaxpr, which cannot measure key-typed values)
    shift = jnp.floor(jax.random.uniform(shift_key, (2,)) * jnp.asarray(cell, jnp.float32)).astype(jnp.int32)
    return jax.lax.dynamic_slice(upsampled, (shift[0], shift[1]), (height, width))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def rise_masks(key: jax.Array, count: int, shape: tuple[int, int], cells: int = 7, p: float = 0.5) -> jax.Array:
    """``(count, H, W)`` masks, the ones :func:`rise` draws from ``key`` (it draws them chunk by chunk)."""
    grid_keys, shift_keys = mask_keys(key, count)
    return jax.vmap(lambda g, s: rise_mask(g, s, shape, cells, p))(grid_keys, shift_keys)


def mask_keys(key: jax.Array, count: int) -> tuple[jax.Array, jax.Array]:
    """Per-mask keys for the grid and the shift, split before the chunked loop (a chunk only consumes keys)."""
    keys = jax.random.split(key, (2, count))
    return keys[0], keys[1]


def _check_probability(ctx: OptionContext, name: str, value: Any) -> float:
    number = check_float(name, value)
    if not 0.0 < number < 1.0:
        raise InputError(f"{name} must lie strictly between 0 and 1 (the fraction of cells kept); got {number}.")
    return number


def _check_masks(ctx: OptionContext, name: str, value: Any) -> jax.Array:
    image_only(ctx, "RISE")
    array = jnp.asarray(value, ctx.inputs.x.dtype)
    height, width = ctx.inputs.x.shape[1:3]
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3 or tuple(array.shape[1:]) != (height, width):
        raise InputError(f"{name} must have shape (N, H, W) = (N, {height}, {width}); got {tuple(array.shape)}.")
    check_finite_array(name, array)
    if not is_traced(array) and (np.asarray(array).min() < 0 or np.asarray(array).max() > 1):
        raise InputError(f"{name} must hold values in [0, 1] (1 keeps a pixel).")
    return array


Probability = Annotated[float, Option(_check_probability)]
Masks = Annotated[jax.Array | None, Option(_check_masks)]


def _validate(ctx: OptionContext) -> None:
    image_only(ctx, "RISE")
    if ctx.options["score"] != "output" and ctx.problem.target.kind == "callable":
        raise InputError(
            "score='softmax'/'sigmoid' transforms class scores; with a callable target pass score='output' "
            "and apply the transform in the target."
        )


@method("rise", family="perturbation", signed=False, report_options={"samples": 512}, validate=_validate)
def rise(
    problem: Problem,
    inputs: Inputs,
    *,
    key: Key,
    samples: PositiveInt = 4000,
    cells: PositiveInt = 7,
    p: Probability = 0.5,
    normalization: Choice(*NORMALIZATIONS) = "paper",  # type: ignore[valid-type]
    score: Choice(*SCORES) = "output",  # type: ignore[valid-type]
    baseline: Baseline = 0.0,
    masks: Masks = None,
    batch_size: ChunkSize = "auto",
) -> jax.Array:
    """RISE ([petsiuk2018]_): the average of random masks weighted by the target score of the masked input.

    ``S = Σ_k s_k M_k / Z`` with ``s_k = score(f(x ⊙ M_k + b ⊙ (1 - M_k)))_c`` and ``Z = N p`` (``"paper"``),
    ``N`` (``"torchray"``) or ``Σ_k M_k + 10⁻⁴`` per pixel (``"xplique"``); see the module docstring.

    Args:
      key: ``jax.random`` key for the masks (unused when ``masks`` are given).
      samples: number of masks ``N``.
      cells: grid cells per side of the low-resolution masks (``s`` in the paper).
      p: probability that a cell is kept (``E[M]``).
      normalization: ``"paper"``, ``"torchray"`` or ``"xplique"``.
      score: the target's ``"output"`` as the model returns it, or its ``"softmax"`` / ``"sigmoid"``
        probability (TorchRay uses ``"sigmoid"``; the paper the model's class probability).
      baseline: what a masked-out pixel becomes (0: the paper's ``x ⊙ M``).
      masks: explicit masks ``(N, H, W)`` in [0, 1], shared by every sample (the injection point for
        comparing with another implementation).
      batch_size: masks evaluated at once (each a forward pass of the batch).

    Returns:
      ``x``-shaped saliency (the same value in every channel of a pixel).

    Example:
      >>> sal = xj.rise(model, variables, x, key=jax.random.key(0), samples=64)
      >>> sal.shape == x.shape
      True
    """
    x = inputs.x
    indices = problem.class_indices(inputs)
    shape = (x.shape[1], x.shape[2])

    def target_score(masked: jax.Array) -> jax.Array:
        outputs = problem.outputs(inputs, masked)
        if score == "softmax":
            outputs = jax.nn.softmax(outputs, axis=-1)
        elif score == "sigmoid":
            outputs = jax.nn.sigmoid(outputs)
        return problem.target.select(outputs, indices)

    def term(mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        keep = mask[None, :, :, None]
        s = target_score(x * keep + baseline * (1 - keep))
        return s[:, None, None] * mask[None], mask

    if masks is None:
        count = samples
        weighted, coverage = chunked_sum(
            lambda g, s: term(rise_mask(g, s, shape, cells, p)), *mask_keys(key, samples), chunk_size=batch_size
        )
    else:
        count = masks.shape[0]
        weighted, coverage = chunked_sum(term, masks, chunk_size=batch_size)
    if normalization == "paper":
        saliency = weighted / (count * p)
    elif normalization == "torchray":
        saliency = weighted / count
    else:
        saliency = weighted / (coverage + XPLIQUE_EPSILON)
    return jnp.broadcast_to(saliency[..., None], x.shape)


__all__ = ["NORMALIZATIONS", "SCORES", "rise", "rise_mask", "rise_masks"]
