"""Activation maximisation in the code space of a generative model.

Nguyen, Dosovitskiy, Yosinski, Brox & Clune (2016), "Synthesizing the preferred inputs for neurons
in neural networks via deep generator networks"; Montavon, Samek & Müller (2018), "Methods for
interpreting and understanding deep neural networks", §3.2 ("AM in code space").

Objective, for each target ``t`` (all at once):

    z*_t = argmax_z  score_t(f(m(g(z)))) − Σ_r R_r(m(g(z))) − Σ_s S_s(z),     x*_t = m(g(z*_t))

with ``g`` the generator **in inference mode** (BatchNorm on its running statistics, so an image
depends on its own code only -- the seed ran its DCGAN in train mode on a batch of one), ``m`` the
affine map from the generator's output range to the classifier's input range (the seed fed tanh
images in [−1, 1] to a classifier trained on [0, 1]), ``R`` image regularizers and ``S`` code
regularizers (an L2 prior keeps ``z`` where the generator was trained).  The returned probability is
re-computed on exactly the returned image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Unpack, cast

import jax
import jax.numpy as jnp
import numpy as np

from ..core import checks
from ..core.errors import InputError
from ..core.model import Forward, Model, adapt_model, make_forward
from ..core.problem import output_struct
from . import engine
from .activation_maximization import DEFAULTS as PIXEL_DEFAULTS
from .activation_maximization import FeatureTarget, Visualization, plan_targets, problem_spec, to_visualization
from .options import Optimization, OptimizationSettings, Run, check_regularizers, resolve
from .regularizers import Regularizer

__all__ = ["DEFAULTS", "activation_maximization_codespace", "codespace_problem", "defaults_for"]


#: The defaults of :func:`activation_maximization_codespace`: as in pixel space, but the initial
#: codes are drawn from the generator's prior, N(0, I) (``init_scale`` 1), unless the generator
#: declares another scale (:func:`defaults_for`).
DEFAULTS = dataclasses.replace(PIXEL_DEFAULTS, init_scale=1.0)


def defaults_for(generator: Model) -> Optimization:
    """:data:`DEFAULTS`, with ``init_scale`` set to what the generator declares as ``code_init_scale``
    (an attribute or property; ``None`` or absent: the prior's scale 1).

    A generator whose output switches between modes through a saturating function of its code -- the
    shipped class-coded GANs read their digit from ``softmax(20 · z[:, :10])`` -- has no gradient
    across those switches at typical prior samples, so optimisation must start near the prior's mode
    (:data:`xai_jax.models.mnist.CODE_INIT_SCALE`); the generator knows this, the library cannot.
    An ``init_scale`` given by the caller wins over both."""
    declared = getattr(generator, "code_init_scale", None)
    if declared is None:
        return DEFAULTS
    scale = checks.check_float("code_init_scale (declared by the generator)", declared, minimum=0.0)
    return dataclasses.replace(DEFAULTS, init_scale=scale)


_BATCH_STATS_HINT = (
    " It seems to need training-mode state (BatchNorm batch statistics): run the generator in inference mode "
    "(e.g. generator_kwargs={'train': False}); code-space AM must not let one image's statistics depend on the others."
)


def _latent_shape(generator: Model, latent_shape: Sequence[int] | int | None, init: Any) -> tuple[int, ...]:
    """One code's shape: ``latent_shape``, else ``init``'s last axis, else what the generator declares."""
    if latent_shape is not None:
        shape = (
            (int(latent_shape),) if isinstance(latent_shape, (int, np.integer)) else tuple(int(s) for s in latent_shape)
        )
    elif not isinstance(init, str):
        shape = tuple(np.shape(init))[-1:]
    elif (declared := getattr(generator, "input_shape", None)) is not None:  # a Linen ClassVar, an NNX attribute
        shape = tuple(declared)
    elif (latent_dim := getattr(generator, "latent_dim", None)) is not None:
        shape = (int(latent_dim),)
    else:
        raise InputError(
            "pass latent_shape=(d,): the generator does not declare its latent size (input_shape or latent_dim)."
        )
    if not shape or any(s < 1 for s in shape):
        raise InputError(
            f"latent_shape must be the shape of one code without the batch axis, e.g. (100,); got {shape}."
        )
    return shape


def _check_range(name: str, value: Sequence[float] | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        low, high = value
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a pair (low, high); got {value!r}.") from None
    low, high = (
        cast(float, checks.check_float(f"{name} low", low)),
        cast(float, checks.check_float(f"{name} high", high)),
    )
    if not high > low:
        raise InputError(f"{name} must be (low, high) with high > low; got {value}.")
    return low, high


def range_map(
    generator_range: Sequence[float] | None,
    classifier_range: Sequence[float] | None,
) -> tuple[float, float, float, float] | None:
    """``(gen_low, gen_high, clf_low, clf_high)``: the affine map ``m`` from the generator's output
    range to the classifier's input range, or ``None`` (identity) when neither is given."""
    g_range, c_range = (
        _check_range("generator_range", generator_range),
        _check_range("classifier_range", classifier_range),
    )
    if (g_range is None) != (c_range is None):
        raise InputError(
            "give both generator_range and classifier_range (the generator's output range and the "
            "classifier's input range), or neither."
        )
    if g_range is None or c_range is None:
        return None
    return (*g_range, *c_range)


def generated_example(
    gen_forward: Forward, gen_variables: Any, gen_kwargs: Any, code_shape: tuple[int, ...]
) -> jax.Array:
    """A zero image of the generator's output shape for a batch of one code (nothing is run: shapes
    only), or an error saying why the generator cannot serve code-space AM."""
    codes = jax.ShapeDtypeStruct((1, *code_shape), jnp.float32)
    try:
        generated = jax.eval_shape(lambda v, z, k: gen_forward(v, z, k), gen_variables, codes, gen_kwargs)
    except Exception as err:
        hint = _BATCH_STATS_HINT if "mutable" in str(err) or "batch_stats" in str(err) else ""
        raise InputError(
            f"the generator failed on codes of shape {tuple(codes.shape)} ({type(err).__name__}: {err}).{hint}"
        ) from err
    if not hasattr(generated, "shape") or generated.ndim < 2 or generated.shape[0] != 1:
        raise InputError(
            f"the generator must map codes (B, *latent_shape) to images (B, ...); codes of shape {tuple(codes.shape)} "
            f"gave {getattr(generated, 'shape', type(generated).__name__)}."
        )
    return jnp.zeros(generated.shape, jnp.float32)


def check_classifier_takes(forward: Forward, variables: Any, kwargs: Any, example: jax.Array) -> None:
    """The classifier must accept the generator's images as they are."""
    try:
        output_struct(forward, variables, example, kwargs)
    except InputError as err:
        raise InputError(
            f"the classifier cannot take the generator's output: the generator makes images of shape "
            f"{tuple(example.shape[1:])} (batch {tuple(example.shape)}), and the classifier failed on them "
            f"({err.__cause__ or err}). Use a generator whose images have the classifier's input shape."
        ) from err


def code_space_regularizers(
    regularizers: tuple[Regularizer, ...],
    code_regularizers: Any,
    kind: str,
) -> tuple[Regularizer, ...]:
    """The checked code regularizers; image regularizers may penalise or transform the generated
    image but not project it (the image is not the optimised variable)."""
    if any(r.has_projection for r in regularizers):
        raise InputError(
            "image-space projections (Clip, Blur) cannot act in code space, where the image is not the "
            "optimised variable; use code_regularizers (e.g. Clip(-3, 3) on the code) or penalties."
        )
    code_regs = check_regularizers(code_regularizers, "code_regularizers")
    if any(r.has_transform for r in code_regs):
        raise InputError("code_regularizers cannot hold transforms (Jitter acts on images: put it in regularizers).")
    if any(r.needs_index for r in regularizers + code_regs) and kind not in ("class", "channel"):
        raise InputError("ClassMeanDistance needs class targets.")
    return code_regs


def activation_maximization_codespace(
    model: Model,
    variables: Any,
    generator: Model,
    gen_variables: Any,
    target: FeatureTarget,
    *,
    layer: str | None = None,
    latent_shape: Sequence[int] | int | None = None,
    optimization: Optimization | None = None,
    code_regularizers: Sequence[Regularizer] | Regularizer | None = None,
    generator_range: Sequence[float] | None = None,
    classifier_range: Sequence[float] | None = None,
    key: jax.Array | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    generator_kwargs: Mapping[str, Any] | None = None,
    **settings: Unpack[OptimizationSettings],
) -> Visualization:
    """Activation maximisation in a generator's code space (Nguyen et al. 2016; Montavon et al. 2018).

    Optimises one latent code per target so that the generated image maximises the target:
    ``max_z score_t(f(m(g(z)))) − Σ R(image) − Σ S(z)``, all targets in one jitted ``lax.scan``.

    Example::

        run = Optimization(steps=150, learning_rate=0.1, threshold=0.97)
        result = activation_maximization_codespace(classifier, variables, generator, gen_variables, range(10),
                                                   optimization=run, code_regularizers=[L2(1e-2)],
                                                   key=jax.random.key(0))

    Args:
      model: the classifier (Linen module or ``f(variables, x)``).
      variables: the classifier's variables.
      generator: the generator (codes ``(B, *latent_shape)`` → images); it runs in inference mode
        (``generator_kwargs`` are passed to its ``__call__``; the shipped DCGAN's default
        ``train=False`` is inference mode).
      gen_variables: the generator's variables.
      target: class index / indices (one image each), channel indices with ``layer=``, or a callable
        (see :func:`xai_jax.featureviz.activation_maximization`).
      layer: a classifier layer for channel targets.
      latent_shape: one code's shape (default: the generator's ``input_shape`` / ``latent_dim``).
      optimization: how to optimise (:class:`~xai_jax.featureviz.Optimization`), as in pixel space,
        except: ``regularizers`` act on the generated image (penalties such as ``TotalVariation``,
        transforms such as ``Jitter``; projections are not allowed, the image is not the variable),
        and ``init`` is ``"noise"`` (``init_scale · N(0, I)`` with ``init_scale`` 1, the generator's
        prior, unless the generator declares ``code_init_scale``: 0.1 for the shipped class-coded
        GANs, see :func:`defaults_for`), ``"zeros"``, or codes ``(d,)`` / ``(T, d)``.
      code_regularizers: act on the code: ``L2(weight)`` (Gaussian prior), ``Clip(-c, c)``.
      generator_range: the generator's output range ``(low, high)``, e.g. ``(-1, 1)`` for a tanh
        generator; the images are mapped affinely from it to ``classifier_range``.  Give both
        ranges or neither (the shipped generators already output [0, 1]).
      classifier_range: the classifier's input range ``(low, high)``, e.g. ``(0, 1)``.
      key: PRNG key (initial codes, transforms).
      model_kwargs: extra keyword arguments of the classifier.
      generator_kwargs: extra keyword arguments of the generator.
      **settings: any field of :class:`~xai_jax.featureviz.Optimization` as a keyword, applied on top
        of ``optimization``.

    Returns:
      :class:`Visualization` with ``images`` (classifier's range), ``probabilities`` re-scored on
      exactly those images, and ``codes`` ``(T, *latent_shape)``.

    Raises:
      InputError: generator output the classifier cannot take, a generator that needs training-mode
        state, an unknown or invalid setting (``steps < 1``, non-finite numbers), an image-space
        projection, a missing key.
      LayerNotFoundError: an unknown ``layer``, as in pixel-space AM.
      TargetError: targets out of range or of the wrong kind, as in pixel-space AM.
    """
    run = resolve(optimization, settings, defaults_for(generator), "activation_maximization_codespace")
    spec, data, params = _codespace_problem(
        run,
        model,
        variables,
        generator,
        gen_variables,
        target,
        layer=layer,
        latent_shape=latent_shape,
        code_regularizers=code_regularizers,
        generator_range=generator_range,
        classifier_range=classifier_range,
        key=key,
        model_kwargs=model_kwargs,
        generator_kwargs=generator_kwargs,
    )
    result = engine.optimize(spec, data, params, run.steps, progress=run.progress)
    return to_visualization(result, spec.kind, codes=True)


def codespace_problem(
    model: Model,
    variables: Any,
    generator: Model,
    gen_variables: Any,
    target: FeatureTarget,
    *,
    layer: str | None = None,
    latent_shape: Sequence[int] | int | None = None,
    optimization: Optimization | None = None,
    code_regularizers: Sequence[Regularizer] | Regularizer | None = None,
    generator_range: Sequence[float] | None = None,
    classifier_range: Sequence[float] | None = None,
    key: jax.Array | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    generator_kwargs: Mapping[str, Any] | None = None,
    **settings: Unpack[OptimizationSettings],
) -> tuple[engine.Spec, engine.Data, jax.Array]:
    """Validated ``(spec, data, initial codes)`` of a code-space AM call, in named steps: the
    settings, the two models, the generator's output shape and range, the targets, the
    regularizers, the key and the initial codes.  Takes the arguments of
    :func:`activation_maximization_codespace`."""
    run = resolve(optimization, settings, defaults_for(generator), "activation_maximization_codespace")
    return _codespace_problem(
        run,
        model,
        variables,
        generator,
        gen_variables,
        target,
        layer=layer,
        latent_shape=latent_shape,
        code_regularizers=code_regularizers,
        generator_range=generator_range,
        classifier_range=classifier_range,
        key=key,
        model_kwargs=model_kwargs,
        generator_kwargs=generator_kwargs,
    )


def _codespace_problem(
    run: Run,
    model: Model,
    variables: Any,
    generator: Model,
    gen_variables: Any,
    target: FeatureTarget,
    *,
    layer: str | None,
    latent_shape: Sequence[int] | int | None,
    code_regularizers: Any,
    generator_range: Sequence[float] | None,
    classifier_range: Sequence[float] | None,
    key: jax.Array | None,
    model_kwargs: Mapping[str, Any] | None,
    generator_kwargs: Mapping[str, Any] | None,
) -> tuple[engine.Spec, engine.Data, jax.Array]:
    model, variables = adapt_model(model, variables)
    generator, gen_variables = adapt_model(generator, gen_variables)
    forward, kwargs = make_forward(model, model_kwargs)
    gen_forward, gen_kwargs = make_forward(generator, generator_kwargs)
    code_shape = _latent_shape(generator, latent_shape, run.init)
    mapping = range_map(generator_range, classifier_range)
    example = generated_example(gen_forward, gen_variables, gen_kwargs, code_shape)
    check_classifier_takes(forward, variables, kwargs, example)
    plan = plan_targets(forward, variables, kwargs, example, target, layer, run.num_images)
    code_regs = code_space_regularizers(run.regularizers, code_regularizers, plan.kind)
    key = engine.check_key(
        key,
        (isinstance(run.init, str) and run.init == "noise") or any(r.has_transform for r in run.regularizers),
        "init='noise' or a transform regularizer",
    )
    init_key, step_key = jax.random.split(key)
    params = engine.initial_params(run.init, code_shape, plan.num_targets, init_key, run.init_scale, "code-space AM")
    spec = problem_spec(run, plan, forward=forward, layer=layer, generator=gen_forward, range_map=mapping)
    data = engine.Data(
        variables=variables,
        kwargs=kwargs,
        gen_variables=gen_variables,
        gen_kwargs=gen_kwargs,
        indices=plan.indices,
        reference=None,
        regularizers=run.regularizers,
        code_regularizers=code_regs,
        key=step_key,
        threshold=engine.threshold_setting(run.threshold, plan.kind)[1],
        steps=jnp.asarray(run.steps, jnp.int32),
    )
    return spec, data, params
