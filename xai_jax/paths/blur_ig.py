"""Blur integrated gradients: integrate along a path of increasingly blurred images.

Xu et al. (2020) ([xu2020]_).  The path ``z(σ) = g_σ * x`` (a Gaussian blur of scale ``σ`` over the
spatial axes) runs from the input (``σ = 0``) to a fully blurred image (``σ = σ_max``); integrated
gradients along it, read backwards from the blurred end to ``x``:

    φ = -∫_0^{σ_max} ∂z(σ)/∂σ ⊙ ∇f_c(z(σ)) dσ
      ≈ -Σ_{k=0}^{K-1} (σ_{k+1} - σ_k) · [(z(σ_k + δ) - z(σ_k)) / δ] ⊙ ∇f_c(z(σ_k))

with ``σ_k = k σ_max / K`` (or ``sqrt(k σ_max / K)``, ``sqrt=True``) and the blur's σ-derivative
taken by a forward difference of step ``δ = grad_step``: PAIR ``saliency``'s ``BlurIG`` exactly.
The blur is ``scipy.ndimage.gaussian_filter(x, [σ, σ, 0], mode="constant")``: a normalised kernel
of radius ``int(4σ + 0.5)``, zeros outside the image, here as separable ``(H, H)`` and ``(W, W)``
matrices.  Path points are vmapped in chunks of ``batch_size``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import (
    ChunkSize,
    Flag,
    InputError,
    Inputs,
    OptionContext,
    PositiveFloat,
    PositiveInt,
    Problem,
    fix_target,
    method,
)
from ..trace.gradients import target_gradient
from .gradients import summed_gradients

#: ``scipy.ndimage.gaussian_filter``'s default truncation: the kernel reaches ``truncate · σ``.
TRUNCATE = 4.0


def kernel_radius(sigma: np.ndarray) -> np.ndarray:
    """scipy's kernel radius ``int(truncate · σ + 0.5)``, computed on the host in float64 (a float32
    product could round across an integer)."""
    return np.floor(TRUNCATE * np.asarray(sigma, np.float64) + 0.5).astype(np.int32)


def blur_matrix(size: int, sigma: jax.Array, radius: jax.Array, max_radius: int) -> jax.Array:
    """``(size, size)`` matrix of a 1-D Gaussian blur with zero padding (scipy's ``gaussian_filter1d``,
    ``mode="constant"``) of scale ``σ`` and kernel ``radius``; ``σ = 0`` is the identity.  ``max_radius``
    bounds every radius (static)."""
    safe = jnp.where(sigma > 0, sigma, 1.0)
    taps = jnp.arange(-max_radius, max_radius + 1, dtype=jnp.float32)
    weights = jnp.where(jnp.abs(taps) <= radius, jnp.exp(-0.5 * taps**2 / safe**2), 0.0)
    offsets = jnp.arange(size)[None, :] - jnp.arange(size)[:, None]
    inside = jnp.abs(offsets) <= radius
    kernel = jnp.where(inside, jnp.exp(-0.5 * offsets.astype(jnp.float32) ** 2 / safe**2), 0.0) / weights.sum()
    return jnp.where(sigma > 0, kernel, jnp.eye(size, dtype=jnp.float32))


def gaussian_blur(x: jax.Array, sigma: jax.Array, radius: jax.Array, max_radius: int) -> jax.Array:
    """Blur the spatial axes of an NHWC batch with scale ``σ`` (channels independent)."""
    rows = blur_matrix(x.shape[1], sigma, radius, max_radius).astype(x.dtype)
    cols = blur_matrix(x.shape[2], sigma, radius, max_radius).astype(x.dtype)
    return jnp.einsum("ih,bhwc,jw->bijc", rows, x, cols, precision=jax.lax.Precision.HIGHEST)


def blur_sigmas(max_sigma: float, steps: int, sqrt: bool) -> np.ndarray:
    """``σ_0..σ_K``: linear in ``k`` or, with ``sqrt``, ``sqrt(k σ_max / K)`` (PAIR's spacings)."""
    linear = np.arange(steps + 1, dtype=np.float64) * max_sigma / steps
    return np.sqrt(linear) if sqrt else linear


def _images_only(ctx: OptionContext) -> None:
    if ctx.inputs.x.ndim != 4:
        raise InputError(f"Blur IG blurs NHWC images (B, H, W, C); x has shape {tuple(ctx.inputs.x.shape)}.")


@method("blur_ig", family="path", signed=True, report_options={"steps": 32}, validate=_images_only)
def blur_ig(
    problem: Problem,
    inputs: Inputs,
    *,
    max_sigma: PositiveFloat = 50.0,
    steps: PositiveInt = 100,
    grad_step: PositiveFloat = 0.01,
    sqrt: Flag = False,
    batch_size: ChunkSize = "auto",
) -> jax.Array:
    """Blur IG ([xu2020]_; PAIR ``saliency`` ``BlurIG``): integrated gradients along a Gaussian-blur path.

    ``φ = -Σ_k (σ_{k+1} - σ_k) [(z(σ_k + δ) - z(σ_k)) / δ] ⊙ ∇f_c(z(σ_k))``, ``z(σ) = g_σ * x``; the
    classes are fixed at ``x``.

    Args:
      max_sigma: blur scale ``σ_max`` at the path's far end (pixels).
      steps: number of path points ``K``.
      grad_step: ``δ`` of the finite difference along ``σ``.
      sqrt: space the scales as ``sqrt(k σ_max / K)`` instead of linearly.
      batch_size: path points evaluated at once (each a gradient of the batch).

    Example:
      >>> attr = xj.blur_ig(model, variables, x, steps=8, max_sigma=10.0)
      >>> attr.shape == x.shape
      True
    """
    problem, inputs = fix_target(problem, inputs)
    x = inputs.x
    sigmas = blur_sigmas(max_sigma, steps, sqrt)
    points, shifted = sigmas[:-1], sigmas[:-1] + grad_step
    max_radius = int(kernel_radius(shifted).max())

    def term(
        sigma: jax.Array,
        radius: jax.Array,
        sigma_up: jax.Array,
        radius_up: jax.Array,
        width: jax.Array,
        rules: Any = None,
    ) -> jax.Array:
        point = gaussian_blur(x, sigma, radius, max_radius)
        direction = (gaussian_blur(x, sigma_up, radius_up, max_radius) - point) / grad_step
        return width * direction * target_gradient(problem, inputs, point, inputs.indices, rules)

    per_step = (
        jnp.asarray(points, jnp.float32),
        jnp.asarray(kernel_radius(points)),
        jnp.asarray(shifted, jnp.float32),
        jnp.asarray(kernel_radius(shifted)),
        jnp.asarray(np.diff(sigmas), x.dtype),
    )
    return -summed_gradients(term, per_step, batch_size)


__all__ = ["blur_ig", "blur_sigmas", "gaussian_blur", "kernel_radius"]
