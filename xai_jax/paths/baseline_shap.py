"""SHAP values as expectations over a baseline distribution: GradientSHAP and DeepLiftSHAP.

Lundberg & Lee (2017) ([lundberg2017]_) approximate SHAP values of a deep network by averaging an
attribution that explains ``f(x) - f(b)`` over references ``b`` drawn from a background
distribution ``D = {b_1..b_R}``:

* **GradientSHAP** (the ``shap`` package's ``GradientExplainer``; Captum ``GradientShap``): expected
  gradients ([erion2021]_), ``φ = E_{b ~ D, α ~ U(0,1), ε ~ N(0, σ²)} [(x̃ - b) ⊙ ∇f_c(b + α (x̃ - b))]``
  with ``x̃ = x + ε``: integrated gradients with a random baseline and a random path point, estimated
  from ``n`` draws.  Captum's exact sampling layout: one baseline index, one ``α`` and one noise
  draw per (sample, draw).
* **DeepLiftSHAP** (Captum ``DeepLiftShap``): ``φ = (1/R) Σ_r DeepLIFT(x; b_r)``, every reference of
  the distribution; by DeepLIFT's summation-to-delta, ``Σ_i φ_i = f_c(x) - (1/R) Σ_r f_c(b_r)``
  exactly.  Any method with a ``baseline`` option can be averaged so (``method=``).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import (
    ChunkSize,
    Flag,
    InputError,
    Inputs,
    Key,
    MethodCall,
    NonNegativeFloat,
    Option,
    OptionContext,
    PositiveInt,
    Problem,
    chunked_sum,
    fix_target,
    method,
    method_call,
    resolve_method,
)
from ..core.checks import check_finite_array, is_array, is_traced
from ..trace.gradients import target_gradient
from .gradients import summed_gradients


def resolve_distribution(value: Any, x: jax.Array, name: str = "baselines") -> jax.Array:
    """References ``(R, *sample_shape)`` from a scalar, one sample's shape, a stack of references, or a
    callable ``x -> references``; NaN/inf refused where it can be seen."""
    if callable(value) and not is_array(value):
        value = value(x)
    if isinstance(value, (bool, np.bool_)) or not (
        is_array(value) or isinstance(value, (int, float, np.number, list, tuple))
    ):
        raise InputError(
            f"{name} must be a number, an array of references (R, ...) or a callable x -> references; "
            f"got {type(value).__name__}."
        )
    array = jnp.asarray(value, x.dtype)
    sample = tuple(x.shape[1:])
    if array.ndim == 0:
        array = jnp.broadcast_to(array, (1, *sample))
    elif tuple(array.shape) == sample:
        array = array[None]
    elif array.ndim != x.ndim or tuple(array.shape[1:]) != sample:
        raise InputError(
            f"{name} of shape {tuple(array.shape)} is not a set of references for x {tuple(x.shape)}: pass a number, "
            f"one reference {sample}, or R references (R, {', '.join(map(str, sample))})."
        )
    if array.shape[0] == 0:
        raise InputError(f"{name} is empty: pass at least one reference.")
    check_finite_array(name, array)
    return array


#: Annotation of a baseline-distribution option (resolved by :func:`resolve_distribution`).
Distribution = Annotated[Any, Option(lambda ctx, name, value: resolve_distribution(value, ctx.inputs.x, name))]


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class GradientShapDraws:
    """The random draws of GradientSHAP: per draw ``s`` and sample ``b``, a reference index, a path
    point ``α`` and the input noise (``None``: no noise).  Shapes ``(n, B)``, ``(n, B)``, ``(n, *x.shape)``."""

    indices: jax.Array
    alphas: jax.Array
    noise: jax.Array | None = None

    def tree_flatten(self) -> tuple[tuple[Any, ...], None]:
        return (self.indices, self.alphas, self.noise), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: tuple[Any, ...]) -> GradientShapDraws:
        return cls(*children)


def gradient_shap_draws(
    key: jax.Array, x_shape: tuple[int, ...], references: int, samples: int, stdev: float, dtype: Any = jnp.float32
) -> GradientShapDraws:
    """The draws :func:`gradient_shap` makes from ``key``: reference indices uniform over ``references``,
    ``α ~ U(0, 1)``, noise ``N(0, stdev²)`` (none when ``stdev = 0``)."""
    k_index, k_alpha, k_noise = jax.random.split(key, 3)
    batch = x_shape[0]
    indices = jax.random.randint(k_index, (samples, batch), 0, references)
    alphas = jax.random.uniform(k_alpha, (samples, batch), dtype)
    noise = None if stdev == 0 else stdev * jax.random.normal(k_noise, (samples, *x_shape), dtype)
    return GradientShapDraws(indices, alphas, noise)


def _check_draws(ctx: OptionContext, name: str, value: Any) -> GradientShapDraws:
    if not isinstance(value, GradientShapDraws):
        raise InputError(f"{name} must be a GradientShapDraws(indices, alphas, noise); got {type(value).__name__}.")
    shape = tuple(ctx.inputs.x.shape)
    n = value.indices.shape[0] if value.indices.ndim == 2 else -1
    if tuple(value.indices.shape) != (n, shape[0]) or tuple(value.alphas.shape) != (n, shape[0]):
        raise InputError(
            f"{name}: indices and alphas must both have shape (n, B) = (n, {shape[0]}); "
            f"got {tuple(value.indices.shape)} and {tuple(value.alphas.shape)}."
        )
    if value.noise is not None and tuple(value.noise.shape) != (n, *shape):
        raise InputError(
            f"{name}: noise must have shape (n, *x.shape) = {(n, *shape)}; got {tuple(value.noise.shape)}."
        )
    references = ctx.options["baselines"].shape[0]
    if not is_traced(value.indices) and (
        np.asarray(value.indices).min() < 0 or np.asarray(value.indices).max() >= references
    ):
        raise InputError(f"{name}: reference indices must lie in 0..{references - 1}.")
    check_finite_array(f"{name}.alphas", value.alphas)
    return GradientShapDraws(
        jnp.asarray(value.indices, jnp.int32),
        jnp.asarray(value.alphas, ctx.inputs.x.dtype),
        None if value.noise is None else jnp.asarray(value.noise, ctx.inputs.x.dtype),
    )


Draws = Annotated[GradientShapDraws | None, Option(_check_draws)]


@method("gradient_shap", family="path", signed=True, report_options={"samples": 16})
def gradient_shap(
    problem: Problem,
    inputs: Inputs,
    *,
    key: Key,
    baselines: Distribution = 0.0,
    samples: PositiveInt = 5,
    stdev: NonNegativeFloat = 0.0,
    multiply_by_inputs: Flag = True,
    draws: Draws = None,
    batch_size: ChunkSize = "auto",
) -> jax.Array:
    """GradientSHAP ([lundberg2017]_, [erion2021]_; Captum's ``GradientShap``): expected gradients over a
    baseline distribution.

    ``φ = (1/n) Σ_s (x̃_s - b_s) ⊙ ∇f_c(b_s + α_s (x̃_s - b_s))`` with ``b_s`` drawn uniformly from
    ``baselines``, ``α_s ~ U(0, 1)``, ``x̃_s = x + ε_s``, ``ε_s ~ N(0, stdev²)``; the classes are fixed
    at ``x``.  ``E[Σ φ] ≈ f_c(x) - E_b f_c(b)`` for models close to linear between ``b`` and ``x``.

    Args:
      key: ``jax.random`` key for the draws (unused when ``draws`` are given).
      baselines: the reference distribution: ``(R, *sample_shape)``, one reference, a number or a callable.
      samples: draws ``n`` per sample (Captum's ``n_samples``).
      stdev: standard deviation of the Gaussian noise added to ``x`` (Captum's ``stdevs``).
      multiply_by_inputs: ``False`` returns the expected gradient without ``(x̃ - b)``.
      draws: explicit :class:`GradientShapDraws` (the injection point for comparing implementations).
      batch_size: draws evaluated at once (each a gradient of the batch).

    Example:
      >>> refs = jnp.stack([jnp.zeros(x.shape[1:]), jnp.ones(x.shape[1:])])
      >>> attr = xj.gradient_shap(model, variables, x, key=jax.random.key(0), baselines=refs, samples=4)
      >>> attr.shape == x.shape
      True
    """
    problem, inputs = fix_target(problem, inputs)
    x = inputs.x
    if draws is None:
        draws = gradient_shap_draws(key, x.shape, baselines.shape[0], samples, stdev, x.dtype)
    noise = jnp.zeros((draws.indices.shape[0], 1), x.dtype) if draws.noise is None else draws.noise
    expand = (-1, *[1] * (x.ndim - 1))

    def term(index: jax.Array, alpha: jax.Array, eps: jax.Array, rules: Any = None) -> jax.Array:
        noisy = x + (eps if draws.noise is not None else 0.0)
        reference = baselines[index]
        delta = noisy - reference
        grad = target_gradient(problem, inputs, reference + alpha.reshape(expand) * delta, inputs.indices, rules)
        return delta * grad if multiply_by_inputs else grad

    total = summed_gradients(term, (draws.indices, draws.alphas, noise), batch_size)
    return total / draws.indices.shape[0]


def _check_baseline_method(ctx: OptionContext, name: str, value: Any) -> MethodCall:
    wrapped, options = resolve_method(value)
    if "baseline" not in getattr(wrapped, "options", {}):
        raise InputError(
            f"{ctx.method} averages a method over references; {getattr(wrapped, 'name', value)!r} takes no "
            "baseline option (use e.g. 'deeplift' or 'integrated_gradients')."
        )
    if "baseline" in options:
        raise InputError(
            f"{ctx.method} sets the baseline of its method from `baselines`; do not fix it in the method value."
        )
    if wrapped.resolution != "input":
        raise InputError(f"{ctx.method} averages input-resolution maps; {wrapped.name!r} gives layer maps.")
    first = jnp.broadcast_to(ctx.options["baselines"][0], ctx.inputs.x.shape)
    return method_call(value, ctx.problem, ctx.inputs, baseline=first)


BaselineMethod = Annotated[Any, Option(_check_baseline_method)]


@method("deeplift_shap", family="propagation", signed=True)
def deeplift_shap(
    problem: Problem,
    inputs: Inputs,
    *,
    baselines: Distribution = 0.0,
    method: BaselineMethod = "deeplift",
    batch_size: ChunkSize = "auto",
) -> jax.Array:
    """DeepLiftSHAP ([lundberg2017]_; Captum's ``DeepLiftShap``): DeepLIFT averaged over every reference
    of a baseline distribution.

    ``φ = (1/R) Σ_r DeepLIFT(x; b_r)``, so ``Σ_i φ_i = f_c(x) - (1/R) Σ_r f_c(b_r)`` per sample
    (DeepLIFT's summation-to-delta, [shrikumar2017]_); the classes are fixed at ``x``.

    Args:
      baselines: the references ``(R, *sample_shape)`` (or one reference, a number, a callable).
      method: the method averaged, a value with a ``baseline`` option: ``"deeplift"`` (default,
        rescale rule), ``functools.partial(xj.deeplift, rule="reveal_cancel")``, ``"integrated_gradients"``...
      batch_size: references evaluated at once (each one call of ``method`` on the batch).

    Example:
      >>> refs = jnp.stack([jnp.zeros(x.shape[1:]), 0.5 * jnp.ones(x.shape[1:])])
      >>> attr = xj.deeplift_shap(model, variables, x, baselines=refs)
      >>> attr.shape == x.shape
      True
    """
    wrapped: MethodCall = method
    problem, inputs = fix_target(problem, inputs)
    x = inputs.x

    def term(reference: jax.Array) -> jax.Array:
        call = MethodCall(wrapped.prepared, {**wrapped.traced, "baseline": jnp.broadcast_to(reference, x.shape)})
        return call.apply(problem, inputs)

    return chunked_sum(term, baselines, chunk_size=batch_size) / baselines.shape[0]


__all__ = ["GradientShapDraws", "deeplift_shap", "gradient_shap", "gradient_shap_draws", "resolve_distribution"]
