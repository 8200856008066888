"""Uncertainty of explanations: any registered attribution method under a distribution.

* :func:`explain_mc` -- over Monte-Carlo dropout networks (Gal & Ghahramani 2016): the map of sample
  ``t`` is ``A(f_{ω_t}, x)``, the explanation of the ``t``-th dropout network.  This generalises the
  seed's "uncertainty interpretability with LRP" to every method in ``xj.METHODS``.
* :func:`explain_random_baselines` -- over reference inputs drawn from a noise distribution, for
  methods with a ``baseline`` (DeepLIFT, Shrikumar et al. 2017; integrated gradients): the seed's
  "DeepLIFT with random-noise baselines".

Both return the mean map ``(1/T) Σ_t A_t`` and the standard deviation ``sqrt((1/T) Σ_t (A_t - Ā)²)``
(population, ddof 0), and the ``T`` maps on request.  The statistics are accumulated shifted by the
first sample (``d_t = A_t - A_1``; ``Ā = A_1 + mean(d)``, ``σ² = mean(d²) - mean(d)²``) so that
identical samples give ``σ = 0`` exactly and ``Ā = A_1`` exactly.  Samples are vmapped in chunks of
``batch_size`` inside one jitted call; keys are ``jax.random.split(key, samples)``.

Methods meet here through the registry by name: this module imports no other family.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..core import (
    METHODS,
    InputError,
    Inputs,
    MethodCall,
    Problem,
    Target,
    TargetSpec,
    UnsupportedError,
    chunked_sum,
    chunked_vmap,
    fix_target,
    method_call,
    prepare,
    resolve_method,
)
from ..core.batching import ChunkSize
from ..core.checks import check_bool, check_choice, check_chunk_size, check_float, check_key, check_positive_int
from ..core.methods import MethodLike
from ..core.model import Model, adapt_model
from ..core.numerics import guarded_jit
from ._common import output_depends_on_rng, prepare_stochastic, product_dropout, with_rng

__all__ = ["NOISES", "MCExplanation", "explain_mc", "explain_mc_methods", "explain_random_baselines", "noise_baseline"]

NOISES = ("uniform", "gaussian")


class MCExplanation(NamedTuple):
    """Mean and spread of an attribution over samples (a pytree of arrays).

    Attributes:
      mean: the mean map, the method's output shape (``x``'s shape, or ``(B, h, w)`` for layer maps).
      std: the per-element standard deviation over samples (ddof 0), same shape.
      samples: ``(T, *mean.shape)`` the individual maps when ``return_samples=True``, else ``None``.
    """

    mean: jax.Array
    std: jax.Array
    samples: jax.Array | None = None


def _moments(
    one: Callable[[jax.Array], jax.Array], keys: jax.Array, batch_size: ChunkSize, return_samples: bool
) -> MCExplanation:
    """Mean/std of ``one(k)`` over ``keys``, shifted by the first sample (see module docstring)."""
    n = keys.shape[0]
    first = one(keys[0])
    if n == 1:
        return MCExplanation(first, jnp.zeros_like(first), first[None] if return_samples else None)
    if return_samples:
        rest = chunked_vmap(one, keys[1:], chunk_size=batch_size)
        maps = jnp.concatenate([first[None], rest])
        d = maps - first
        mean_d = jnp.mean(d, axis=0)
        var = jnp.mean(jnp.square(d - mean_d), axis=0)
    else:

        def shifted(k: jax.Array) -> tuple[jax.Array, jax.Array]:
            d = one(k) - first
            return d, d * d

        sum_d, sum_d2 = chunked_sum(shifted, keys[1:], chunk_size=batch_size)
        mean_d = sum_d / n
        var = jnp.maximum(sum_d2 / n - mean_d * mean_d, 0.0)
        maps = None
    return MCExplanation(first + mean_d, jnp.sqrt(var), maps)


def _with_indices(problem: Problem, inputs: Inputs, indices: jax.Array | None) -> tuple[Problem, Inputs]:
    """The call with its classes fixed to ``indices`` (for an argmax target)."""
    if problem.target.kind != "argmax":
        return problem, inputs
    return dataclasses.replace(problem, target=TargetSpec("index")), inputs._replace(indices=indices)


@functools.partial(
    guarded_jit, static_argnames=("problem", "samples", "batch_size", "rng_collection", "return_samples")
)
def _explain_mc(
    problem: Problem,
    inputs: Inputs,
    key: jax.Array,
    call: MethodCall,
    *,
    samples: int,
    batch_size: ChunkSize,
    rng_collection: str,
    return_samples: bool,
) -> MCExplanation:
    keys = jax.random.split(key, samples)
    predicted = None
    if problem.target.kind == "argmax":  # the MC prediction: argmax of the mean probability over the same passes

        def probabilities(k: jax.Array) -> jax.Array:
            logits = problem.forward(inputs.variables, inputs.x, with_rng(inputs.kwargs, rng_collection, k))
            return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

        predicted = jnp.argmax(jax.lax.stop_gradient(chunked_sum(probabilities, keys, chunk_size=batch_size)), axis=-1)
    fixed_problem, fixed_inputs = _with_indices(problem, inputs, predicted)

    def one(k: jax.Array) -> jax.Array:
        return call.apply(fixed_problem, fixed_inputs._replace(kwargs=with_rng(inputs.kwargs, rng_collection, k)))

    return _moments(one, keys, batch_size, return_samples)


def explain_mc(
    method: MethodLike,
    model: Model,
    variables: Any,
    x: Any,
    target: Target = None,
    *,
    samples: int,
    key: jax.Array,
    batch_size: ChunkSize = "auto",
    return_samples: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    stochastic_kwargs: Mapping[str, Any] | None = None,
    rng_collection: str = "dropout",
    require_stochastic: bool = True,
    method_options: Mapping[str, Any] | None = None,
) -> MCExplanation:
    """An attribution ``method`` over Monte-Carlo dropout networks: mean and std maps.

    Sample ``t`` is ``method(model, variables, x, target, model_kwargs={..., "rngs": {"dropout":
    keys[t]}})`` with ``keys = jax.random.split(key, samples)`` and dropout on -- the explanation of the
    ``t``-th network drawn from the approximate posterior of [gal2016]_.  The mean is
    ``Ā = (1/T) Σ_t A_t``, the std ``sqrt((1/T) Σ_t (A_t - Ā)²)``.  The passes are the same as
    :func:`mc_dropout`'s for the same ``key`` and ``samples``.

    ``target=None`` explains, in every sample, the **MC prediction** ``argmax p̄`` (the class of
    :func:`mc_dropout` with the same key and samples), not each network's own argmax -- a mean over
    maps of different classes would mean nothing.  An int, an index array or a callable is used as is.

    ``nn.Dropout`` layers run as ``(x * mask) / keep`` (same mask, bit-identical outputs and
    gradients) so that propagation methods (``"lrp"``, ``"deeplift"``), whose engine refuses the
    ``select`` Flax writes, work on each sample; the reference half of DeepLIFT sees the same mask
    as the input half (one network per sample), so summation-to-delta holds per sample.

    Args:
      method: a method value: a name in ``xj.METHODS`` (``"gradient"``, ``"lrp"``, ``"grad_cam"``...),
        a method (``xj.deeplift``), or one with its options,
        ``functools.partial(xj.integrated_gradients, steps=16)`` / ``partial(xj.grad_cam, layer="conv4")``.
      samples: number of dropout networks ``T`` (≥ 1).
      key: ``jax.random`` key for the dropout masks (required).
      batch_size: samples evaluated at once (``"auto"``: from the memory budget; ``None``: all).
      return_samples: also return the ``T`` maps.
      stochastic_kwargs: keyword arguments that switch dropout on (default ``{"deterministic": False}``;
        ``{"deterministic": True}`` switches it off: the mean is then the plain method's map).
      require_stochastic: with ``samples > 1``, raise if the output does not depend on the dropout
        rng (every sample would be the same map).  ``samples == 1`` is always allowed: on a model
        without dropout it is the plain method.
      method_options: options of the method, as a mapping (the same as a ``functools.partial``).

    Returns:
      :class:`MCExplanation` ``(mean, std, samples)``.
    """
    samples = check_positive_int("samples", samples)
    batch_size = check_chunk_size("batch_size", batch_size)
    key = check_key("key", key)
    model, variables = adapt_model(model, variables)  # an NNX/Equinox module in its traced form first
    problem, inputs, note = prepare_stochastic(
        product_dropout(model),
        variables,
        x,
        target,
        key,
        model_kwargs=model_kwargs,
        stochastic_kwargs=stochastic_kwargs,
        rng_collection=rng_collection,
        run_without_switch=bool(require_stochastic) or samples == 1,
    )
    call = method_call(_with_options(method, method_options), problem, inputs)
    if require_stochastic and samples > 1 and not output_depends_on_rng(problem, inputs, rng_collection):
        raise InputError(
            f"the model's output does not depend on the {rng_collection!r} rng with "
            f"{dict(problem.forward.static_kwargs)}: "
            f"all {samples} samples of {call.method.name!r} would be the same map (no dropout, rate 0, or dropout "
            "off). "
            "Use a model with dropout, stochastic_kwargs= that switch it on, samples=1, or require_stochastic=False."
            + note
        )
    return _explain_mc(
        problem,
        inputs,
        key,
        call,
        samples=samples,
        batch_size=batch_size,
        rng_collection=rng_collection,
        return_samples=check_bool("return_samples", return_samples),
    )


def _with_options(method: MethodLike, options: Mapping[str, Any] | None) -> MethodLike:
    return (
        functools.partial(method if not isinstance(method, str) else METHODS[method], **dict(options))
        if options
        else method
    )


def noise_baseline(
    key: jax.Array,
    x: jax.Array,
    noise: str = "uniform",
    *,
    low: float | jax.Array = 0.0,
    high: float | jax.Array = 1.0,
    mean: float | jax.Array = 0.0,
    std: float | jax.Array = 1.0,
) -> jax.Array:
    """One random reference batch with ``x``'s shape: ``U[low, high)`` or ``N(mean, std²)`` noise."""
    if noise == "uniform":
        return jax.random.uniform(key, x.shape, x.dtype, low, high)
    if noise == "gaussian":
        return mean + std * jax.random.normal(key, x.shape, x.dtype)
    raise InputError(f"noise must be one of {NOISES}; got {noise!r}.")


@functools.partial(guarded_jit, static_argnames=("problem", "samples", "batch_size", "noise", "return_samples"))
def _explain_baselines(
    problem: Problem,
    inputs: Inputs,
    key: jax.Array,
    call: MethodCall,
    noise_params: jax.Array,
    *,
    samples: int,
    batch_size: ChunkSize,
    noise: str,
    return_samples: bool,
) -> MCExplanation:
    keys = jax.random.split(key, samples)
    problem, inputs = fix_target(problem, inputs)
    a, b = noise_params[0], noise_params[1]

    def one(k: jax.Array) -> jax.Array:
        reference = noise_baseline(k, inputs.x, noise, low=a, high=b, mean=a, std=b)
        return dataclasses.replace(call, traced={**call.traced, "baseline": reference}).apply(problem, inputs)

    return _moments(one, keys, batch_size, return_samples)


def explain_random_baselines(
    method: MethodLike,
    model: Model,
    variables: Any,
    x: Any,
    target: Target = None,
    *,
    samples: int,
    key: jax.Array,
    noise: str = "uniform",
    low: float = 0.0,
    high: float = 1.0,
    mean: float = 0.0,
    std: float = 1.0,
    batch_size: ChunkSize = "auto",
    return_samples: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    method_options: Mapping[str, Any] | None = None,
) -> MCExplanation:
    """A baseline method (DeepLIFT, integrated gradients) over random-noise references: mean, std.

    Sample ``t`` explains ``x`` against the reference ``x₀ᵗ ~ U[low, high)`` (``noise="uniform"``,
    default ``U[0, 1)``, the MNIST input range) or ``N(mean, std²)`` (``"gaussian"``), drawn from
    ``jax.random.split(key, samples)[t]``: ``A_t = method(..., baseline=x₀ᵗ)``.  For DeepLIFT
    ([shrikumar2017]_) each ``A_t`` sums to ``f_c(x) - f_c(x₀ᵗ)``; the mean over references is an
    expected-gradients-like estimate of attribution against the noise distribution, the std how much
    the map depends on the choice of reference.  ``target=None`` explains the class predicted at
    ``x`` (fixed across references).  The model runs as given (``model_kwargs``).  ``method`` is a
    method value with a ``baseline`` option (``"deeplift"``, ``partial(xj.integrated_gradients,
    steps=16)``).
    """
    samples = check_positive_int("samples", samples)
    batch_size = check_chunk_size("batch_size", batch_size)
    key = check_key("key", key)
    noise = check_choice("noise", noise, NOISES)
    if noise == "uniform":
        low, high = check_float("low", low), check_float("high", high)
        if not high > low:
            raise InputError(f"uniform noise needs high > low; got low={low}, high={high}.")
        params = (low, high)
    else:
        params = (check_float("mean", mean), check_float("std", std, minimum=0.0))
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    resolved, options = resolve_method(_with_options(method, method_options))
    if "baseline" not in getattr(resolved, "options", {}):
        raise InputError(
            f"{resolved.name!r} takes no baseline; random-baseline statistics need a method such as 'deeplift' or "
            "'integrated_gradients'."
        )
    if "baseline" in options:
        raise InputError("the baselines are drawn here: do not pass baseline=.")
    call = method_call(_with_options(method, method_options), problem, inputs, baseline=0.0)
    return _explain_baselines(
        problem,
        inputs,
        key,
        call,
        jnp.asarray(params, inputs.x.dtype),
        samples=samples,
        batch_size=batch_size,
        noise=noise,
        return_samples=check_bool("return_samples", return_samples),
    )


def explain_mc_methods(
    methods: Iterable[str],
    model: Model,
    variables: Any,
    x: Any,
    target: Target = None,
    *,
    samples: int,
    key: jax.Array,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    stochastic_kwargs: Mapping[str, Any] | None = None,
) -> tuple[dict[str, MCExplanation], dict[str, str]]:
    """:func:`explain_mc` for several methods with the **same** dropout masks: ``({name: (mean, std)},
    {name: reason skipped})`` -- the entry point of ``xai-jax explain --mc-samples N``.

    ``options[name]`` are that method's options (``layer=`` for the CAM family, ``key=`` for
    SmoothGrad...).  A method that does not apply to the model (``InputError``/``UnsupportedError``,
    e.g. CAM without global average pooling) is skipped with its reason; a model without dropout is an
    error (every map's std would be 0), raised before any method runs.
    """
    names = list(methods)
    options = dict(options or {})
    samples = check_positive_int("samples", samples)
    key = check_key("key", key)
    if samples > 1:  # one clear error for the whole run, not one per method
        mc_problem, mc_inputs, note = prepare_stochastic(
            model,
            variables,
            x,
            None,
            key,
            model_kwargs=model_kwargs,
            stochastic_kwargs=stochastic_kwargs,
            rng_collection="dropout",
        )
        if not output_depends_on_rng(mc_problem, mc_inputs, "dropout"):
            raise InputError(
                "--mc-samples needs a model with dropout switched on (e.g. mc_dropout_cnn): this model's output "
                "does not depend on the dropout rng, so every sample would be the same map." + note
            )
    results: dict[str, MCExplanation] = {}
    skipped: dict[str, str] = {}
    for name in names:
        try:
            results[name] = explain_mc(
                name,
                model,
                variables,
                x,
                target,
                samples=samples,
                key=key,
                batch_size=batch_size,
                model_kwargs=model_kwargs,
                stochastic_kwargs=stochastic_kwargs,
                require_stochastic=False,
                method_options=options.get(name),
            )
        except (InputError, UnsupportedError) as err:
            skipped[name] = str(err)
    return results, skipped
