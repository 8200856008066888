"""Activation maximisation in pixel space.

Erhan, Bengio, Courville & Vincent (2009), "Visualizing higher-layer features of a deep network";
Simonyan, Vedaldi & Zisserman (2014), "Deep inside convolutional networks: visualising image
classification models and saliency maps" (class models, L2-regularised); regularisers after
Mahendran & Vedaldi (2015/2016), Yosinski et al. (2015) and Olah, Mordvintsev & Schubert (2017).

Objective, for each target ``t`` separately (all targets optimised at once):

    x*_t = argmax_x  score_t(f(x)) − Σ_r R_r(x)

with ``score_t`` the log-softmax of class ``t`` (the seed's negative cross-entropy), its logit, the
mean activation of channel ``t`` of a layer, or any callable, and ``R_r`` the regularizers
(:mod:`xai_jax.featureviz.regularizers`).  Optimised with optax (default Adam), projections
(clipping, blurring) after each update, early stop per target when its probability reaches
``threshold``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Unpack

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import InputError, TargetError
from ..core.model import Forward, Model, adapt_model, make_forward
from ..core.problem import output_struct
from ..trace.layers import layer_info
from . import engine
from .options import Optimization, OptimizationSettings, Run, resolve

__all__ = ["DEFAULTS", "Visualization", "activation_maximization"]

FeatureTarget = int | Sequence[int] | jax.Array | np.ndarray | Callable[[Any], jax.Array]


class Visualization(NamedTuple):
    """What activation maximisation returns (a pytree; ``T`` = number of targets).

    Attributes:
      images: ``(T, H, W, C)`` the visualizations (in code space: the generator's images, mapped
        to the classifier's range).
      scores: ``(T,)`` the objective (log-probability, logit, channel mean...) of each returned image,
        re-computed on exactly that image (no jitter).
      probabilities: ``(T,)`` softmax probability of the target class on the returned image (class
        targets; ``None`` otherwise).
      steps: ``(T,)`` updates applied to each target (fewer than ``steps`` after an early stop).
      score_history: ``(steps, T)`` the score before each update (with transforms: of the transformed
        image); NaN for the steps after a target stopped early.
      probability_history: ``(steps, T)`` likewise for the probability (class targets; else ``None``).
      codes: ``(T, d)`` the optimised latent codes (code space only; else ``None``).
    """

    images: jax.Array
    scores: jax.Array
    probabilities: jax.Array | None
    steps: jax.Array
    score_history: jax.Array
    probability_history: jax.Array | None
    codes: jax.Array | None = None


class TargetPlan(NamedTuple):
    kind: str
    indices: jax.Array | None
    num_targets: int
    probe: tuple[tuple[int, ...], str] | None
    target_fn: Callable[[Any], jax.Array] | None


def plan_targets(
    forward: Forward,
    variables: Any,
    kwargs: Mapping[str, Any],
    example: jax.Array,
    target: Any,
    layer: str | None,
    num_images: int,
) -> TargetPlan:
    """Validate ``target`` (and ``layer``) against the model on a batch of one example image."""
    out = output_struct(forward, variables, example, kwargs)
    probe = None
    if layer is not None:
        info = layer_info(forward, variables, example, kwargs, layer)
        probe = (tuple(info.shape), str(info.dtype))
    if callable(target) and not isinstance(target, (jax.Array, np.ndarray)):
        # the callable sees the whole batch of num_images images (so image t may target unit t)
        if probe is not None:
            argument = jax.ShapeDtypeStruct((num_images, *probe[0][1:]), probe[1])
        else:
            batch = jax.ShapeDtypeStruct((num_images, *example.shape[1:]), example.dtype)
            argument = jax.eval_shape(lambda v, x, k: forward(v, x, k), variables, batch, kwargs)
        try:
            value = jax.eval_shape(target, argument)
        except Exception as err:
            raise TargetError(
                f"the callable target failed on the {'layer activation' if layer else 'model outputs'} "
                f"({type(err).__name__}: {err})."
            ) from err
        if not hasattr(value, "shape") or tuple(value.shape) != (num_images,):
            raise TargetError(
                f"a callable target must return one scalar per image, shape (B,) (here B = num_images = {num_images}); "
                f"got {getattr(value, 'shape', type(value).__name__)}."
            )
        return TargetPlan("callable", None, num_images, probe, target)
    if isinstance(target, (bool, np.bool_)) or target is None:
        raise TargetError(
            "target must be a class index, a sequence of indices (one visualization each; channels "
            "when layer= is given), or a callable; got " + repr(target) + "."
        )
    indices = np.atleast_1d(np.asarray(target))
    if indices.ndim != 1 or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise TargetError(f"target indices must be a non-empty 1-D sequence of ints; got {target!r}.")
    if layer is None:
        if not hasattr(out, "shape") or len(out.shape) != 2:
            raise TargetError(
                f"class targets need model outputs of shape (B, classes); "
                f"got {getattr(out, 'shape', type(out).__name__)}. "
                "Pass a callable target, or layer= with channel indices."
            )
        size, what, kind = int(out.shape[1]), "classes", "class"
    elif probe is not None:  # a layer was given, so it was probed
        size, what, kind = int(probe[0][-1]), f"channels in layer {layer!r} (output shape {probe[0][1:]})", "channel"
    else:
        raise AssertionError(f"layer {layer!r} was not probed")
    bad = indices[(indices < 0) | (indices >= size)]
    if bad.size:
        raise TargetError(f"target {bad.tolist()[:8]} out of range: there are {size} {what} (valid 0..{size - 1}).")
    return TargetPlan(kind, jnp.asarray(indices, jnp.int32), int(indices.size), probe, None)


def _image_shape(model: Model, shape: Sequence[int] | None, init: Any, count: int) -> tuple[int, ...]:
    """One input's shape: ``shape``, else the model's declared ``input_shape``, else ``init``'s shape
    (``(T, *shape)`` when its leading axis is the number of targets, else ``shape`` itself)."""
    declared = getattr(model, "input_shape", None)  # a Linen class's ClassVar, an NNX model's attribute
    if shape is not None:
        shape = tuple(int(s) for s in shape)
    elif declared is not None:
        shape = tuple(declared)
    elif not isinstance(init, str):
        init_shape = tuple(np.shape(init))
        shape = init_shape[1:] if len(init_shape) >= 2 and init_shape[0] == count else init_shape
    else:
        raise InputError(
            "pass shape=(H, W, C): the shape of one input image (this model does not declare input_shape)."
        )
    if not shape or any(s < 1 for s in shape):
        raise InputError(f"shape must be the shape of one input without the batch axis, e.g. (28, 28, 1); got {shape}.")
    return shape


def _target_count(target: Any, num_images: int) -> int:
    if callable(target) and not isinstance(target, (jax.Array, np.ndarray)):
        return int(num_images)
    try:
        return int(np.atleast_1d(np.asarray(target)).size)
    except Exception:
        return 1


#: The defaults of :func:`activation_maximization` (fields of an ``Optimization`` left at ``None``).
DEFAULTS = Optimization(
    steps=200,
    learning_rate=0.05,
    regularizers=(),
    init="noise",
    init_scale=0.1,
    class_score="log_softmax",
    num_images=1,
    progress=False,
)


def activation_maximization(
    model: Model,
    variables: Any,
    target: FeatureTarget,
    *,
    shape: Sequence[int] | None = None,
    layer: str | None = None,
    optimization: Optimization | None = None,
    key: jax.Array | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    **settings: Unpack[OptimizationSettings],
) -> Visualization:
    """Activation maximisation in pixel space: the input that maximises a target, for many targets at once.

    Erhan et al. (2009); Simonyan et al. (2014).  For each target ``t`` solves
    ``max_x score_t(f(x)) − Σ R(x)`` by gradient ascent (optax, default Adam), all targets in one
    jitted ``lax.scan`` vmapped over the targets.

    Example::

        run = Optimization(steps=60, regularizers=[Clip(0, 1)], threshold=0.99)
        result = activation_maximization(model, variables, range(10), optimization=run, key=jax.random.key(0))
        # the same call with keywords:
        result = activation_maximization(model, variables, range(10), steps=60, regularizers=[Clip(0, 1)],
                                         threshold=0.99, key=jax.random.key(0))

    Args:
      model: an unbound Linen module (or ``f(variables, x)`` when no ``layer`` is needed).
      variables: its variables.
      target: a class index or a sequence of them (``range(10)``: one image per class); with
        ``layer=``, channel indices of that layer (objective: the channel's mean activation); or a
        callable ``outputs -> (B,)`` (``activation -> (B,)`` with ``layer=``) on the batch of
        ``num_images`` images, one scalar per image (so image ``t`` may target its own unit, e.g.
        ``lambda a: a[jnp.arange(10), 7, 7, jnp.arange(10)]``: ten centre neurons at once).
      shape: one input's shape, e.g. ``(28, 28, 1)`` (default: the model's declared ``input_shape``,
        else the shape of ``init``).
      layer: a layer name (see ``xj.layers``) for channel targets.
      optimization: how to optimise (:class:`~xai_jax.featureviz.Optimization`): ``steps`` (200),
        ``learning_rate`` (0.05, Adam) or ``optimizer`` (any optax transformation), ``regularizers``
        (e.g. ``[L2(5e-3), TotalVariation(0.05), Jitter(1), Clip(0, 1)]``: penalties act on the image,
        transforms on what the model sees, projections after each update), ``init`` (``"noise"``:
        ``init_scale · N(0, 1)`` with ``init_scale`` 0.1; ``"zeros"``; or images ``(H, W, C)`` /
        ``(T, H, W, C)``, e.g. the class means), ``threshold`` (stop each class target once its
        probability reaches it; the returned image is the first that did), ``class_score``
        (``"log_softmax"`` or ``"logit"``), ``num_images`` (starts per callable target), ``chunk``,
        ``progress``.
      key: PRNG key for the initial noise and random transforms (required when either is used).
      model_kwargs: extra keyword arguments of the model's ``__call__``.
      **settings: any field of :class:`~xai_jax.featureviz.Optimization` as a keyword
        (``steps=60, threshold=0.99``), applied on top of ``optimization``.

    Returns:
      :class:`Visualization` (``images`` ``(T, H, W, C)``, ``scores``, ``probabilities``, ``steps`` ...).

    Raises:
      InputError: an unknown or invalid setting (``steps < 1``, a NaN learning rate or initial image,
        a bad ``shape``/``init``), a random setting without ``key``, a threshold without class targets.
      LayerNotFoundError: unknown ``layer`` (the message lists close names).
      TargetError: class or channel index out of range, a malformed callable target.
    """
    run = resolve(optimization, settings, DEFAULTS, "activation_maximization")
    spec, data, params = _pixel_problem(run, model, variables, target, shape, layer, key, model_kwargs)
    result = engine.optimize(spec, data, params, run.steps, progress=run.progress)
    return to_visualization(result, spec.kind, codes=False)


def pixel_problem(
    model: Model,
    variables: Any,
    target: FeatureTarget,
    *,
    shape: Sequence[int] | None = None,
    layer: str | None = None,
    optimization: Optimization | None = None,
    key: jax.Array | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    **settings: Unpack[OptimizationSettings],
) -> tuple[engine.Spec, engine.Data, jax.Array]:
    """Validated ``(spec, data, initial variables)`` of a pixel-space AM call (the loop is separate,
    so tests can run the same update in a plain Python loop).  Takes the arguments of
    :func:`activation_maximization`."""
    run = resolve(optimization, settings, DEFAULTS, "activation_maximization")
    return _pixel_problem(run, model, variables, target, shape, layer, key, model_kwargs)


def _pixel_problem(
    run: Run,
    model: Model,
    variables: Any,
    target: FeatureTarget,
    shape: Sequence[int] | None,
    layer: str | None,
    key: jax.Array | None,
    model_kwargs: Mapping[str, Any] | None,
) -> tuple[engine.Spec, engine.Data, jax.Array]:
    model, variables = adapt_model(model, variables)
    forward, kwargs = make_forward(model, model_kwargs)
    image_shape = _image_shape(model, shape, run.init, _target_count(target, run.num_images))
    example = jnp.zeros((1, *image_shape), jnp.float32)
    plan = plan_targets(forward, variables, kwargs, example, target, layer, run.num_images)
    if any(r.needs_index for r in run.regularizers) and plan.kind not in ("class", "channel"):
        raise InputError("ClassMeanDistance needs class targets (it picks the mean image of each target's class).")
    random_init = isinstance(run.init, str) and run.init == "noise"
    key = engine.check_key(
        key, random_init or any(r.has_transform for r in run.regularizers), "init='noise' or a transform regularizer"
    )
    init_key, step_key = jax.random.split(key)
    params = engine.initial_params(run.init, image_shape, plan.num_targets, init_key, run.init_scale, "pixel-space AM")
    spec = problem_spec(run, plan, forward=forward, layer=layer)
    data = engine.Data(
        variables=variables,
        kwargs=kwargs,
        gen_variables=None,
        gen_kwargs=None,
        indices=plan.indices,
        reference=None,
        regularizers=run.regularizers,
        code_regularizers=(),
        key=step_key,
        threshold=engine.threshold_setting(run.threshold, plan.kind)[1],
        steps=jnp.asarray(run.steps, jnp.int32),
    )
    return spec, data, params


def problem_spec(run: Run, plan: TargetPlan, **fields: Any) -> engine.Spec:
    """The static half of an AM problem (pixel or code space) from its settings and targets;
    ``fields`` are the remaining :class:`~xai_jax.featureviz.engine.Spec` fields (forward, generator...)."""
    use_threshold, _ = engine.threshold_setting(run.threshold, plan.kind)
    return engine.Spec(
        kind=plan.kind,
        probe=plan.probe,
        truncate=fields.get("layer") is not None,
        target_fn=plan.target_fn,
        class_score=run.class_score,
        optimizer=run.optimizer,
        use_threshold=use_threshold,
        chunk=engine.chunk_size(run.chunk, run.steps, run.progress),
        **fields,
    )


def to_visualization(result: engine.Result, kind: str, *, codes: bool) -> Visualization:
    is_class = kind == "class"
    return Visualization(
        images=result.images,
        scores=result.scores,
        probabilities=result.probabilities if is_class else None,
        steps=result.steps,
        score_history=result.score_history,
        probability_history=result.probability_history if is_class else None,
        codes=result.params if codes else None,
    )
