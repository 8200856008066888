"""Extremal perturbations and meaningful perturbation: saliency masks found by optimisation.

Both search a mask ``m`` (1 keeps a pixel, 0 perturbs it) by gradient descent through the model,
as one jitted ``lax.scan`` of optimiser updates in which every sample, target and area has its own
mask: the model sees all masked copies as one batch, so the masks are optimised in parallel
(samples are independent in inference mode) -- :func:`optimize_masks`.

**Extremal perturbations** (Fong, Patrick & Vedaldi 2019, [fong2019]_; TorchRay's
``extremal_perturbation``, reproduced step for step):  for each area ``a``, the smooth mask
``m = G(m̄)`` (TorchRay's ``MaskGenerator``: parameters on a grid of stride ``step``, each spread by
a kernel ``exp(-2 max(0, d/σ - ½)²)``, pooled by a softmax of coldness 20) maximises

    E(m̄) = reward(f(Φ(x; m))) - λ_t · mean((sort(m) - r_a)²),    r_a = [0 … 0 1 … 1]  (a fraction a of ones)

where ``Φ(x; m)`` interpolates, per pixel, a pyramid of increasingly blurred (or faded) copies of ``x``
at level ``m`` (``"preserve"``: keep what the mask shows; ``"delete"``: ``Φ(x; 1 - m)`` and minus the
reward; ``"dual"``: both), ``λ_t = 300 · 1.0035^t``.  SGD (lr 0.01, momentum 0.9, dampening 0.9),
parameters clamped to [0, 1] after each step, the input flipped horizontally on even steps
(jitter).  Result: the masks ``(B, A, H, W)`` evaluated at the last of ``steps`` steps (as TorchRay
returns them: its last update is never used); the method's map is their sum over areas.

**Meaningful perturbation** (Fong & Vedaldi 2017, [fong2017]_): the deletion game

    m* = argmin_m  λ₁ mean|1 - m| + λ₂ mean(|∇m|^β) + s_c(Φ(x; m)),   Φ(x; m) = m ⊙ x + (1 - m) ⊙ x̃

with ``x̃`` a blurred (or constant) copy of ``x``, ``m`` a low-resolution mask upsampled bilinearly,
``s_c`` the class probability, Adam (lr 0.1), ``m`` clamped to [0, 1].  The map is ``1 - m``.  The
paper's ``λ₁ = 10⁻⁴, λ₂ = 10⁻²`` are for sums over a 224² image; with means over the mask the
common PyTorch port's ``λ₁ = 0.01, λ₂ = 0.2, β = 3`` are the defaults.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Annotated, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core import (
    Choice,
    FiniteFloat,
    Flag,
    InputError,
    Inputs,
    NonNegativeFloat,
    Option,
    OptionContext,
    PositiveFloat,
    PositiveInt,
    Problem,
    method,
)
from ..core.checks import check_float
from ..core.resize import upsample
from ..trace.interpreter import rewrite
from ..trace.xla_cpu import LOOP_GRADIENT_RULES
from .features import image_only

VARIANTS = ("preserve", "delete", "dual")
PERTURBATIONS = ("blur", "fade")
REWARDS = ("simple", "contrastive")
#: TorchRay's softmax-pooling coldness and optimiser constants.
COLDNESS = 20.0
LEARNING_RATE, MOMENTUM, DAMPENING = 0.01, 0.9, 0.9
REGULARIZER_WEIGHT, REGULARIZER_GROWTH = 300.0, 1.0035


# ---------------------------------------------------------------------------------------------------
# The shared engine
# ---------------------------------------------------------------------------------------------------


def optimize_masks(
    params: jax.Array,
    loss: Callable[[jax.Array, jax.Array], jax.Array],
    optimizer: optax.GradientTransformation,
    steps: int,
    project: Callable[[jax.Array], jax.Array],
) -> jax.Array:
    """Minimise ``loss(params, t)`` (a sum over independent masks) for ``steps`` updates of
    ``optimizer``, projecting after each (``project``: the clamp to [0, 1]); one ``lax.scan``."""

    def update(state: tuple[jax.Array, Any], t: jax.Array) -> tuple[tuple[jax.Array, Any], None]:
        params, opt_state = state
        grads = jax.grad(loss)(params, t)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (project(optax.apply_updates(params, updates)), opt_state), None

    (params, _), _ = jax.lax.scan(update, (params, optimizer.init(params)), jnp.arange(steps))
    return params


class _MomentumState(NamedTuple):
    buffer: jax.Array
    steps: jax.Array  # not ``count``: that would shadow ``tuple.count``


def torch_sgd(learning_rate: float, momentum: float, dampening: float) -> optax.GradientTransformation:
    """``torch.optim.SGD(lr, momentum, dampening)``: the first step's buffer is the gradient itself,
    later ``b ← μ b + (1 - d) g``; the update is ``-lr · b``."""

    def init(params: jax.Array) -> _MomentumState:
        return _MomentumState(jnp.zeros_like(params), jnp.zeros((), jnp.int32))

    def update(grads: jax.Array, state: _MomentumState, params: Any = None) -> tuple[jax.Array, _MomentumState]:
        buffer = jnp.where(state.steps == 0, grads, momentum * state.buffer + (1 - dampening) * grads)
        return -learning_rate * buffer, _MomentumState(buffer, state.steps + 1)

    return optax.GradientTransformation(init, update)


def _unit(params: jax.Array) -> jax.Array:
    return jnp.clip(params, 0.0, 1.0)


def loop_outputs(problem: Problem, inputs: Inputs) -> Callable[[jax.Array], Any]:
    """The model's outputs for a batch, with the gradient rules that stay fast inside ``lax.scan``."""
    forward = rewrite(problem.forward, LOOP_GRADIENT_RULES)
    return lambda x: forward(inputs.variables, x, inputs.kwargs)


# ---------------------------------------------------------------------------------------------------
# TorchRay's smooth masks and perturbation pyramid
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SmoothMasks:
    """TorchRay's ``MaskGenerator(shape, step, sigma)`` (softmax pooling, clamped): parameters on a
    ``shape_in`` grid -> masks of ``shape`` (cropped) and ``shape_out`` (with margin)."""

    shape: tuple[int, int]
    step: int
    sigma: float

    @property
    def padding(self) -> int:
        return 1 + math.ceil((self.sigma + self.sigma) / self.step)  # margin = sigma

    @property
    def radius(self) -> int:
        return 1 + math.ceil(self.sigma / self.step)

    @property
    def shape_in(self) -> tuple[int, int]:
        return tuple(math.ceil(z / self.step) for z in self.shape)  # type: ignore[return-value]

    @property
    def shape_mid(self) -> tuple[int, int]:
        return tuple(z + 2 * self.padding - (2 * self.radius + 1) + 1 for z in self.shape_in)  # type: ignore[return-value]

    @property
    def shape_up(self) -> tuple[int, int]:
        return tuple(self.step * z for z in self.shape_mid)  # type: ignore[return-value]

    @property
    def shape_out(self) -> tuple[int, int]:
        return tuple(z - self.step + 1 for z in self.shape_up)  # type: ignore[return-value]

    @functools.cached_property
    def weight(self) -> np.ndarray:
        """``((2r+1)², out_h, out_w)`` kernel weights, in float32 as TorchRay computes them."""
        f32 = np.float32
        size = 2 * self.radius + 1
        mid, up, out = self.shape_mid, self.shape_up, self.shape_out
        step_inv = [f32(m) / f32(u) for m, u in zip(mid, up)]
        uy, ux = np.meshgrid(np.arange(out[0], dtype=f32), np.arange(out[1], dtype=f32), indexing="ij")
        weight = np.zeros((size * size, *out), f32)
        for ky in range(size):
            for kx in range(size):
                iy = np.floor(step_inv[0] * uy) + f32(ky - self.padding)
                ix = np.floor(step_inv[1] * ux) + f32(kx - self.padding)
                delta = np.sqrt(
                    (uy - (f32(self.sigma) + f32(self.step) * iy)) ** 2
                    + (ux - (f32(self.sigma) + f32(self.step) * ix)) ** 2
                )
                z = delta / f32(self.sigma)
                weight[ky * size + kx] = np.exp(f32(-2) * np.maximum(z - f32(0.5), 0) ** 2)
        return weight

    def generate(self, params: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``params`` ``(..., h_in, w_in)`` -> ``(cropped (..., H, W), full (..., out_h, out_w))``."""
        size = 2 * self.radius + 1
        lead = params.shape[:-2]
        flat = params.reshape(-1, *self.shape_in)
        padded = jnp.pad(flat, ((0, 0), (self.padding, self.padding), (self.padding, self.padding)))
        mid_h, mid_w = self.shape_mid
        patches = jnp.stack(
            [padded[:, ky : ky + mid_h, kx : kx + mid_w] for ky in range(size) for kx in range(size)], axis=1
        )
        upsampled = jnp.repeat(jnp.repeat(patches, self.step, axis=2), self.step, axis=3)  # nearest, by the stride
        out_h, out_w = self.shape_out
        masks = jnp.asarray(self.weight) * upsampled[:, :, :out_h, :out_w]
        pooled = jnp.sum(masks * jax.nn.softmax(COLDNESS * masks, axis=1), axis=1)
        full = jnp.clip(pooled, 0.0, 1.0)
        m = round(self.sigma)
        cropped = full[:, m : m + self.shape[0], m : m + self.shape[1]]
        return cropped.reshape(*lead, *self.shape), full.reshape(*lead, out_h, out_w)


def torchray_blur_matrix(size: int, sigma: np.float32) -> np.ndarray:
    """``(size, size)`` matrix of TorchRay's ``imsmooth`` along one axis: kernel
    ``exp(-(i / (√2 σ + ε))²)`` normalised, ``|i| ≤ ⌈4σ⌉``, zero padding; float32 like TorchRay."""
    f32 = np.float32
    width = math.ceil(f32(4) * sigma)
    taps = np.arange(-width, width + 1, dtype=f32) / (f32(math.sqrt(2)) * sigma + f32(1.19209290e-07))
    kernel = np.exp(-taps * taps)
    kernel = kernel / kernel.sum(dtype=f32)
    offsets = np.arange(size)[None, :] - np.arange(size)[:, None]
    return np.where(np.abs(offsets) <= width, kernel[np.clip(offsets + width, 0, 2 * width)], f32(0)).astype(f32)


def pyramid(x: jax.Array, levels: int, kind: str, max_blur: float) -> jax.Array:
    """``(L, B, H, W, C)``: level ``l`` is ``x`` blurred with ``σ = (1 - l/(L-1)) σ_max`` (or faded to
    ``x · l/(L-1)``); the last level is ``x`` itself (TorchRay's ``Perturbation``)."""
    fractions = np.linspace(0, 1, levels, dtype=np.float32)  # torch.linspace(0, 1, L) in float32
    out = []
    for fraction in fractions:
        if kind == "fade":
            out.append(x * fraction)
            continue
        sigma = np.float32((np.float32(1) - fraction) * np.float32(max_blur))
        rows = jnp.asarray(torchray_blur_matrix(x.shape[1], sigma))
        cols = jnp.asarray(torchray_blur_matrix(x.shape[2], sigma))
        out.append(jnp.einsum("ih,bhwc,jw->bijc", rows, x, cols, precision=jax.lax.Precision.HIGHEST))
    return jnp.stack(out)


def apply_pyramid(levels: jax.Array, mask: jax.Array) -> jax.Array:
    """Per pixel, the pyramid level ``mask · (L-1)`` interpolated linearly (``levels``: ``(L, H, W, C)``
    of one sample, ``mask``: ``(H, W)``)."""
    count = levels.shape[0]
    position = mask * (count - 1)
    low = jnp.floor(position)
    frac = (position - low)[..., None]
    low = low.astype(jnp.int32)
    high = jnp.minimum(low + 1, count - 1)
    gather = lambda k: jnp.take_along_axis(levels, k[None, ..., None], axis=0)[0]
    return (1 - frac) * gather(low) + frac * gather(high)


# ---------------------------------------------------------------------------------------------------
# Extremal perturbations
# ---------------------------------------------------------------------------------------------------


def _check_areas(ctx: OptionContext, name: str, value: Any) -> tuple[float, ...]:
    values = (value,) if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) else value
    if not isinstance(values, (tuple, list)) or not values:
        raise InputError(f"{name} must be a number or a non-empty tuple of numbers in (0, 1); got {value!r}.")
    out = tuple(check_float(f"{name} entry", v) for v in values)
    bad = [a for a in out if not 0.0 < a < 1.0]
    if bad:
        raise InputError(
            f"{name} {bad} must lie strictly between 0 and 1: an area is the fraction of the image the mask "
            "keeps (0.1 = 10%); 0 and 1 are trivial masks."
        )
    return out


Areas = Annotated[tuple[float, ...], Option(_check_areas)]


def _validate_extremal(ctx: OptionContext) -> None:
    image_only(ctx, "extremal perturbation")
    if ctx.options["reward"] == "contrastive" and ctx.problem.target.kind == "callable":
        raise InputError("the contrastive reward compares the target class with the others: use a class target.")


def _reward(outputs: Any, problem: Problem, indices: jax.Array | None, kind: str) -> jax.Array:
    score = problem.target.select(outputs, indices)
    if kind == "simple":
        return score
    others = jnp.where(jax.nn.one_hot(indices, outputs.shape[-1], dtype=bool), -100.0, outputs)  # TorchRay's -100
    return score - others.max(axis=-1)


@method(
    "extremal_perturbation",
    family="perturbation",
    signed=False,
    report_options={"steps": 300},
    validate=_validate_extremal,
)
def extremal_perturbation(
    problem: Problem,
    inputs: Inputs,
    *,
    areas: Areas = (0.1,),
    variant: Choice(*VARIANTS) = "preserve",  # type: ignore[valid-type]
    perturbation: Choice(*PERTURBATIONS) = "blur",  # type: ignore[valid-type]
    reward: Choice(*REWARDS) = "simple",  # type: ignore[valid-type]
    steps: PositiveInt = 800,
    levels: PositiveInt = 8,
    step: PositiveInt = 7,
    sigma: PositiveFloat = 21.0,
    max_blur: PositiveFloat = 20.0,
    jitter: Flag = True,
    return_masks: Flag = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Extremal perturbations ([fong2019]_; TorchRay's ``extremal_perturbation``): for each area ``a``,
    the smooth mask of area ``a`` that maximises the target when only it is kept.

    ``m_a = argmax_m reward(f(Φ(x; m))) - λ_t mean((sort(m) - r_a)²)`` (module docstring), all samples,
    targets and areas optimised together in one jitted scan.

    Args:
      areas: target areas, each in (0, 1) (fraction of the image kept).
      variant: ``"preserve"``, ``"delete"`` or ``"dual"``.
      perturbation: ``"blur"`` (Gaussian pyramid up to ``max_blur``) or ``"fade"`` (to black).
      reward: ``"simple"`` (the target score) or ``"contrastive"`` (minus the best other class).
      steps: optimisation steps (TorchRay's ``max_iter``).
      levels: pyramid levels (``num_levels``).
      step: the stride of the mask's parameter grid (pixels).
      sigma: the mask's smoothness (pixels).
      max_blur: σ of the most blurred pyramid level.
      jitter: flip the perturbed input horizontally on even steps.
      return_masks: also return the masks ``(B, A, H, W)``.

    Returns:
      ``x``-shaped map: the masks summed over areas (the same value in every channel), or
      ``(map, masks)``.

    Example:
      >>> sal = xj.extremal_perturbation(model, variables, x, areas=(0.1, 0.3), steps=5)
      >>> sal.shape == x.shape
      True
    """
    x = inputs.x
    batch, count = x.shape[0], len(areas)
    indices = problem.class_indices(inputs)
    generator = SmoothMasks((x.shape[1], x.shape[2]), step, sigma)
    levels_all = jnp.moveaxis(pyramid(x, levels, perturbation, max_blur), 0, 1)  # (B, L, H, W, C)
    outputs_of = loop_outputs(problem, inputs)
    max_area = int(np.prod(generator.shape_out))
    reference = np.ones((count, max_area), np.float32)
    for i, area in enumerate(areas):
        reference[i, : int(max_area * (1 - area))] = 0
    repeated = None if indices is None else jnp.repeat(indices, count)
    perturb = jax.vmap(jax.vmap(apply_pyramid, in_axes=(None, 0)), in_axes=(0, 0))  # (B, A, H, W, C)

    def energy(params: jax.Array, t: jax.Array) -> jax.Array:
        kept, full = generator.generate(params)  # (B, A, H, W), (B, A, out_h, out_w)
        shown = [kept] if variant == "preserve" else [1 - kept] if variant == "delete" else [kept, 1 - kept]
        rewards = []
        for masks in shown:
            images = perturb(levels_all, masks).reshape(batch * count, *x.shape[1:])
            images = jnp.where(jitter & (t % 2 == 0), jnp.flip(images, axis=2), images)
            rewards.append(_reward(outputs_of(images), problem, repeated, reward).reshape(batch, count))
        gain = rewards[0] if variant == "preserve" else -rewards[0] if variant == "delete" else rewards[0] - rewards[1]
        ordered = jnp.sort(full.reshape(batch, count, -1), axis=-1)
        weight = REGULARIZER_WEIGHT * REGULARIZER_GROWTH ** t.astype(jnp.float32)
        penalty = -jnp.mean((ordered - jnp.asarray(reference)) ** 2, axis=-1) * weight
        return -jnp.sum(gain + penalty)

    params = jnp.ones((batch, count, *generator.shape_in), x.dtype)
    # the result is the mask evaluated at the last step (TorchRay returns it, the last update is unused)
    params = optimize_masks(params, energy, torch_sgd(LEARNING_RATE, MOMENTUM, DAMPENING), steps - 1, _unit)
    masks, _ = generator.generate(params)
    summary = jnp.broadcast_to(masks.sum(axis=1)[..., None], x.shape)
    return (summary, masks) if return_masks else summary


# ---------------------------------------------------------------------------------------------------
# Meaningful perturbation
# ---------------------------------------------------------------------------------------------------


def total_variation(masks: jax.Array, beta: float) -> jax.Array:
    """``mean |∂_h m|^β + mean |∂_w m|^β`` per mask (``masks``: ``(..., h, w)``)."""
    rows = jnp.mean(jnp.abs(masks[..., 1:, :] - masks[..., :-1, :]) ** beta, axis=(-2, -1))
    cols = jnp.mean(jnp.abs(masks[..., :, 1:] - masks[..., :, :-1]) ** beta, axis=(-2, -1))
    return rows + cols


def _validate_meaningful(ctx: OptionContext) -> None:
    image_only(ctx, "meaningful perturbation")
    if ctx.options["score"] == "softmax" and ctx.problem.target.kind == "callable":
        raise InputError("score='softmax' needs class outputs; with a callable target pass score='output'.")


@method(
    "meaningful_perturbation",
    family="perturbation",
    signed=False,
    report_options={"steps": 300, "score": "output"},
    validate=_validate_meaningful,
)
def meaningful_perturbation(
    problem: Problem,
    inputs: Inputs,
    *,
    mask_size: PositiveInt = 28,
    perturbation: Choice("blur", "constant") = "blur",  # type: ignore[valid-type]
    blur_sigma: PositiveFloat = 10.0,
    constant: FiniteFloat = 0.0,
    l1: NonNegativeFloat = 0.01,
    tv: NonNegativeFloat = 0.2,
    tv_beta: PositiveFloat = 3.0,
    steps: PositiveInt = 300,
    learning_rate: PositiveFloat = 0.1,
    score: Choice("softmax", "output") = "softmax",  # type: ignore[valid-type]
    jitter: Flag = False,
    return_masks: Flag = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Meaningful perturbation ([fong2017]_): the smallest, smoothest deletion mask that destroys the target.

    ``m* = argmin λ₁ mean|1 - m| + λ₂ mean|∇m|^β + s_c(m ⊙ x + (1 - m) ⊙ x̃)`` over a ``mask_size²``
    mask upsampled bilinearly (``align_corners=True``), Adam, ``m ∈ [0, 1]``; all samples in one
    jitted scan.  ``x̃``: ``x`` blurred with ``blur_sigma`` (TorchRay's Gaussian) or a ``constant``.

    Args:
      mask_size: side of the low-resolution mask.
      perturbation: ``"blur"`` or ``"constant"``.
      blur_sigma: σ of the blur (pixels).
      constant: value of the ``"constant"`` perturbation.
      l1: ``λ₁``, the weight of the mask's area term.
      tv: ``λ₂``, the weight of its total variation.
      tv_beta: ``β``, the exponent of the total variation.
      steps: Adam iterations.
      learning_rate: Adam's step size.
      score: ``"softmax"`` (class probability, the paper) or ``"output"``.  A saturated probability
        (``p ≈ 1``) has no gradient and the mask does not move: score the logit then.
      jitter: flip the perturbed input horizontally on even steps.
      return_masks: also return the upsampled masks ``(B, H, W)``.

    Returns:
      ``x``-shaped map ``1 - m`` (what must be deleted), or ``(map, masks)``.

    Example:
      >>> sal = xj.meaningful_perturbation(model, variables, x, steps=5)
      >>> sal.shape == x.shape
      True
    """
    x = inputs.x
    indices = problem.class_indices(inputs)
    outputs_of = loop_outputs(problem, inputs)
    if perturbation == "blur":
        sigma = np.float32(blur_sigma)
        rows, cols = (jnp.asarray(torchray_blur_matrix(n, sigma)) for n in x.shape[1:3])
        reference = jnp.einsum("ih,bhwc,jw->bijc", rows, x, cols, precision=jax.lax.Precision.HIGHEST)
    else:
        reference = jnp.full_like(x, constant)

    def objective(params: jax.Array, t: jax.Array) -> jax.Array:
        mask = upsample(params, x.shape, mode="bilinear_aligned")[..., None]
        images = mask * x + (1 - mask) * reference
        images = jnp.where(jitter & (t % 2 == 0), jnp.flip(images, axis=2), images)
        outputs = outputs_of(images)
        if score == "softmax":
            outputs = jax.nn.softmax(outputs, axis=-1)
        target = problem.target.select(outputs, indices)
        return jnp.sum(l1 * jnp.mean(jnp.abs(1 - params), axis=(1, 2)) + tv * total_variation(params, tv_beta) + target)

    params = jnp.ones((x.shape[0], mask_size, mask_size), x.dtype)
    params = optimize_masks(params, objective, optax.adam(learning_rate), steps, _unit)
    masks = upsample(params, x.shape, mode="bilinear_aligned")
    summary = jnp.broadcast_to((1 - masks)[..., None], x.shape)
    return (summary, masks) if return_masks else summary


__all__ = [
    "PERTURBATIONS",
    "REWARDS",
    "VARIANTS",
    "SmoothMasks",
    "extremal_perturbation",
    "meaningful_perturbation",
    "optimize_masks",
    "pyramid",
    "torch_sgd",
    "total_variation",
]
