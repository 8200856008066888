"""Distribution shift for uncertainty experiments: rotated digits and noise images.

The seed rotated a digit "1" from 0° to 180° and watched the evidential uncertainty ``u`` rise;
MC-dropout mutual information should rise the same way.  These helpers make such inputs as batches.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..core import InputError, check_input
from ..core.numerics import guarded_jit

__all__ = ["noise_images", "rotate"]


@guarded_jit
def _rotate(images: jax.Array, radians: jax.Array) -> jax.Array:
    h, w = images.shape[1], images.shape[2]
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")

    def one(image: jax.Array, angle: jax.Array) -> jax.Array:
        c, s = jnp.cos(angle), jnp.sin(angle)
        # output pixel (y, x) samples the input at the inverse rotation (counter-clockwise on screen,
        # rows pointing down: 90° equals np.rot90(images, 1, axes=(1, 2)))
        src_y = cy + c * (yy - cy) + s * (xx - cx)
        src_x = cx - s * (yy - cy) + c * (xx - cx)
        channels = [
            jax.scipy.ndimage.map_coordinates(image[..., k], [src_y, src_x], order=1, mode="constant", cval=0.0)
            for k in range(image.shape[-1])
        ]
        return jnp.stack(channels, axis=-1)

    return jax.vmap(one)(images, radians)


def rotate(images: Any, degrees: float | Any) -> jax.Array:
    """Rotate NHWC images counter-clockwise about their centre by ``degrees`` (a scalar or one angle
    per image); ``rotate(x, 90)`` equals ``np.rot90(x, 1, axes=(1, 2))``.

    Bilinear interpolation; pixels rotated in from outside the frame are 0 (MNIST's background).
    """
    x = check_input(images, "images")
    if x.ndim != 4:
        raise InputError(f"images must be NHWC (B, H, W, C); got shape {tuple(x.shape)}.")
    angles = jnp.broadcast_to(jnp.asarray(degrees, jnp.float32), (x.shape[0],))
    return _rotate(x.astype(jnp.float32), jnp.deg2rad(angles))


def noise_images(key: jax.Array, shape: tuple[int, ...], kind: str = "uniform") -> jax.Array:
    """Out-of-distribution images of ``shape`` in ``[0, 1]``: ``"uniform"`` noise, or ``"gaussian"``
    ``clip(0.5 + 0.25 N(0, 1), 0, 1)``."""
    if kind == "uniform":
        return jax.random.uniform(key, shape, jnp.float32)
    if kind == "gaussian":
        return jnp.clip(0.5 + 0.25 * jax.random.normal(key, shape, jnp.float32), 0.0, 1.0)
    raise InputError(f"kind must be 'uniform' or 'gaussian'; got {kind!r}.")
