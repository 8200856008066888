"""SmoothGrad, SmoothGrad², VarGrad: noise averaging around *any* attribution method.

[smilkov2017]_: ``SG(x) = (1/n) Σ_k A(x + ε_k)``, ``ε_k ~ N(0, σ²)`` with ``σ = sigma · (max(x) - min(x))``
per sample (the paper's noise level).  [hooker2019]_ "SmoothGrad-Squared" ``(1/n) Σ_k A(x+ε_k)²`` and
[adebayo2018]_ "VarGrad" ``(1/n) Σ_k A(x+ε_k)² - SG(x)²`` (Captum's ``NoiseTunnel`` ``nt_type``
"smoothgrad", "smoothgrad_sq", "vargrad").  The classes are fixed at ``x`` (the predicted class does
not change from one noisy sample to the next).  Samples are vmapped in chunks of ``batch_size``; the
noise comes from ``jax.random.split(key, samples)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..core import (
    Choice,
    ChunkSize,
    InputMethod,
    Inputs,
    Key,
    MethodCall,
    NonNegativeFloat,
    PositiveInt,
    Problem,
    chunked_sum,
    fix_target,
    method,
)
from ..trace.tokens import on_embedding

KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")


@method("smoothgrad", family="noise", signed=True, report_options={"samples": 16}, tokens=on_embedding)
def smoothgrad(
    problem: Problem,
    inputs: Inputs,
    *,
    key: Key,
    method: InputMethod = "gradient",
    kind: Choice(*KINDS) = "smoothgrad",  # type: ignore[valid-type]
    samples: PositiveInt = 50,
    sigma: NonNegativeFloat = 0.15,
    stdev: NonNegativeFloat | None = None,
    batch_size: ChunkSize = "auto",
) -> jax.Array:
    """Average an attribution ``method`` over Gaussian-perturbed copies of ``x`` ([smilkov2017]_).

    Args:
      key: ``jax.random`` key for the noise (required: no hidden randomness).
      method: the method to smooth: a name (``"guided_backprop"``), a method (``xj.deconvnet``) or a
        method with options, ``functools.partial(xj.integrated_gradients, steps=16, method="riemann_left")``.
        Any input-resolution method works, including ones that take a key (``lrp``, ``deeplift``...).
      kind: ``"smoothgrad"`` (mean), ``"smoothgrad_sq"`` (mean of squares) or ``"vargrad"`` (variance).
      samples: number of noisy samples ``n``.
      sigma: noise level relative to each sample's value range, ``σ = sigma · (max x - min x)``.
      stdev: absolute noise standard deviation; overrides ``sigma`` (Captum's ``stdevs``).
      batch_size: noisy samples evaluated at once (``"auto"``: from the memory budget; ``None``: all).

    Example:
      >>> from functools import partial
      >>> ig = partial(xj.integrated_gradients, steps=8, method="riemann_middle")
      >>> sg = xj.smoothgrad(model, variables, x, key=jax.random.key(0), method=ig, samples=4)
      >>> sg.shape == x.shape
      True
    """
    wrapped: MethodCall = method
    problem, inputs = fix_target(problem, inputs)
    x = inputs.x
    if stdev is None:
        flat = x.reshape(x.shape[0], -1)
        scale = sigma * (flat.max(axis=1) - flat.min(axis=1))
    else:
        scale = jnp.full((x.shape[0],), stdev, x.dtype)
    scale = scale.reshape(-1, *[1] * (x.ndim - 1)).astype(x.dtype)

    def moments(sample_key: jax.Array) -> tuple[jax.Array, jax.Array]:
        noisy = x + scale * jax.random.normal(sample_key, x.shape, x.dtype)
        attribution = wrapped.apply(problem, inputs._replace(x=noisy))
        return attribution, attribution * attribution

    total, total_sq = chunked_sum(moments, jax.random.split(key, samples), chunk_size=batch_size)
    mean, mean_sq = total / samples, total_sq / samples
    if kind == "smoothgrad":
        return mean
    if kind == "smoothgrad_sq":
        return mean_sq
    return mean_sq - mean * mean
