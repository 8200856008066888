"""Image operations the metrics perturb with: noisy linear imputation (ROAD), Gaussian blur, horizontal
translation, and superpixels.  Images are NHWC."""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import InputError

Array = jax.Array

#: Neighbour weights of the noisy linear imputation (Rong et al. 2022, Eq. 5): direct neighbours 1/6,
#: diagonal neighbours 1/12 (offset (row, column) -> weight).
NEIGHBOUR_WEIGHTS: tuple[tuple[tuple[int, int], float], ...] = (
    ((-1, -1), 1 / 12),
    ((-1, 0), 1 / 6),
    ((-1, 1), 1 / 12),
    ((0, -1), 1 / 6),
    ((0, 1), 1 / 6),
    ((1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((1, 1), 1 / 12),
)


def _shift(v: Array, dr: int, dc: int) -> Array:
    """``out[r, c] = v[r + dr, c + dc]`` on the (H, W) axes 0, 1, zero outside the image."""
    h, w = v.shape[:2]
    padded = jnp.pad(v, ((1, 1), (1, 1)) + ((0, 0),) * (v.ndim - 2))
    return padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]


def neighbour_sum(v: Array) -> Array:
    """Weighted sum of every pixel's in-image 8-neighbours, ``Σ_j w_ij v_j`` (``v``: (H, W, ...))."""
    terms = [weight * _shift(v, dr, dc) for (dr, dc), weight in NEIGHBOUR_WEIGHTS]
    return functools.reduce(operator.add, terms)


def linear_imputation(image: Array, removed: Array, *, tol: float = 1e-6, max_iter: int | None = None) -> Array:
    """Fill the ``removed`` pixels of one ``(H, W, C)`` image by the noise-free linear imputation of
    Rong et al. (2022), "A Consistent and Efficient Evaluation Strategy for Attribution Methods" (ROAD):
    every removed value is the weighted mean of its in-image 8-neighbours,

        s_i v_i − Σ_{j removed} w_ij v_j = Σ_{j kept} w_ij x_j,   s_i = Σ_{j in image} w_ij,

    one sparse symmetric positive definite system per channel.  Solved here matrix-free by conjugate
    gradients with a Jacobi preconditioner (jittable, vmappable) instead of a sparse direct solver;
    it agrees with SciPy's ``spsolve`` (Quantus' solver) to float32 precision.  A removed region that
    touches no kept pixel has no information to interpolate from: its system is singular and it is
    filled with 0 (the solver starts there and nothing moves it).
    """
    h, w = image.shape[:2]
    m = removed.astype(image.dtype)[..., None]  # (H, W, 1)
    s = neighbour_sum(jnp.ones((h, w, 1), image.dtype))
    rhs = m * neighbour_sum((1 - m) * image)
    inv_diag = m / s

    def apply(v: Array) -> Array:
        return m * (s * v - neighbour_sum(m * v))

    def dot(a: Array, b: Array) -> Array:  # one dot product per channel
        return jnp.sum(a * b, axis=(0, 1), keepdims=True)

    limit = max_iter if max_iter is not None else 20 * (h + w) + 100
    threshold = (tol**2) * dot(rhs, rhs)
    v0 = jnp.zeros_like(image)
    r0 = rhs
    z0 = inv_diag * r0
    state = (0, v0, r0, z0, z0, dot(r0, z0))

    def unfinished(state: tuple) -> Array:
        i, _, r, *_ = state
        return (i < limit) & jnp.any(dot(r, r) > threshold)

    def step(state: tuple) -> tuple:
        i, v, r, z, p, rz = state
        ap = apply(p)
        pap = dot(p, ap)
        alpha = jnp.where(pap > 0, rz / jnp.where(pap > 0, pap, 1.0), 0.0)
        v = v + alpha * p
        r = r - alpha * ap
        z = inv_diag * r
        rz_new = dot(r, z)
        beta = jnp.where(rz > 0, rz_new / jnp.where(rz > 0, rz, 1.0), 0.0)
        return i + 1, v, r, z, z + beta * p, rz_new

    _, v, *_ = jax.lax.while_loop(unfinished, step, state)
    return jnp.where(m > 0, v, image)


def noisy_linear_imputation(image: Array, removed: Array, standard_normal: Array, noise: float = 0.01) -> Array:
    """ROAD's imputation: :func:`linear_imputation` plus ``noise · ε`` on the removed pixels only
    (ε: standard normal draws with the image's shape; Quantus' default ``noise = 0.01``)."""
    filled = linear_imputation(image, removed)
    return jnp.where(removed[..., None], filled + noise * standard_normal, image)


def _reflect_blur_matrix(n: int, sigma: float, truncate: float) -> np.ndarray:
    """``(n, n)`` matrix of a 1-D Gaussian blur with SciPy's 'reflect' boundary (d c b a | a b c d |
    d c b a), so that blurring an axis is one matrix product."""
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    matrix = np.zeros((n, n))
    for i in range(n):
        for offset, weight in zip(offsets, kernel):
            j = (i + offset) % (2 * n)  # the reflected signal has period 2n
            matrix[i, j if j < n else 2 * n - 1 - j] += weight
    return matrix


def gaussian_blur(x: Array, sigma: float, truncate: float = 4.0) -> Array:
    """Gaussian blur of an NHWC batch over H and W (SciPy's ``gaussian_filter`` with mode 'reflect',
    radius ``round(truncate·σ)``), the blurred canvas of Petsiuk et al.'s (2018) insertion metric.
    Each axis is blurred by one matrix product (exact, and quick to compile for any σ)."""
    if sigma <= 0:
        return x
    rows = jnp.asarray(_reflect_blur_matrix(x.shape[1], sigma, truncate), x.dtype)
    cols = jnp.asarray(_reflect_blur_matrix(x.shape[2], sigma, truncate), x.dtype)
    return jnp.einsum("ij,bjkc,lk->bilc", rows, x, cols, precision=jax.lax.Precision.HIGHEST)


def translate_horizontally(x: Array, shift: Array | int, fill: Array) -> Array:
    """Shift NHWC images ``shift`` pixels to the right (left when negative); uncovered columns take
    ``fill`` (broadcast to ``x``).  ``shift`` may be traced."""
    w = x.shape[2]
    columns = jnp.arange(w)
    source = columns - shift
    inside = (source >= 0) & (source < w)
    moved = jnp.take(x, jnp.clip(source, 0, w - 1), axis=2)
    return jnp.where(inside[None, None, :, None], moved, jnp.broadcast_to(fill, x.shape))


def superpixels(x: np.ndarray, method: str = "slic", **kwargs: object) -> np.ndarray:
    """``(B, H, W)`` int32 superpixel labels ``0..n-1`` per NHWC image, computed on the host with
    scikit-image (``slic(image, start_label=0)`` or ``felzenszwalb(image)``, the segmentations Quantus'
    IROF uses).  Segmentation is data preparation, not part of the jitted metric."""
    try:
        from skimage.segmentation import felzenszwalb, slic
    except ImportError as err:  # pragma: no cover - scikit-image is a test dependency
        raise InputError(
            "superpixels need scikit-image (pip install scikit-image), or pass segments= yourself."
        ) from err
    if isinstance(x, jax.core.Tracer):
        raise InputError(
            "superpixels are computed on the host: under jit pass segments= (e.g. from xj.evaluation.superpixels)."
        )
    images = np.asarray(x, np.float64)
    if images.ndim != 4:
        raise InputError(f"superpixels need an NHWC image batch; got shape {images.shape}.")
    if method == "slic":
        labels = [slic(img, start_label=0, **kwargs) for img in images]
    elif method == "felzenszwalb":
        labels = [felzenszwalb(img, **kwargs) for img in images]
    else:
        raise InputError(f"method must be 'slic' or 'felzenszwalb'; got {method!r}.")
    return np.stack(labels).astype(np.int32)
