"""What every metric shares: input checks, per-sample preprocessing, orderings with a documented tie
rule, NaN-free correlations, baselines, model scores, and running a method value inside a metric.

Conventions (documented once here, relied on by every metric):

* **Features.** Attributions have ``x``'s shape (one score per input element) or, for images, ``x``'s
  shape without the channel axis (one score per pixel; a perturbation of a pixel then changes all its
  channels together).
* **Ties.** Orderings are stable sorts: among equal scores the feature with the lower row-major flat
  index comes first, in most-relevant-first and least-relevant-first order alike.  A constant map
  therefore flips pixels in raster order.  Rank statistics (Spearman) use average ranks; localisation
  metrics count tied features fractionally (the expectation over a uniformly random tie break).
* **Degenerate values.** A correlation with a constant vector is 0; normalising an all-zero map leaves
  it unchanged; no metric returns NaN on a constant or all-zero map (each metric's docstring says what
  it returns then).
* **Per-sample preprocessing.** ``normalise="max"`` divides each sample's map by its own largest
  absolute value.  Quantus 0.6 divides by the largest value of the whole *batch* (its
  ``normalise_by_max`` reduces over every axis), so there a sample's score depends on its batch-mates;
  here it never does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, overload

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import InputError, TargetError
from ..core.problem import Inputs, Problem
from .similarity import average_ranks, pearson, spearman  # noqa: F401  (shared with the metrics)

Array = jax.Array

SCORES = ("probability", "logit", "accuracy")
NORMALISATIONS = (None, "max", "second_moment")
NAMED_BASELINES = ("black", "white", "mean", "zero", "uniform", "blur")
#: Default size of one forward pass over perturbed copies (copies × batch).  Measured on this 2-core
#: CPU with the TinyCNN twin: pixel flipping at ~200 images per pass took 4.7 s, at ~1000 5.8 s (the
#: working set of a smaller pass stays in cache); results never depend on it.
PERTURBED_IMAGES_PER_PASS = 256


# ---------------------------------------------------------------------------------------------------
# Checks (eager, on concrete values; under a caller's jit only shapes are checked)
# ---------------------------------------------------------------------------------------------------


def is_concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


def check_attributions(attributions: Any, x: Array, name: str = "attributions") -> Array:
    """A float32 array with ``x``'s shape, or ``x``'s shape without the channel axis (images)."""
    if attributions is None:
        raise InputError(
            f"{name} is missing: this metric scores a given explanation; pass an array with x's shape {tuple(x.shape)}."
        )
    if callable(attributions) and not hasattr(attributions, "shape"):
        raise InputError(
            f"{name} must be an array of attributions, got a callable "
            f"({getattr(attributions, '__name__', type(attributions).__name__)}). "
            "This metric scores a given explanation: compute it first, a = method(model, variables, x, target)."
        )
    if not hasattr(attributions, "shape"):
        try:
            attributions = np.asarray(attributions, np.float32)
        except (TypeError, ValueError):
            raise InputError(f"{name} must be an array; got {type(attributions).__name__}.") from None
    shape, x_shape = tuple(attributions.shape), tuple(x.shape)
    allowed = [x_shape] + ([x_shape[:-1]] if len(x_shape) >= 4 else [])
    if shape not in allowed:
        extra = f" or {x_shape[:-1]} (one score per pixel)" if len(x_shape) >= 4 else ""
        hint = ""
        if len(shape) == len(x_shape) - 1 and len(x_shape) >= 4 and shape[0] == x_shape[0]:
            hint = " A layer-resolution map (CAM family) must be upsampled first: xj.upsample(maps, x.shape)."
        raise InputError(f"{name} has shape {shape}; expected x's shape {x_shape}{extra}.{hint}")
    attributions = jnp.asarray(attributions, jnp.float32)
    if is_concrete(attributions) and not bool(jnp.all(jnp.isfinite(attributions))):
        raise InputError(f"{name} contains NaN or infinite values.")
    return attributions


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}.")
    return value


@overload
def check_positive_int(name: str, value: Any, *, allow_none: Literal[False] = False) -> int: ...
@overload
def check_positive_int(name: str, value: Any, *, allow_none: bool) -> int | None: ...
def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer{' or None' if allow_none else ''}; got {value!r}.")
    return int(value)


def check_non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value) or value < 0:
        raise InputError(f"{name} must be a non-negative finite number; got {value!r}.")
    return float(value)


@overload
def check_key(key: Any, needed: Literal[True], metric: str) -> Array: ...
@overload
def check_key(key: Any, needed: bool, metric: str) -> Array | None: ...
def check_key(key: Any, needed: bool, metric: str) -> Array | None:
    if key is None:
        if needed:
            raise InputError(
                f"{metric} draws random perturbations: pass key=jax.random.key(seed) (or the draws themselves)."
            )
        return None
    if not (isinstance(key, jax.Array) and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or key.shape == (2,))):
        raise InputError(f"key must be a JAX PRNG key (jax.random.key(seed)); got {type(key).__name__}.")
    return key


def check_score(score: str, problem: Problem) -> str:
    check_choice("score", score, SCORES)
    if problem.target.kind == "callable" and score != "logit":
        raise TargetError(
            f"score={score!r} needs class outputs; a callable target gives one scalar per sample, for which only "
            "score='logit' (the target's own value) applies."
        )
    return score


def check_draws(name: str, draws: Any, shape: tuple[int, ...], what: str, dtype: Any = jnp.float32) -> Array:
    """An injected array of random draws (so a metric can be run on a reference's exact perturbations)."""
    arr = jnp.asarray(draws, dtype)
    if tuple(arr.shape) != tuple(shape):
        raise InputError(f"{name} must have shape {tuple(shape)} ({what}); got {tuple(arr.shape)}.")
    return arr


# ---------------------------------------------------------------------------------------------------
# Per-sample preprocessing
# ---------------------------------------------------------------------------------------------------


def flat(a: Array) -> Array:
    """``(B, ...) -> (B, D)``."""
    return a.reshape(a.shape[0], -1)


def _per_sample(value: Array, like: Array) -> Array:
    return value.reshape(-1, *[1] * (like.ndim - 1))


def normalise(a: Array, how: str | None) -> Array:
    """Per-sample normalisation: ``"max"`` divides by max |a|, ``"second_moment"`` by sqrt(mean a²)
    (Binder et al. 2022, Quantus' ``normalise_by_average_second_moment_estimate``).  All-zero maps
    are left unchanged."""
    if how is None:
        return a
    if how == "max":
        scale = jnp.max(jnp.abs(flat(a)), axis=1)
    elif how == "second_moment":
        scale = jnp.sqrt(jnp.mean(jnp.square(flat(a)), axis=1))
    else:
        raise InputError(f"normalise must be one of {NORMALISATIONS}; got {how!r}.")
    return a / _per_sample(jnp.where(scale > 0, scale, 1.0), a)


def preprocess(a: Array, *, absolute: bool, normalise_by: str | None) -> Array:
    """Quantus' order: normalise, then take the absolute value."""
    a = normalise(a, normalise_by)
    return jnp.abs(a) if absolute else a


def expand_feature_mask(mask: Array, attribution_shape: tuple[int, ...], x_shape: tuple[int, ...]) -> Array:
    """A mask over the features of ``attributions`` (``(..., D)``) as a mask over ``x``'s elements."""
    lead = mask.shape[:-1]
    m = mask.reshape(*lead, *attribution_shape[1:])
    if tuple(attribution_shape) != tuple(x_shape):  # one score per pixel: all channels of it
        m = m[..., None]
    return jnp.broadcast_to(m, (*lead, *x_shape[1:]))


# ---------------------------------------------------------------------------------------------------
# Orderings, ranks, correlations (all along the last axis)
# ---------------------------------------------------------------------------------------------------


def order(scores: Array, direction: str) -> Array:
    """Feature indices, most relevant first (``"morf"``) or least relevant first (``"lerf"``).

    A stable sort: equal scores keep their index order (lowest flat index first) in both directions."""
    keys = -scores if direction == "morf" else scores
    return jnp.argsort(keys, axis=-1, stable=True)


def ranks_from_order(idx: Array) -> Array:
    """Position of every feature in ``idx`` (the inverse permutation), along the last axis."""
    positions = jnp.broadcast_to(jnp.arange(idx.shape[-1], dtype=jnp.int32), idx.shape)
    return _scatter_last(idx, positions)


def _scatter_last(idx: Array, values: Array) -> Array:
    def one(i: Array, v: Array) -> Array:
        return jnp.zeros_like(v).at[i].set(v)

    fn = one
    for _ in range(idx.ndim - 1):
        fn = jax.vmap(fn)
    return fn(idx, values)


# ---------------------------------------------------------------------------------------------------
# Baselines ("what a removed feature becomes")
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A resolved baseline: a static ``kind`` and, for ``kind == "array"``, traced values."""

    kind: str
    sigma: float = 5.0


def split_baseline(baseline: Any, x: Array, name: str = "baseline") -> tuple[Baseline, Array]:
    """``(static description, traced array)``: named baselines stay static, numbers and arrays are data
    (so a new value never recompiles)."""
    if isinstance(baseline, str):
        check_choice(name, baseline, NAMED_BASELINES)
        return Baseline(baseline), jnp.zeros((), x.dtype)
    if isinstance(baseline, (bool, np.bool_)) or baseline is None:
        raise InputError(f"{name} must be one of {NAMED_BASELINES}, a number or an array; got {baseline!r}.")
    value = jnp.asarray(baseline, x.dtype)
    try:
        value = jnp.broadcast_to(value, x.shape)
    except ValueError:
        raise InputError(f"{name} of shape {tuple(value.shape)} does not broadcast to x {tuple(x.shape)}.") from None
    if is_concrete(value) and not bool(jnp.all(jnp.isfinite(value))):
        raise InputError(f"{name} contains NaN or infinite values.")
    return Baseline("array"), value


def fill_values(x: Array, baseline: Baseline, value: Array, key: Array | None = None) -> Array:
    """The values removed features take, with ``x``'s shape.

    ``black``/``white``/``mean``: the sample's minimum/maximum/mean over all its elements (Quantus'
    per-sample ``"black"``, ``"white"``, ``"mean"``); ``zero``; ``uniform``: U(0, 1) per element (needs
    ``key``); ``blur``: a Gaussian blur of the image (σ = ``baseline.sigma`` pixels; Petsiuk et al.'s
    insertion canvas); ``array``: the given values."""
    axes = tuple(range(1, x.ndim))
    if baseline.kind == "black":
        return jnp.broadcast_to(jnp.min(x, axis=axes, keepdims=True), x.shape)
    if baseline.kind == "white":
        return jnp.broadcast_to(jnp.max(x, axis=axes, keepdims=True), x.shape)
    if baseline.kind == "mean":
        return jnp.broadcast_to(jnp.mean(x, axis=axes, keepdims=True), x.shape)
    if baseline.kind == "zero":
        return jnp.zeros_like(x)
    if baseline.kind == "uniform":
        if key is None:
            raise InputError("baseline='uniform' draws random values: pass key=jax.random.key(seed).")
        return jax.random.uniform(key, x.shape, x.dtype)
    if baseline.kind == "blur":
        from .imputation import gaussian_blur

        return gaussian_blur(x, baseline.sigma)
    return jnp.broadcast_to(value, x.shape)


# ---------------------------------------------------------------------------------------------------
# Model scores
# ---------------------------------------------------------------------------------------------------


def scorer(problem: Problem, inputs: Inputs, indices: Array | None, score: str) -> Callable[[Array], Array]:
    """``xs (K, B, ...) -> (K, B)``: the target's probability, logit (or callable value), or whether the
    target class is still the argmax, for K perturbed copies of the batch in one forward pass."""

    def scores(xs: Array) -> Array:
        k, b = xs.shape[:2]
        outputs = problem.forward(inputs.variables, xs.reshape(k * b, *xs.shape[2:]), inputs.kwargs)
        idx = None if indices is None else jnp.tile(indices, k)
        if score == "logit":
            values = problem.target.select(outputs, idx)
        elif score == "probability":
            values = problem.target.select(jax.nn.softmax(outputs, axis=-1), idx)
        else:  # accuracy
            assert idx is not None  # check_score allows "accuracy" for class targets only, which have indices
            values = (jnp.argmax(outputs, axis=-1) == idx).astype(jnp.float32)
        return values.reshape(k, b)

    return scores


# ---------------------------------------------------------------------------------------------------
# Method values inside a metric
# ---------------------------------------------------------------------------------------------------


class StaticMethod:
    """A method value as a static (hashable) jit argument: equal when it is the same value, so one
    compilation serves every call with the same method (build a ``partial`` once and reuse it)."""

    def __init__(self, value: Callable[..., Any]) -> None:
        self.value = value
        try:
            self._hash = hash(value)
            self._hashable = True
        except TypeError:  # e.g. a registry entry holding a dict of defaults
            self._hash = id(value)
            self._hashable = False

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StaticMethod):
            return NotImplemented
        if self.value is other.value:
            return True
        return self._hashable and other._hashable and self.value == other.value

    def __repr__(self) -> str:
        return f"StaticMethod({getattr(self.value, '__name__', self.value)!r})"


def resolve_method(method: Any, metric: str) -> StaticMethod:
    """A method value (callable, registered name, ``partial``) for a metric that recomputes explanations."""
    if isinstance(method, StaticMethod):
        return method
    if isinstance(method, str):
        from ..core import METHODS

        return StaticMethod(METHODS[method])
    if hasattr(method, "shape") and hasattr(method, "dtype"):
        raise InputError(
            f"{metric} recomputes explanations of perturbed inputs, so it needs the method itself (e.g. xj.gradient, "
            f"functools.partial(xj.integrated_gradients, steps=16) or a registered name); got an array of shape "
            f"{tuple(method.shape)}."
        )
    if not callable(method):
        raise InputError(
            f"{metric} needs a method (a callable explain(model, variables, x, target)); got {type(method).__name__}."
        )
    return StaticMethod(method)


def explain(
    method: StaticMethod, problem: Problem, variables: Any, x: Array, indices: Array | None, kwargs: Mapping[str, Any]
) -> Array:
    """``method(model, variables, x, target)`` with the metric's target (classes fixed at the
    unperturbed input, or the caller's callable) and model options, as float32 with ``x``'s shape
    (or without its channel axis)."""
    target = problem.target.fn if problem.target.kind == "callable" else indices
    model_kwargs = {**dict(problem.forward.static_kwargs), **dict(kwargs)}
    extra = {"model_kwargs": model_kwargs} if model_kwargs else {}
    a = method.value(problem.forward.model, variables, x, target, **extra)
    if not hasattr(a, "shape"):
        raise InputError(f"the method returned {type(a).__name__}, not an array of attributions.")
    allowed = [tuple(x.shape)] + ([tuple(x.shape[:-1])] if x.ndim >= 4 else [])
    if tuple(a.shape) not in allowed:
        raise InputError(
            f"the method returned attributions of shape {tuple(a.shape)} for x of shape {tuple(x.shape)}; metrics need "
            "input-resolution maps (wrap a layer method with xj.upsample(maps, x.shape))."
        )
    return jnp.asarray(a, jnp.float32)


def explain_expanded(method: StaticMethod, problem: Problem, inputs: Inputs, xs: Array, indices: Array | None) -> Array:
    """Explanations of K perturbed copies ``xs (K, B, ...)`` of the batch, as one batch of K·B."""
    k, b = xs.shape[:2]
    idx = None if indices is None else jnp.tile(indices, k)
    a = explain(method, problem, inputs.variables, xs.reshape(k * b, *xs.shape[2:]), idx, inputs.kwargs)
    return a.reshape(k, b, *a.shape[1:])


def chunks(n: int, size: int | None) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n)`` in pieces of at most ``size``."""
    size = n if size is None else max(1, int(size))
    return [(s, min(s + size, n)) for s in range(0, n, size)]
