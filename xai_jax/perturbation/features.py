"""Interpretable features: which input elements are switched on and off together.

Perturbation and game-theoretic methods (LIME, KernelSHAP, Shapley values) explain a prediction in
terms of ``M`` *features*, each a group of input elements (a superpixel, a grid cell, one
element).  A feature mask assigns every element of a sample a label in ``0..M-1``; a *coalition*
``z ∈ {0, 1}^M`` keeps the features with ``z_j = 1`` and replaces the others by a baseline::

    x_z = b + z[labels] ⊙ (x - b)

A :class:`FeatureMask` holds the labels of every sample (``(B, *sample_shape)`` int32, traced) and
the number of features ``M`` (static: it fixes the shapes of the coalitions).  Samples may have
fewer features than ``M`` (superpixels of different images): sample ``b`` uses labels
``0..m_b-1`` and its other features are *empty* -- they never change the input, so every method
gives them zero attribution and leaves the others unchanged (a null player, [shapley1953]_).

Masks are built eagerly, where the input is concrete: a :class:`Grid`, :class:`Superpixels`
(scikit-image, the optional extra ``xai-jax[perturbation]``), or the user's integer labels, checked
for gaps and shape.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import InputError, Option, OptionContext, UnsupportedError
from ..core.checks import check_int_tuple, is_traced

#: Segmentation algorithms of scikit-image that :class:`Superpixels` runs.
ALGORITHMS = ("quickshift", "slic", "felzenszwalb")
#: Default grids: cells per side of an image ("auto" for sampling methods, "coarse" for exact enumeration).
AUTO_GRIDS = {"auto": 8, "coarse": 3}
#: ``lime_image``'s quickshift settings ([ribeiro2016]_; ``SegmentationAlgorithm('quickshift', ...)``).
LIME_QUICKSHIFT = {"kernel_size": 4, "max_dist": 200, "ratio": 0.2}


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class FeatureMask:
    """Feature labels of every sample and the number of features.

    Attributes:
      labels: int32 array ``(B, *sample_shape)``; sample ``b`` uses labels ``0..m_b-1``, each at least once.
      num_features: ``M = max_b m_b`` (static: part of the compilation key).
    """

    labels: jax.Array
    num_features: int

    def tree_flatten(self) -> tuple[tuple[jax.Array], int]:
        return (self.labels,), self.num_features

    @classmethod
    def tree_unflatten(cls, num_features: int, children: tuple[jax.Array]) -> FeatureMask:
        return cls(children[0], num_features)

    def counts(self) -> jax.Array:
        """``(B,)`` number of features ``m_b`` of each sample."""
        return self.labels.reshape(self.labels.shape[0], -1).max(axis=1) + 1

    def active(self) -> jax.Array:
        """``(B, M)`` bool: feature ``j`` exists in sample ``b`` (``j < m_b``)."""
        return jnp.arange(self.num_features)[None, :] < self.counts()[:, None]

    def expand(self, values: jax.Array) -> jax.Array:
        """Per-feature values ``(B, M)`` -> per-element values ``(B, *sample_shape)``."""
        flat = self.labels.reshape(self.labels.shape[0], -1)
        return jnp.take_along_axis(values, flat, axis=1).reshape(self.labels.shape)

    def feature_means(self, x: jax.Array) -> jax.Array:
        """``(B, M, C)``: the mean of each feature's elements, per channel (last axis) -- what
        ``lime_image`` fills a hidden superpixel with (``hide_color=None``)."""
        batch, channels = x.shape[0], x.shape[-1]
        labels = self.labels[..., 0] if self.labels.ndim == x.ndim else self.labels
        onehot = jax.nn.one_hot(labels.reshape(batch, -1), self.num_features, dtype=x.dtype)  # (B, P, M)
        sums = jnp.einsum("bpm,bpc->bmc", onehot, x.reshape(batch, -1, channels), precision=jax.lax.Precision.HIGHEST)
        return sums / jnp.maximum(onehot.sum(axis=1), 1.0)[..., None]


def compose(mask: FeatureMask, x: jax.Array, baseline: jax.Array, z: jax.Array) -> jax.Array:
    """``x ⊙ z[labels] + b ⊙ (1 - z[labels])``: keep the features with ``z = 1`` (``z``: ``(B, M)``),
    replace the others by the baseline.  Written so that a kept element is exactly ``x`` and a
    removed one exactly ``b`` (``b + z (x - b)`` would round)."""
    keep = mask.expand(z.astype(x.dtype))
    return x * keep + baseline * (1 - keep)


# ---------------------------------------------------------------------------------------------------
# Specifications, computed eagerly on a concrete batch
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Grid:
    """Rectangular cells of an NHWC image, all channels of a cell together: ``cell`` pixels per side
    (an int or ``(h, w)``), or ``cells`` cells per side (cell size ``ceil(H / cells)``); the last
    row and column of cells may be cut by the border."""

    cell: int | tuple[int, int] | None = None
    cells: int | None = None

    def labels(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 4:
            raise InputError(
                f"a grid of cells needs NHWC images; x has shape {tuple(x.shape)}. Pass a feature mask instead."
            )
        height, width = x.shape[1:3]
        if (self.cell is None) == (self.cells is None):
            raise InputError(f"Grid takes cell=<pixels per side> or cells=<cells per side>, one of them; got {self!r}.")
        if self.cells is not None:
            count = check_int_tuple("cells", self.cells)[0]
            ch, cw = math.ceil(height / count), math.ceil(width / count)
        else:
            cell = check_int_tuple("cell", self.cell)
            if len(cell) not in (1, 2):
                raise InputError(f"cell must be an int or an (h, w) pair; got {self.cell!r}.")
            ch, cw = cell if len(cell) == 2 else cell * 2
        columns = math.ceil(width / cw)
        grid = (np.arange(height)[:, None] // ch) * columns + np.arange(width)[None, :] // cw
        return np.broadcast_to(grid[None], x.shape[:3]).astype(np.int32)


class Superpixels:
    """Superpixels of each image from scikit-image (imported lazily: ``pip install 'xai-jax[perturbation]'``).

    ``Superpixels("quickshift")`` uses ``lime_image``'s settings (kernel_size=4, max_dist=200,
    ratio=0.2); other keyword options are passed to ``skimage.segmentation.<algorithm>``.  Grayscale
    images are repeated to RGB first (as ``lime_image`` does); values are used as given (scale them
    to [0, 1] for the colour-space algorithms).
    """

    def __init__(self, algorithm: str = "quickshift", **options: Any) -> None:
        if algorithm not in ALGORITHMS:
            raise InputError(f"unknown superpixel algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}.")
        if algorithm == "quickshift":
            options = {**LIME_QUICKSHIFT, **options}
        self.algorithm = algorithm
        self.options = tuple(sorted(options.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Superpixels) and (other.algorithm, other.options) == (self.algorithm, self.options)

    def __hash__(self) -> int:
        return hash((self.algorithm, self.options))

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options)
        return f"Superpixels({self.algorithm!r}{', ' if options else ''}{options})"

    def labels(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 4:
            raise InputError(f"superpixels need NHWC images; x has shape {tuple(x.shape)}.")
        segment = getattr(import_skimage_segmentation(), self.algorithm)
        rgb = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
        out = [
            np.unique(segment(np.asarray(image, np.float64), **dict(self.options)), return_inverse=True)[1]
            for image in rgb
        ]
        return np.stack([labels.reshape(x.shape[1:3]) for labels in out]).astype(np.int32)


def import_skimage_segmentation() -> Any:
    """``skimage.segmentation``, or an error naming the extra that installs it."""
    try:
        from skimage import segmentation
    except ImportError:
        raise UnsupportedError(
            "superpixels need scikit-image, which is not installed. Install the extra: "
            "pip install 'xai-jax[perturbation]' (or pip install scikit-image), or pass a grid "
            "(features=xj.perturbation.Grid(cell=4)) or your own integer feature mask."
        ) from None
    return segmentation


FeatureSpec = (
    Any  # "auto" | "grid" | "quickshift" | "slic" | "felzenszwalb" | Grid | Superpixels | FeatureMask | int array
)


def feature_mask(x: Any, features: FeatureSpec = "auto") -> FeatureMask:
    """The :class:`FeatureMask` of a concrete batch ``x`` for a feature specification.

    Args:
      x: the batch ``(B, ...)`` (NHWC for images).
      features: ``"auto"`` (images: 8 x 8 grid cells, all channels together; other inputs: every
        element its own feature), ``"coarse"`` (3 x 3 cells; other inputs: every element), ``"grid"``
        (8 x 8 cells), a :class:`Grid`, ``"quickshift"`` /
        ``"slic"`` / ``"felzenszwalb"`` or a :class:`Superpixels` (scikit-image), an existing
        :class:`FeatureMask`, or integer labels: one sample's shape, ``(H, W)`` for NHWC images (all
        channels of a pixel together), or one mask per sample (``(B, ...)`` / ``(B, H, W)``).  Labels
        must be ``0..M-1`` with every label used (no gaps).

    Example:
      >>> fm = xj.perturbation.feature_mask(x, xj.perturbation.Grid(cell=7))
      >>> fm.num_features, fm.labels.shape == x.shape
      (16, True)
    """
    if isinstance(features, FeatureMask):
        return _checked(features, tuple(x.shape))
    if is_traced(x):
        raise InputError(
            "feature masks are built from a concrete batch; x is traced here (inside jax.jit). Build the mask "
            "outside: fm = xj.perturbation.feature_mask(x, features), and pass features=fm."
        )
    x = np.asarray(x)
    shape = tuple(x.shape)
    if isinstance(features, str):
        if features in AUTO_GRIDS or features == "grid":
            if x.ndim != 4:
                if features == "grid":
                    raise InputError(f"a grid of cells needs NHWC images; x has shape {shape}.")
                labels = np.broadcast_to(np.arange(int(np.prod(shape[1:])), dtype=np.int32).reshape(shape[1:]), shape)
                return FeatureMask(jnp.asarray(labels), int(np.prod(shape[1:])))
            features = Grid(cells=AUTO_GRIDS.get(features, AUTO_GRIDS["auto"]))
        elif features in ALGORITHMS:
            features = Superpixels(features)
        else:
            raise InputError(
                f"unknown features {features!r}: pass 'auto', 'coarse', 'grid', one of {', '.join(ALGORITHMS)}, "
                "a Grid, Superpixels or integer labels."
            )
    if isinstance(features, (Grid, Superpixels)):
        return from_labels(features.labels(x), shape)
    return from_labels(features, shape)


def from_labels(labels: Any, x_shape: tuple[int, ...]) -> FeatureMask:
    """Check integer labels against ``x``'s shape (see :func:`feature_mask`) and count features."""
    if is_traced(labels):
        raise InputError(
            "a traced feature mask cannot be checked or counted; pass a FeatureMask(labels, num_features)."
        )
    array = np.asarray(labels)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"a feature mask holds integer labels 0..M-1; got dtype {array.dtype}.")
    full, shared = _broadcast_labels(array, x_shape)
    if full.size and full.min() < 0:
        raise InputError(f"feature mask labels must be >= 0; got {int(full.min())}.")
    per_sample = full.reshape(full.shape[0], -1)
    for b, row in enumerate(per_sample[:1] if shared else per_sample):
        present = np.unique(row)
        if present.size != int(present[-1]) + 1:
            missing = sorted(set(range(int(present[-1]) + 1)) - set(present.tolist()))
            raise InputError(
                f"the feature mask has gaps{'' if shared else f' (sample {b})'}: labels {missing[:10]}"
                f"{' ...' if len(missing) > 10 else ''} are never used, so their features would get an attribution for "
                "nothing. Use labels 0..M-1, each at least once: np.unique(mask, "
                "return_inverse=True)[1].reshape(mask.shape)."
            )
    return FeatureMask(jnp.asarray(full, jnp.int32), int(per_sample.max()) + 1)


def _broadcast_labels(array: np.ndarray, x_shape: tuple[int, ...]) -> tuple[np.ndarray, bool]:
    """Labels at ``x``'s full shape, and whether one mask is shared by every sample."""
    batch, sample = x_shape[0], tuple(x_shape[1:])
    image = len(x_shape) == 4
    pixels = sample[:2]
    if array.shape == sample:
        shared = array[None]
    elif image and array.shape in (pixels, (*pixels, 1)):
        shared = array.reshape(1, *pixels, 1)
    elif array.shape == (batch, *sample):
        return np.asarray(array, np.int32), batch == 1
    elif image and array.shape in ((batch, *pixels), (batch, *pixels, 1)):
        return np.broadcast_to(array.reshape(batch, *pixels, 1), x_shape).astype(np.int32), batch == 1
    else:
        hint = f", {pixels} for NHWC images (all channels of a pixel together)" if image else ""
        raise InputError(
            f"feature mask of shape {tuple(array.shape)} does not fit x of shape {tuple(x_shape)}: pass one sample's "
            f"shape {sample}{hint}, or one mask per sample ({batch}, ...)."
        )
    return np.broadcast_to(shared, x_shape).astype(np.int32), True


def _checked(mask: FeatureMask, x_shape: tuple[int, ...]) -> FeatureMask:
    if tuple(mask.labels.shape) != tuple(x_shape):
        raise InputError(f"FeatureMask labels have shape {tuple(mask.labels.shape)}; x has shape {tuple(x_shape)}.")
    if (
        isinstance(mask.num_features, bool)
        or not isinstance(mask.num_features, (int, np.integer))
        or mask.num_features < 1
    ):
        raise InputError(f"FeatureMask.num_features must be a positive int; got {mask.num_features!r}.")
    if not is_traced(mask.labels):
        checked = from_labels(np.asarray(mask.labels), x_shape)
        if checked.num_features > mask.num_features:
            raise InputError(
                f"FeatureMask has labels up to {checked.num_features - 1} but num_features={mask.num_features}."
            )
    return FeatureMask(jnp.asarray(mask.labels, jnp.int32), int(mask.num_features))


def _check_features(ctx: OptionContext, name: str, value: Any) -> FeatureMask:
    return feature_mask(ctx.inputs.x, "auto" if value is None else value)


#: Annotation of a feature-mask option (see :func:`feature_mask`); the method receives a :class:`FeatureMask`.
Features = Annotated[Any, Option(_check_features)]


def image_only(ctx: OptionContext, what: str) -> None:
    """Refuse inputs that are not NHWC images (for methods defined on images)."""
    if ctx.inputs.x.ndim != 4:
        raise InputError(f"{what} is defined on NHWC images (B, H, W, C); x has shape {tuple(ctx.inputs.x.shape)}.")


__all__ = [
    "ALGORITHMS",
    "FeatureMask",
    "FeatureSpec",
    "Features",
    "Grid",
    "Superpixels",
    "compose",
    "feature_mask",
    "from_labels",
    "image_only",
    "import_skimage_segmentation",
]
