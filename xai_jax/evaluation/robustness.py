"""Robustness: does the explanation stay put when the input barely moves?

These metrics recompute explanations of perturbed inputs, so they take a *method value* instead of
attributions: ``(model, variables, x, target, method, *, key, options)``, where ``method`` is any
callable ``explain(model, variables, x, target) -> attributions`` (``xj.gradient``,
``functools.partial(xj.integrated_gradients, steps=16)``, a registered name...).  The explained class
stays the one of the unperturbed input (``target=None``: its argmax).

Perturbed copies are explained ``batch_size`` copies of the batch at a time: one jitted computation
per chunk (a Python loop over chunks, because XLA:CPU computes convolution gradients inside
``lax.map``/``scan`` several times slower than outside a loop; see docs/design.md §7).  The noise of
draw ``s`` comes from ``fold_in(key, s)``, so the result does not depend on ``batch_size``; each
metric also takes its perturbations directly (``perturbations=``) to replay another implementation's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..core import Inputs, Problem, Target, compiled, prepare
from ..core.errors import InputError
from ..core.model import Model
from . import _common as c

Array = jax.Array

#: Quantus' stabiliser in the Lipschitz quotient (``lipschitz_constant``) and in Continuity.
LIPSCHITZ_EPS = 1e-10
CONTINUITY_EPS = 1e-9


@compiled
def _class_indices(problem: Problem, inputs: Inputs) -> Array | None:
    return problem.class_indices(inputs)


@compiled(static=("method",))
def _explain(problem: Problem, inputs: Inputs, indices: Array | None, *, method: c.StaticMethod) -> Array:
    return c.explain(method, problem, inputs.variables, inputs.x, indices, inputs.kwargs)


def _norm(v: Array, kind: str) -> Array:
    v = c.flat(v)
    return jnp.max(jnp.abs(v), axis=1) if kind == "inf" else jnp.sqrt(jnp.sum(v * v, axis=1))


def _draw(key: Array, sample: Array, shape: tuple[int, ...], noise: str, scale: float) -> Array:
    k = jax.random.fold_in(key, sample)
    if noise == "uniform":
        return jax.random.uniform(k, shape, jnp.float32, -scale, scale)
    return scale * jax.random.normal(k, shape, jnp.float32)


@compiled(static=("method", "noise", "scale", "quotient", "norm", "relative", "normalise_by", "absolute"))
def _noise_chunk(
    problem: Problem,
    inputs: Inputs,
    indices: Array | None,
    a0: Array,
    samples: Array,
    deltas: Array | None,
    key: Array | None,
    *,
    method: c.StaticMethod,
    noise: str,
    scale: float,
    quotient: str,
    norm: str,
    relative: bool,
    normalise_by: str | None,
    absolute: bool,
) -> Array:
    """``(chunk, B)`` values for the draws ``samples`` (or the given ``deltas``)."""
    x = inputs.x
    if deltas is None:
        assert key is not None  # _noise_values checked key when no perturbations are given
        deltas = jax.vmap(lambda s: _draw(key, s, x.shape, noise, scale))(samples)
    xs = x[None] + deltas.astype(x.dtype)
    k, b = xs.shape[:2]
    a = c.explain_expanded(method, problem, inputs, xs, indices)
    a = c.preprocess(a.reshape(k * b, *a.shape[2:]), absolute=absolute, normalise_by=normalise_by)
    change = jnp.broadcast_to(a0, (k, *a0.shape)).reshape(a.shape) - a
    if quotient == "sensitivity":
        value = _norm(change, norm)
        if relative:
            size = jnp.tile(_norm(a0, norm), k)
            value = value / jnp.where(size == 0, 1.0, size)  # Captum: a zero map divides by 1
    else:  # lipschitz: ‖Φ(x) − Φ(x')‖₂ / (‖x − x'‖₂ + ε)
        value = _norm(change, "fro") / (_norm(deltas.reshape(k * b, *x.shape[1:]), "fro") + LIPSCHITZ_EPS)
    return value.reshape(k, b)


def _prepare_method_metric(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    method: Any,
    metric: str,
    attributions: Any,
    model_kwargs: Mapping[str, Any] | None,
    *,
    absolute: bool,
    normalise_by: str | None,
) -> tuple[Problem, Inputs, c.StaticMethod, Array | None, Array]:
    explain_with = c.resolve_method(method, metric)
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    c.check_choice("normalise", normalise_by, c.NORMALISATIONS)
    indices = _class_indices(problem, inputs)
    if attributions is None:
        a0 = _explain(problem, inputs, indices, method=explain_with)
    else:
        a0 = c.check_attributions(attributions, inputs.x)
    return problem, inputs, explain_with, indices, c.preprocess(a0, absolute=absolute, normalise_by=normalise_by)


def _noise_values(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    method: Any,
    metric: str,
    *,
    key: Array | None,
    samples: int,
    noise: str,
    scale: float,
    quotient: str,
    norm: str,
    relative: bool,
    normalise_by: str | None,
    absolute: bool,
    perturbations: Any,
    attributions: Any,
    batch_size: int | None,
    model_kwargs: Mapping[str, Any] | None,
) -> Array:
    """``(samples, B)`` sensitivity or Lipschitz quotients of every draw."""
    problem, inputs, explain_with, indices, a0 = _prepare_method_metric(
        model,
        variables,
        x,
        target,
        method,
        metric,
        attributions,
        model_kwargs,
        absolute=absolute,
        normalise_by=normalise_by,
    )
    n = c.check_positive_int("samples", samples)
    c.check_choice("norm", norm, ("fro", "inf"))
    scale = c.check_non_negative("radius" if noise == "uniform" else "std", scale)
    if perturbations is not None:
        deltas = c.check_draws(
            "perturbations", perturbations, (n, *inputs.x.shape), "one additive perturbation per draw"
        )
    else:
        deltas = None
        c.check_key(key, True, metric)
    b = inputs.x.shape[0]
    size = (
        max(1, c.PERTURBED_IMAGES_PER_PASS // b)
        if batch_size is None
        else c.check_positive_int("batch_size", batch_size)
    )
    parts = []
    for start, stop in c.chunks(n, size):
        parts.append(
            _noise_chunk(
                problem,
                inputs,
                indices,
                a0,
                jnp.arange(start, stop),
                None if deltas is None else deltas[start:stop],
                key,
                method=explain_with,
                noise=noise,
                scale=scale,
                quotient=quotient,
                norm=norm,
                relative=relative,
                normalise_by=normalise_by,
                absolute=absolute,
            )
        )
    return jnp.concatenate(parts, axis=0)


def max_sensitivity(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    method: Any,
    *,
    key: Array | None = None,
    samples: int = 200,
    radius: float = 0.2,
    norm: str = "fro",
    relative: bool = True,
    normalise: str | None = None,
    absolute: bool = False,
    perturbations: Any = None,
    attributions: Any = None,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Array:
    """Max-sensitivity (Yeh et al. 2019, "On the (In)fidelity and Sensitivity of Explanations", Eq. 3)::

        SENS_MAX(Φ, f, x, r) = max_{‖δ‖∞ ≤ r} ‖Φ(x + δ) − Φ(x)‖ / ‖Φ(x)‖

    estimated over ``samples`` uniform draws δ ~ U[−r, r]^D, per sample ``(B,)``.  Yeh's definition
    has no denominator; Quantus and Captum both divide by ‖Φ(x)‖ (``relative=True``, the default here:
    it makes methods of different scales comparable; a zero map divides by 1, as in Captum).
    ``norm``: ``"fro"`` (Frobenius/L2 of the flattened map) or ``"inf"``.  Quantus defaults: 200
    samples, r = 0.2; Captum's ``sensitivity_max``: 10 samples, r = 0.02 (presets ``"quantus"`` and
    ``"captum"``).  ``perturbations (samples, B, ...)`` injects δ; ``attributions`` reuses Φ(x).
    """
    values = _noise_values(
        model,
        variables,
        x,
        target,
        method,
        "max_sensitivity",
        key=key,
        samples=samples,
        noise="uniform",
        scale=radius,
        quotient="sensitivity",
        norm=norm,
        relative=bool(relative),
        normalise_by=normalise,
        absolute=bool(absolute),
        perturbations=perturbations,
        attributions=attributions,
        batch_size=batch_size,
        model_kwargs=model_kwargs,
    )
    return jnp.max(values, axis=0)


def avg_sensitivity(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    method: Any,
    *,
    key: Array | None = None,
    samples: int = 200,
    radius: float = 0.2,
    norm: str = "fro",
    relative: bool = True,
    normalise: str | None = None,
    absolute: bool = False,
    perturbations: Any = None,
    attributions: Any = None,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Array:
    """Average sensitivity (Yeh et al. 2019, Eq. 4; Bhatt et al. 2020)::

        SENS_AVG(Φ, f, x, r) = E_{δ ~ U[−r, r]^D} ‖Φ(x + δ) − Φ(x)‖ / ‖Φ(x)‖

    the mean over ``samples`` draws of the quantity :func:`max_sensitivity` maximises (same options)."""
    values = _noise_values(
        model,
        variables,
        x,
        target,
        method,
        "avg_sensitivity",
        key=key,
        samples=samples,
        noise="uniform",
        scale=radius,
        quotient="sensitivity",
        norm=norm,
        relative=bool(relative),
        normalise_by=normalise,
        absolute=bool(absolute),
        perturbations=perturbations,
        attributions=attributions,
        batch_size=batch_size,
        model_kwargs=model_kwargs,
    )
    return jnp.mean(values, axis=0)


def local_lipschitz_estimate(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    method: Any,
    *,
    key: Array | None = None,
    samples: int = 200,
    std: float = 0.1,
    normalise: str | None = "max",
    absolute: bool = False,
    perturbations: Any = None,
    attributions: Any = None,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Array:
    """Local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018, "On the Robustness of Interpretability
    Methods", Eq. 4)::

        L(x) = max_{x' ∈ N(x)} ‖Φ(x) − Φ(x')‖₂ / (‖x − x'‖₂ + 1e-10)

    with x' = x + δ, δ ~ N(0, std²) over ``samples`` draws (the paper maximises over a ball; sampling is
    Quantus' estimator), per sample ``(B,)``.  Quantus defaults: 200 samples, std 0.1, maps normalised
    by their maximum (per sample here; Quantus divides by the batch's maximum).
    """
    values = _noise_values(
        model,
        variables,
        x,
        target,
        method,
        "local_lipschitz_estimate",
        key=key,
        samples=samples,
        noise="gaussian",
        scale=std,
        quotient="lipschitz",
        norm="fro",
        relative=False,
        normalise_by=normalise,
        absolute=bool(absolute),
        perturbations=perturbations,
        attributions=attributions,
        batch_size=batch_size,
        model_kwargs=model_kwargs,
    )
    return jnp.max(values, axis=0)


@compiled(static=("method", "baseline", "normalise_by", "absolute"))
def _continuity_chunk(
    problem: Problem,
    inputs: Inputs,
    indices: Array | None,
    a0: Array,
    shifts: Array,
    baseline_value: Array,
    *,
    method: c.StaticMethod,
    baseline: c.Baseline,
    normalise_by: str | None,
    absolute: bool,
) -> Array:
    from .imputation import translate_horizontally

    x = inputs.x
    fill = c.fill_values(x, baseline, baseline_value, None)
    xs = jax.vmap(lambda s: translate_horizontally(x, s, fill))(shifts)
    k, b = xs.shape[:2]
    a = c.explain_expanded(method, problem, inputs, xs, indices)
    a = c.preprocess(a.reshape(k * b, *a.shape[2:]), absolute=absolute, normalise_by=normalise_by)
    change = jnp.broadcast_to(a0, (k, *a0.shape)).reshape(a.shape) - a
    moved = (jnp.broadcast_to(x, xs.shape) - xs).reshape(k * b, -1)
    distance = jnp.sqrt(jnp.sum(moved * moved, axis=1))
    value = jnp.sum(jnp.abs(c.flat(change)), axis=1) / (distance + CONTINUITY_EPS)
    # x' = x is not a pair of distinct inputs: rounding noise between two explanations of the same
    # image divided by 1e-9 would dominate the maximum.
    return jnp.where(distance > 0, value, 0.0).reshape(k, b)


def continuity(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    method: Any,
    *,
    steps: int = 28,
    baseline: Any = "black",
    normalise: str | None = "max",
    absolute: bool = True,
    attributions: Any = None,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Array:
    """Continuity (Montavon, Samek & Müller 2018, "Methods for Interpreting and Understanding Deep
    Neural Networks", §5.2: explanation continuity, max ‖R(x) − R(x')‖₁ / ‖x − x'‖₂) over horizontal
    translations of the image::

        C(x) = max_t ‖Φ(x) − Φ(x_t)‖₁ / (‖x − x_t‖₂ + 1e-9)

    with x_t the image shifted by t pixels (uncovered columns set to ``baseline``, the sample's
    minimum), t = −W + k·⌊(2W + 1)/steps⌋ for k = 1..steps (Quantus 0.6's sequence after its PR #357).
    Per sample ``(B,)``; lower is more continuous.  Quantus defaults: 28 steps, absolute maps
    normalised by their maximum (per sample here).

    Only translations that change the image count (the paper's x ≠ x'): with 28 steps the sequence
    contains t = 0, where Quantus divides the float-rounding difference between two explanations of
    the same image by 1e-9 (measured on a small CNN twin: ~2.6e-5 / 1e-9 ≈ 2.6e4, which then *is*
    its score); here such a step contributes 0.
    """
    problem, inputs, explain_with, indices, a0 = _prepare_method_metric(
        model,
        variables,
        x,
        target,
        method,
        "continuity",
        attributions,
        model_kwargs,
        absolute=bool(absolute),
        normalise_by=normalise,
    )
    if inputs.x.ndim != 4:
        raise InputError(f"continuity translates NHWC images; x has shape {tuple(inputs.x.shape)}.")
    n = c.check_positive_int("steps", steps)
    w = inputs.x.shape[2]
    step = (2 * w + 1) // n
    if step < 1:
        raise InputError(f"steps {n} is more than the {2 * w + 1} possible translations of width {w}.")
    shifts = jnp.asarray([-w + step * (k + 1) for k in range(n)], jnp.int32)
    base, value = c.split_baseline(baseline, inputs.x)
    b = inputs.x.shape[0]
    size = (
        max(1, c.PERTURBED_IMAGES_PER_PASS // b)
        if batch_size is None
        else c.check_positive_int("batch_size", batch_size)
    )
    parts = [
        _continuity_chunk(
            problem,
            inputs,
            indices,
            a0,
            shifts[start:stop],
            value,
            method=explain_with,
            baseline=base,
            normalise_by=normalise,
            absolute=bool(absolute),
        )
        for start, stop in c.chunks(n, size)
    ]
    return jnp.max(jnp.concatenate(parts, axis=0), axis=0)
