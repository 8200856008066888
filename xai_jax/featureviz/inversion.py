"""Feature inversion: reconstruct an input from a layer's representation.

Mahendran & Vedaldi (2015), "Understanding deep image representations by inverting them" (CVPR),
Eq. 1-5.  For each image ``x₀`` of the batch, with ``Φ₀ = Φ(x₀)`` the layer's output:

    x* = argmin_x  ‖Φ(x) − Φ₀‖² / ‖Φ₀‖²  +  λ_α ‖x‖_α^α  +  λ_TV TV^β(x)

The α-norm (α = 6) keeps the image in a bounded range, the total variation (β = 2) favours
piecewise-smooth images; both are :mod:`~xai_jax.featureviz.regularizers` pieces, so any other prior
(``Clip``, ``Jitter``, ``Blur``) can be added.  All images of the batch are inverted at once, in one
jitted ``lax.scan`` of optax updates (default Adam; M&V used momentum SGD).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Unpack

import jax
import jax.numpy as jnp

from ..core.errors import InputError
from ..core.model import Model, adapt_model, make_forward
from ..core.problem import check_input
from ..trace.layers import layer_info
from . import engine
from .options import Optimization, OptimizationSettings, resolve
from .regularizers import AlphaNorm, Regularizer, TotalVariation

__all__ = ["DEFAULTS", "Inversion", "default_priors", "invert_features"]


class Inversion(NamedTuple):
    """What :func:`invert_features` returns.

    Attributes:
      images: ``(B, ...)`` the reconstructions.
      errors: ``(B,)`` relative feature error ``‖Φ(x*) − Φ₀‖² / ‖Φ₀‖²`` of each reconstruction.
      steps: ``(B,)`` updates applied.
      error_history: ``(steps, B)`` the relative error before each update.
    """

    images: jax.Array
    errors: jax.Array
    steps: jax.Array
    error_history: jax.Array


def default_priors(tv_weight: float = 1e-3, alpha_weight: float = 1e-4) -> tuple[Regularizer, ...]:
    """Mahendran & Vedaldi's two priors: ``TotalVariation(tv_weight, β=2)`` and ``AlphaNorm(alpha_weight, α=6)``."""
    return (TotalVariation(tv_weight, beta=2.0), AlphaNorm(alpha_weight, alpha=6.0))


#: The defaults of :func:`invert_features`: 300 steps of Adam(0.05) from a zero image, with
#: Mahendran & Vedaldi's priors.
DEFAULTS = Optimization(
    steps=300, learning_rate=0.05, regularizers=default_priors(), init="zeros", init_scale=0.1, progress=False
)
#: Fields that have no meaning in inversion (no class targets, one reconstruction per image).
NOT_APPLICABLE = ("threshold", "class_score", "num_images")


def invert_features(
    model: Model,
    variables: Any,
    x: Any,
    *,
    layer: str,
    optimization: Optimization | None = None,
    key: jax.Array | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    **settings: Unpack[OptimizationSettings],
) -> Inversion:
    """Reconstruct ``x`` from the output of ``layer`` (Mahendran & Vedaldi 2015).

    Minimises ``‖Φ(x) − Φ(x₀)‖² / ‖Φ(x₀)‖² + Σ R(x)`` for every image of the batch at once.

    Args:
      model: an unbound Linen module.
      variables: its variables.
      x: the batch to invert ``(B, ...)``.
      layer: the layer whose representation is inverted (the model runs only up to it).
      optimization: how to optimise (:class:`~xai_jax.featureviz.Optimization`): ``steps`` (300),
        ``learning_rate`` (0.05, Adam) or ``optimizer``, ``chunk``, ``progress`` as in activation
        maximisation; ``regularizers``: the priors, default :func:`default_priors` (TV with β = 2,
        weight 1e-3; α-norm with α = 6, weight 1e-4; add ``Clip(low, high)`` to stay in the data
        range); ``init``: ``"zeros"`` (default), ``"noise"`` (``init_scale · N(0, 1)``, needs ``key``)
        or an array.  ``threshold``, ``class_score`` and ``num_images`` do not apply.
      key: PRNG key for noise init and random transforms.
      model_kwargs: extra keyword arguments of the model.
      **settings: any field of :class:`~xai_jax.featureviz.Optimization` as a keyword, applied on top
        of ``optimization``.

    Returns:
      :class:`Inversion` (``images``, ``errors``, ``steps``, ``error_history``).

    Raises:
      InputError: an unknown, invalid or inapplicable setting, a layer that is zero for every image,
        a random setting without ``key``.
      LayerNotFoundError: unknown ``layer``.
    """
    run = resolve(optimization, settings, DEFAULTS, "invert_features", not_applicable=NOT_APPLICABLE)
    model, variables = adapt_model(model, variables)
    forward, kwargs = make_forward(model, model_kwargs)
    forward.module("invert_features")
    x = check_input(x).astype(jnp.float32)
    info = layer_info(forward, variables, x, kwargs, layer)
    reference = engine.truncated_forward(forward, layer)(variables, x, kwargs).astype(jnp.float32)
    if not bool(jnp.any(reference != 0)):
        raise InputError(f"layer {layer!r} is all zeros for every image: there is nothing to invert.")
    if any(r.needs_index for r in run.regularizers):
        raise InputError("ClassMeanDistance needs class targets; it has no meaning in feature inversion.")
    key = engine.check_key(
        key,
        (isinstance(run.init, str) and run.init == "noise") or any(r.has_transform for r in run.regularizers),
        "init='noise' or a transform regularizer",
    )
    init_key, step_key = jax.random.split(key)
    params = engine.initial_params(
        run.init, tuple(x.shape[1:]), x.shape[0], init_key, run.init_scale, "feature inversion"
    )
    spec = engine.Spec(
        forward=forward,
        kind="features",
        layer=layer,
        probe=(tuple(info.shape), str(info.dtype)),
        truncate=True,
        optimizer=run.optimizer,
        chunk=engine.chunk_size(run.chunk, run.steps, run.progress),
    )
    data = engine.Data(
        variables=variables,
        kwargs=kwargs,
        gen_variables=None,
        gen_kwargs=None,
        indices=None,
        reference=reference,
        regularizers=run.regularizers,
        code_regularizers=(),
        key=step_key,
        threshold=jnp.asarray(jnp.inf, jnp.float32),
        steps=jnp.asarray(run.steps, jnp.int32),
    )
    result = engine.optimize(spec, data, params, run.steps, progress=run.progress)
    return Inversion(result.images, -result.scores, result.steps, -result.score_history)
