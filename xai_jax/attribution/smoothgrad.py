"""SmoothGrad, SmoothGrad², VarGrad: noise averaging around *any* registered attribution method.

Smilkov et al. (2017), "SmoothGrad: removing noise by adding noise":
``SG(x) = (1/n) Σ_k A(x + ε_k)``, ``ε_k ~ N(0, σ²)`` with ``σ = sigma · (max(x) - min(x))`` per
sample (the paper's noise level).  Hooker et al. (2019) "SmoothGrad-Squared" ``(1/n) Σ_k A(x+ε_k)²``
and Adebayo et al. (2018) "VarGrad" ``(1/n) Σ_k A(x+ε_k)² - SG(x)²`` (Captum's ``NoiseTunnel``
``nt_type`` "smoothgrad", "smoothgrad_sq", "vargrad").  The classes are fixed at ``x`` (the
predicted class does not change from one noisy sample to the next).  Samples are vmapped in chunks
of ``batch_size``; the noise comes from ``jax.random.split(key, samples)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import METHODS, InputError, Inputs, Problem, Target, chunked_sum, compiled, prepare, register
from ..core.model import Model

KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")


def _check_positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer{' or None' if allow_none else ''}; got {value!r}.")


@compiled(static=("method", "kind", "samples", "batch_size", "options"))
def _smoothgrad(problem: Problem, inputs: Inputs, key: jax.Array, stdev: jax.Array, *, method: str, kind: str, samples: int, batch_size: int | None, options: tuple[tuple[str, Any], ...]) -> jax.Array:
    indices = problem.class_indices(inputs)
    target = problem.target.fn if problem.target.kind == "callable" else indices
    explain = METHODS[method]
    x = inputs.x
    model_kwargs = {**dict(problem.forward.static_kwargs), **inputs.kwargs}
    scale = stdev.reshape(-1, *[1] * (x.ndim - 1))

    def moments(sample_key: jax.Array) -> tuple[jax.Array, jax.Array]:
        noisy = x + scale * jax.random.normal(sample_key, x.shape, x.dtype)
        attribution = explain(problem.forward.model, inputs.variables, noisy, target, model_kwargs=model_kwargs, **dict(options))
        return attribution, attribution * attribution

    total, total_sq = chunked_sum(moments, jax.random.split(key, samples), chunk_size=batch_size)
    mean, mean_sq = total / samples, total_sq / samples
    if kind == "smoothgrad":
        return mean
    if kind == "smoothgrad_sq":
        return mean_sq
    return mean_sq - mean * mean


@register("smoothgrad", family="noise", signed=True, needs=("key",), defaults={"samples": 16})
def smoothgrad(
    model: Model,
    variables: Any,
    x: Any,
    target: Target = None,
    *,
    key: jax.Array,
    method: str = "gradient",
    kind: str = "smoothgrad",
    samples: int = 50,
    sigma: float = 0.15,
    stdev: float | None = None,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    **method_options: Any,
) -> jax.Array:
    """Average a registered attribution ``method`` over Gaussian-perturbed copies of ``x``.

    Args:
      key: ``jax.random`` key for the noise (required: no hidden randomness).
      method: name of any registered input-resolution method (``"gradient"``,
        ``"integrated_gradients"``, ``"guided_backprop"``, ...); its options go in ``method_options``.
      kind: ``"smoothgrad"`` (mean), ``"smoothgrad_sq"`` (mean of squares) or ``"vargrad"`` (variance).
      samples: number of noisy samples ``n``.
      sigma: noise level relative to each sample's value range, ``σ = sigma · (max x - min x)``.
      stdev: absolute noise standard deviation; overrides ``sigma`` (Captum's ``stdevs``).
      batch_size: noisy samples evaluated at once (``None``: all in one vmapped pass).
    """
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}.")
    _check_positive_int("samples", samples)
    _check_positive_int("batch_size", batch_size, allow_none=True)
    info = METHODS[method]
    if info.resolution != "input" or method == "smoothgrad":
        raise InputError(f"smoothgrad wraps input-resolution attribution methods; {method!r} is not one.")
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)) and not (hasattr(key, "shape") and tuple(key.shape) == (2,)):
        raise InputError("key must be a jax.random key, e.g. jax.random.key(0).")
    if stdev is None:
        if sigma < 0:
            raise InputError(f"sigma must be >= 0; got {sigma}.")
        flat = inputs.x.reshape(inputs.x.shape[0], -1)
        noise = sigma * (flat.max(axis=1) - flat.min(axis=1))
    else:
        if stdev < 0:
            raise InputError(f"stdev must be >= 0; got {stdev}.")
        noise = jnp.full((inputs.x.shape[0],), stdev, inputs.x.dtype)
    try:
        options = tuple(sorted(method_options.items()))
        hash(options)
    except TypeError:
        raise InputError("options of the wrapped method must be hashable (numbers, strings, tuples).") from None
    return _smoothgrad(problem, inputs, key, noise, method=method, kind=kind, samples=int(samples), batch_size=batch_size, options=options)
