"""Composable regularizers for feature visualization.

A regularizer is a small pytree (``flax.struct.dataclass``) with up to three roles, each optional:

* ``penalty(x, index) -> scalar``: added to the loss that is *minimised* (the objective is
  maximised), ``x`` is one image ``(H, W, C)`` (or one latent code ``(d,)`` in
  ``code_regularizers``) and ``index`` the target's class/channel index;
* ``transform(x, key) -> x``: a random transformation applied to the image before the model sees
  it (transformation robustness; gradients flow back through it);
* ``project(x, step) -> x``: applied to the optimised variable after every update (projected
  gradient ascent: clipping to the data range, periodic blurring).

Pass any sequence of them (``regularizers=[TotalVariation(0.1), Jitter(2), Clip(0, 1)]``); they are
applied in the order given.  Numeric fields (weights, bounds, class means) are pytree leaves, so
changing a weight does not recompile; structural fields (``beta``, ``pixels``, ``sigma``) are static.

Penalties are *sums* over the image's elements (so a weight's effect scales with the image size, as
in Mahendran & Vedaldi 2015 before their normalisation).  All work on a single image; the
optimisation loop vmaps them over the targets.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = [
    "L2",
    "AlphaNorm",
    "Blur",
    "ClassMeanDistance",
    "Clip",
    "HighFrequencyPenalty",
    "Jitter",
    "Regularizer",
    "TotalVariation",
    "class_means",
    "gaussian_blur",
    "total_variation",
]


class Regularizer:
    """Base class: override any of :meth:`penalty`, :meth:`transform`, :meth:`project` and set the
    matching ``has_*`` class flag, so the loop only calls what a regularizer provides."""

    has_penalty: ClassVar[bool] = False
    has_transform: ClassVar[bool] = False
    has_projection: ClassVar[bool] = False
    needs_index: ClassVar[bool] = False

    def penalty(self, x: jax.Array, index: jax.Array | None) -> jax.Array:  # pragma: no cover - interface
        return jnp.zeros((), x.dtype)

    def transform(self, x: jax.Array, key: jax.Array) -> jax.Array:  # pragma: no cover - interface
        return x

    def project(self, x: jax.Array, step: jax.Array) -> jax.Array:  # pragma: no cover - interface
        return x


# ----------------------------------------------------------------------------------------------------
# Functions shared by the regularizers (and useful on their own: tests, notebooks)
# ----------------------------------------------------------------------------------------------------


def total_variation(x: jax.Array, beta: float = 1.0, eps: float = 1e-8) -> jax.Array:
    """``TV^β(x) = Σ_{i,j,c} ((x_{i+1,j} − x_{i,j})² + (x_{i,j+1} − x_{i,j})²)^{β/2}``.

    Mahendran & Vedaldi (2015), Eq. 5 (β = 1 is the isotropic total variation of Rudin, Osher &
    Fatemi 1992; β = 2 the squared-gradient energy).  ``x``: one image ``(H, W, C)`` or a batch
    ``(..., H, W, C)`` (then one value per image).  ``eps`` keeps the gradient finite at flat
    regions for β < 2.
    """
    dy = x[..., 1:, :-1, :] - x[..., :-1, :-1, :]
    dx = x[..., :-1, 1:, :] - x[..., :-1, :-1, :]
    squared = dy * dy + dx * dx
    if beta == 2.0:
        return jnp.sum(squared, axis=(-3, -2, -1))
    return jnp.sum((squared + eps) ** (beta / 2.0), axis=(-3, -2, -1))


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3.0 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur of one image ``(H, W, C)`` (each channel on its own, edges
    reflected), kernel radius ``ceil(3σ)``."""
    kernel = jnp.asarray(_gaussian_kernel(float(sigma)), x.dtype)
    radius = (kernel.shape[0] - 1) // 2
    pad_h, pad_w = min(radius, x.shape[0] - 1), min(radius, x.shape[1] - 1)
    padded = jnp.pad(x, ((pad_h, pad_h), (pad_w, pad_w), (0, 0)), mode="reflect")
    if pad_h < radius or pad_w < radius:  # tiny images: pad the rest with edge values
        extra_h, extra_w = radius - pad_h, radius - pad_w
        padded = jnp.pad(padded, ((extra_h, extra_h), (extra_w, extra_w), (0, 0)), mode="edge")

    def conv1d(img: jax.Array, axis: int) -> jax.Array:
        n = img.shape[axis] - 2 * radius
        taps = [jax.lax.slice_in_dim(img, i, i + n, axis=axis) * kernel[i] for i in range(kernel.shape[0])]
        return sum(taps[1:], taps[0])

    return conv1d(conv1d(padded, 0), 1)


def class_means(images: Any, labels: Any, num_classes: int | None = None) -> jax.Array:
    """Mean image of each class, ``(K, H, W, C)``: the ``m_c`` of :class:`ClassMeanDistance`."""
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels).astype(int)
    k = int(num_classes if num_classes is not None else labels.max() + 1)
    means = np.zeros((k, *images.shape[1:]), np.float32)
    for c in range(k):
        chosen = images[labels == c]
        if len(chosen):
            means[c] = chosen.mean(axis=0)
    return jnp.asarray(means)


# ----------------------------------------------------------------------------------------------------
# Penalties
# ----------------------------------------------------------------------------------------------------


@struct.dataclass
class L2(Regularizer):
    """L2 decay: penalty ``½ · weight · ‖x − center‖²``.

    With Adam this is exactly PyTorch's ``Adam(weight_decay=weight)`` (gradient ``weight · x``), the
    seed's setting (``weight = 5e-3``).  Simonyan et al. (2014) regularise class models this way.
    In code space (``code_regularizers``) it is the Gaussian prior on the latent code.
    """

    weight: float = 5e-3
    center: Any = 0.0
    has_penalty: ClassVar[bool] = True

    def penalty(self, x: jax.Array, index: jax.Array | None) -> jax.Array:
        d = x - self.center
        return 0.5 * self.weight * jnp.sum(d * d)


@struct.dataclass
class TotalVariation(Regularizer):
    """Total-variation prior ``weight · TV^β(x)`` (Mahendran & Vedaldi 2015, Eq. 5): favours
    piecewise-smooth images.  β = 1 (default) is the classic isotropic TV; β = 2 the energy of the
    image gradient (M&V's choice for inversion, since β > 1 discourages spikes)."""

    weight: float = 0.1
    beta: float = struct.field(pytree_node=False, default=1.0)
    has_penalty: ClassVar[bool] = True

    def penalty(self, x: jax.Array, index: jax.Array | None) -> jax.Array:
        return self.weight * total_variation(x, self.beta)


@struct.dataclass
class AlphaNorm(Regularizer):
    """α-norm prior ``weight · Σ |x − center|^α`` (Mahendran & Vedaldi 2015, Eq. 4; α = 6 keeps the
    image within a bounded range without a hard clip)."""

    weight: float = 1e-3
    alpha: float = struct.field(pytree_node=False, default=6.0)
    center: Any = 0.0
    has_penalty: ClassVar[bool] = True

    def penalty(self, x: jax.Array, index: jax.Array | None) -> jax.Array:
        return self.weight * jnp.sum(jnp.abs(x - self.center) ** self.alpha)


@struct.dataclass
class HighFrequencyPenalty(Regularizer):
    """Frequency penalty ``weight · ‖x − G_σ * x‖²``: the energy of what a Gaussian blur of width
    ``sigma`` removes, i.e. of the high spatial frequencies (the soft form of Yosinski et al.'s
    2015 blurring)."""

    weight: float = 1.0
    sigma: float = struct.field(pytree_node=False, default=1.0)
    has_penalty: ClassVar[bool] = True

    def penalty(self, x: jax.Array, index: jax.Array | None) -> jax.Array:
        d = x - gaussian_blur(x, self.sigma)
        return self.weight * jnp.sum(d * d)


@struct.dataclass
class ClassMeanDistance(Regularizer):
    """The seed's term ``weight · ‖x − m_c‖₂`` (a norm, not squared), ``m_c`` the mean image of the
    target class ``c`` (``means[c]``; see :func:`class_means`).  Pulls the visualization towards
    the data (Montavon, Samek & Müller 2018, "Methods for interpreting and understanding deep
    neural networks", §3: AM with an ℓ2 data prior)."""

    means: Any = None
    weight: float = 0.1
    has_penalty: ClassVar[bool] = True
    needs_index: ClassVar[bool] = True

    def penalty(self, x: jax.Array, index: jax.Array | None) -> jax.Array:
        d = x - jnp.asarray(self.means)[index]
        return self.weight * jnp.sqrt(jnp.sum(d * d) + 1e-12)


# ----------------------------------------------------------------------------------------------------
# Transforms
# ----------------------------------------------------------------------------------------------------


@struct.dataclass
class Jitter(Regularizer):
    """Random translation by up to ``pixels`` in each spatial direction (a circular roll) before
    every model evaluation: transformation robustness (Mordvintsev, Olah & Tyka 2015; Olah et al.
    2017).  The gradient is rolled back by autodiff, so the stored image never moves."""

    pixels: int = struct.field(pytree_node=False, default=2)
    has_transform: ClassVar[bool] = True

    def transform(self, x: jax.Array, key: jax.Array) -> jax.Array:
        shift = jax.random.randint(key, (2,), -self.pixels, self.pixels + 1)
        return jnp.roll(x, shift, axis=(0, 1))


# ----------------------------------------------------------------------------------------------------
# Projections
# ----------------------------------------------------------------------------------------------------


@struct.dataclass
class Clip(Regularizer):
    """Clip to the data range ``[low, high]`` after every update (projected gradient ascent), so
    the visualization is an image the model could have been given."""

    low: float = 0.0
    high: float = 1.0
    has_projection: ClassVar[bool] = True

    def project(self, x: jax.Array, step: jax.Array) -> jax.Array:
        return jnp.clip(x, self.low, self.high)


@struct.dataclass
class Blur(Regularizer):
    """Gaussian blur of width ``sigma`` every ``every`` steps (Yosinski et al. 2015, "Understanding
    neural networks through deep visualization": suppresses high-frequency patterns)."""

    sigma: float = struct.field(pytree_node=False, default=0.5)
    every: int = struct.field(pytree_node=False, default=4)
    has_projection: ClassVar[bool] = True

    def project(self, x: jax.Array, step: jax.Array) -> jax.Array:
        return jnp.where(step % self.every == 0, gaussian_blur(x, self.sigma), x)
