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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core.errors import InputError, TargetError
from ..core.model import Forward, Model, adapt_model, make_forward
from ..core.problem import output_struct
from ..trace.layers import layer_info
from . import engine
from .regularizers import Regularizer

__all__ = ["Visualization", "activation_maximization"]

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
    count: int
    probe: tuple[tuple[int, ...], str] | None
    target_fn: Callable[[Any], jax.Array] | None


def plan_targets(
    forward: Forward, variables: Any, kwargs: Mapping[str, Any], example: jax.Array, target: Any, layer: str | None,
    num_images: int,
) -> TargetPlan:
    """Validate ``target`` (and ``layer``) against the model on a batch of one example image."""
    if num_images < 1:
        raise InputError(f"num_images must be at least 1; got {num_images}.")
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
            raise TargetError(f"the callable target failed on the {'layer activation' if layer else 'model outputs'} ({type(err).__name__}: {err}).") from err
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
                f"class targets need model outputs of shape (B, classes); got {getattr(out, 'shape', type(out).__name__)}. "
                "Pass a callable target, or layer= with channel indices."
            )
        size, what, kind = int(out.shape[1]), "classes", "class"
    else:
        size, what, kind = int(probe[0][-1]), f"channels in layer {layer!r} (output shape {probe[0][1:]})", "channel"
    bad = indices[(indices < 0) | (indices >= size)]
    if bad.size:
        raise TargetError(f"target {bad.tolist()[:8]} out of range: there are {size} {what} (valid 0..{size - 1}).")
    return TargetPlan(kind, jnp.asarray(indices, jnp.int32), int(indices.size), probe, None)


def _image_shape(model: Model, shape: Sequence[int] | None, init: Any, count: int) -> tuple[int, ...]:
    """One input's shape: ``shape``, else the model's declared ``input_shape``, else ``init``'s shape
    (``(T, *shape)`` when its leading axis is the number of targets, else ``shape`` itself)."""
    if shape is not None:
        shape = tuple(int(s) for s in shape)
    elif getattr(model, "input_shape", None) is not None:  # a Linen class's ClassVar, an NNX model's
        shape = tuple(model.input_shape)
    elif not isinstance(init, str):
        init_shape = tuple(np.shape(init))
        shape = init_shape[1:] if len(init_shape) >= 2 and init_shape[0] == count else init_shape
    else:
        raise InputError("pass shape=(H, W, C): the shape of one input image (this model does not declare input_shape).")
    if not shape or any(s < 1 for s in shape):
        raise InputError(f"shape must be the shape of one input without the batch axis, e.g. (28, 28, 1); got {shape}.")
    return shape


def _target_count(target: Any, num_images: int) -> int:
    if callable(target) and not isinstance(target, (jax.Array, np.ndarray)):
        return int(num_images)
    try:
        return int(np.atleast_1d(np.asarray(target)).size)
    except Exception:  # noqa: BLE001 - plan_targets reports malformed targets
        return 1


def activation_maximization(
    model: Model,
    variables: Any,
    target: FeatureTarget,
    *,
    shape: Sequence[int] | None = None,
    layer: str | None = None,
    steps: int = 200,
    learning_rate: float = 0.05,
    optimizer: optax.GradientTransformation | None = None,
    regularizers: Sequence[Regularizer] | Regularizer | None = None,
    init: str | jax.Array | np.ndarray = "noise",
    init_scale: float = 0.1,
    threshold: float | None = None,
    class_score: str = "log_softmax",
    num_images: int = 1,
    key: jax.Array | None = None,
    chunk: int | None = None,
    progress: bool | str = False,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Visualization:
    """Activation maximisation in pixel space: the input that maximises a target, for many targets at once.

    Erhan et al. (2009); Simonyan et al. (2014).  For each target ``t`` solves
    ``max_x score_t(f(x)) − Σ R(x)`` by gradient ascent (optax, default Adam), all targets in one
    jitted ``lax.scan`` vmapped over the targets.

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
      steps: maximum number of updates (≥ 1).
      learning_rate: Adam's learning rate when ``optimizer`` is ``None``.
      optimizer: any ``optax.GradientTransformation`` (applied to each target on its own). Reuse the
        same object across calls to reuse the compilation.
      regularizers: e.g. ``[L2(5e-3), TotalVariation(0.05), Jitter(1), Clip(0, 1)]``; penalties
        act on the image, transforms on what the model sees, projections after each update.
      init: ``"noise"`` (``init_scale · N(0, 1)``), ``"zeros"``, or an image ``(H, W, C)`` /
        ``(T, H, W, C)`` (e.g. a real digit or the class means, as in the seed).
      init_scale: standard deviation of the initial noise.
      threshold: stop each class target once its softmax probability reaches this value (the seed
        stopped at 0.99); the returned image is the first that reached it.
      class_score: ``"log_softmax"`` (maximise log p_c, i.e. minimise cross-entropy; default) or
        ``"logit"`` (maximise the raw logit, Simonyan et al.).
      num_images: starts per callable target.
      key: PRNG key for the initial noise and random transforms (required when either is used).
      chunk: steps per jitted scan (default: all at once, or 1/20 of them with a progress bar).
      progress: show a tqdm bar (a string sets its description).
      model_kwargs: extra keyword arguments of the model's ``__call__``.

    Returns:
      :class:`Visualization` (``images`` ``(T, H, W, C)``, ``scores``, ``probabilities``, ``steps`` ...).

    Raises:
      InputError: ``steps < 1``, a bad ``shape``/``init``, a random setting without ``key``, a
        threshold without class targets.
      LayerNotFoundError: unknown ``layer`` (the message lists close names).
      TargetError: class or channel index out of range, a malformed callable target.
    """
    spec, data, params = pixel_problem(
        model, variables, target, shape=shape, layer=layer, steps=steps, learning_rate=learning_rate, optimizer=optimizer,
        regularizers=regularizers, init=init, init_scale=init_scale, threshold=threshold, class_score=class_score,
        num_images=num_images, key=key, chunk=chunk, progress=progress, model_kwargs=model_kwargs,
    )
    result = engine.optimize(spec, data, params, engine.check_steps(steps), progress=progress)
    return to_visualization(result, spec.kind, codes=False)


def pixel_problem(
    model: Model, variables: Any, target: FeatureTarget, *, shape: Sequence[int] | None, layer: str | None, steps: int,
    learning_rate: float, optimizer: optax.GradientTransformation | None, regularizers: Any, init: Any, init_scale: float,
    threshold: float | None, class_score: str, num_images: int, key: jax.Array | None, chunk: int | None,
    progress: bool | str, model_kwargs: Mapping[str, Any] | None,
) -> tuple[engine.Spec, engine.Data, jax.Array]:
    """Validated ``(spec, data, initial variables)`` of a pixel-space AM call (the loop is separate,
    so tests can run the same update in a plain Python loop)."""
    steps = engine.check_steps(steps)
    chunk = engine.check_chunk(chunk, steps, progress)
    if class_score not in engine.CLASS_SCORES:
        raise InputError(f"class_score must be one of {engine.CLASS_SCORES}; got {class_score!r}.")
    model, variables = adapt_model(model, variables)
    forward, kwargs = make_forward(model, model_kwargs)
    image_shape = _image_shape(model, shape, init, _target_count(target, num_images))
    example = jnp.zeros((1, *image_shape), jnp.float32)
    plan = plan_targets(forward, variables, kwargs, example, target, layer, num_images)
    regs = engine.check_regularizers(regularizers)
    if any(r.needs_index for r in regs) and plan.kind not in ("class", "channel"):
        raise InputError("ClassMeanDistance needs class targets (it picks the mean image of each target's class).")
    use_threshold, threshold_value = engine.check_threshold(threshold, plan.kind)
    random_init = isinstance(init, str) and init == "noise"
    key = engine.check_key(key, random_init or any(r.has_transform for r in regs), "init='noise' or a transform regularizer")
    init_key, step_key = jax.random.split(key)
    params = engine.initial_params(init, image_shape, plan.count, init_key, init_scale, "pixel-space AM")
    spec = engine.Spec(
        forward=forward, kind=plan.kind, layer=layer, probe=plan.probe, truncate=layer is not None,
        target_fn=plan.target_fn, class_score=class_score,
        optimizer=optimizer if optimizer is not None else engine.default_optimizer(float(learning_rate)),
        use_threshold=use_threshold, chunk=chunk,
    )
    data = engine.Data(
        variables=variables, kwargs=kwargs, gen_variables=None, gen_kwargs=None, indices=plan.indices, reference=None,
        regularizers=regs, code_regularizers=(), key=step_key, threshold=threshold_value,
        steps=jnp.asarray(steps, jnp.int32),
    )
    return spec, data, params


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
