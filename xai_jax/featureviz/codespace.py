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

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core.errors import InputError
from ..core.model import Model, adapt_model, make_forward
from ..core.problem import output_struct
from . import engine
from .activation_maximization import FeatureTarget, Visualization, plan_targets, to_visualization
from .regularizers import Regularizer

__all__ = ["activation_maximization_codespace"]


def _latent_shape(generator: Model, latent_shape: Sequence[int] | int | None, init: Any) -> tuple[int, ...]:
    if latent_shape is not None:
        shape = (int(latent_shape),) if isinstance(latent_shape, (int, np.integer)) else tuple(int(s) for s in latent_shape)
    elif not isinstance(init, str):
        shape = tuple(np.shape(init))[-1:]
    elif getattr(generator, "input_shape", None) is not None:  # a Linen class's ClassVar, an NNX model's
        shape = tuple(generator.input_shape)
    elif getattr(generator, "latent_dim", None) is not None:
        shape = (int(generator.latent_dim),)
    else:
        raise InputError("pass latent_shape=(d,): the generator does not declare its latent size (input_shape or latent_dim).")
    if not shape or any(s < 1 for s in shape):
        raise InputError(f"latent_shape must be the shape of one code without the batch axis, e.g. (100,); got {shape}.")
    return shape


def _check_range(name: str, value: Sequence[float] | None) -> tuple[float, float] | None:
    if value is None:
        return None
    lo, hi = (float(v) for v in value)
    if not hi > lo:
        raise InputError(f"{name} must be (low, high) with high > low; got {value}.")
    return lo, hi


def activation_maximization_codespace(
    model: Model,
    variables: Any,
    generator: Model,
    gen_variables: Any,
    target: FeatureTarget,
    *,
    layer: str | None = None,
    latent_shape: Sequence[int] | int | None = None,
    steps: int = 200,
    learning_rate: float = 0.05,
    optimizer: optax.GradientTransformation | None = None,
    regularizers: Sequence[Regularizer] | Regularizer | None = None,
    code_regularizers: Sequence[Regularizer] | Regularizer | None = None,
    init: str | jax.Array | np.ndarray = "noise",
    init_scale: float = 1.0,
    threshold: float | None = None,
    class_score: str = "log_softmax",
    num_images: int = 1,
    generator_range: Sequence[float] | None = None,
    classifier_range: Sequence[float] | None = None,
    key: jax.Array | None = None,
    chunk: int | None = None,
    progress: bool | str = False,
    model_kwargs: Mapping[str, Any] | None = None,
    generator_kwargs: Mapping[str, Any] | None = None,
) -> Visualization:
    """Activation maximisation in a generator's code space (Nguyen et al. 2016; Montavon et al. 2018).

    Optimises one latent code per target so that the generated image maximises the target:
    ``max_z score_t(f(m(g(z)))) − Σ R(image) − Σ S(z)``, all targets in one jitted ``lax.scan``.

    Args:
      model, variables: the classifier (Linen module or ``f(variables, x)``) and its variables.
      generator, gen_variables: the generator (codes ``(B, *latent_shape)`` → images) and its
        variables; it runs in inference mode (``generator_kwargs`` are passed to its ``__call__``;
        the shipped DCGAN's default ``train=False`` is inference mode).
      target: class index / indices (one image each), channel indices with ``layer=``, or a callable
        (see :func:`xai_jax.featureviz.activation_maximization`).
      layer: a classifier layer for channel targets.
      latent_shape: one code's shape (default: the generator's ``input_shape`` / ``latent_dim``).
      steps, learning_rate, optimizer, threshold, class_score, num_images, chunk, progress: as in
        pixel-space AM.
      regularizers: act on the generated image (penalties such as ``TotalVariation``; transforms such
        as ``Jitter``); projections are not allowed here (the image is not the variable).
      code_regularizers: act on the code: ``L2(weight)`` (Gaussian prior), ``Clip(-c, c)``.
      init: ``"noise"`` (``init_scale · N(0, I)``, the generator's prior at scale 1), ``"zeros"``, or
        codes ``(d,)`` / ``(T, d)``.
      generator_range, classifier_range: the generator's output range and the classifier's input
        range, e.g. ``(-1, 1)`` and ``(0, 1)`` for a tanh generator; the images are mapped affinely
        from one to the other.  Both or neither (the shipped generators already output [0, 1]).
      key: PRNG key (initial codes, transforms).
      model_kwargs, generator_kwargs: extra keyword arguments of the two models.

    Returns:
      :class:`Visualization` with ``images`` (classifier's range), ``probabilities`` re-scored on
      exactly those images, and ``codes`` ``(T, *latent_shape)``.

    Raises:
      InputError: generator output the classifier cannot take, a generator that needs training-mode
        state, ``steps < 1``, an image-space projection, a missing key.
      LayerNotFoundError, TargetError: as in pixel-space AM.
    """
    steps = engine.check_steps(steps)
    chunk = engine.check_chunk(chunk, steps, progress)
    if class_score not in engine.CLASS_SCORES:
        raise InputError(f"class_score must be one of {engine.CLASS_SCORES}; got {class_score!r}.")
    model, variables = adapt_model(model, variables)
    generator, gen_variables = adapt_model(generator, gen_variables)
    forward, kwargs = make_forward(model, model_kwargs)
    gen_forward, gen_kwargs = make_forward(generator, generator_kwargs)
    code_shape = _latent_shape(generator, latent_shape, init)
    g_range, c_range = _check_range("generator_range", generator_range), _check_range("classifier_range", classifier_range)
    if (g_range is None) != (c_range is None):
        raise InputError("give both generator_range and classifier_range (the generator's output range and the classifier's input range), or neither.")
    range_map = None if g_range is None else (*g_range, *c_range)

    codes = jnp.zeros((1, *code_shape), jnp.float32)
    try:
        generated = jax.eval_shape(lambda v, z, k: gen_forward(v, z, k), gen_variables, codes, gen_kwargs)
    except Exception as err:
        hint = ""
        if "mutable" in str(err) or "batch_stats" in str(err):
            hint = (" It seems to need training-mode state (BatchNorm batch statistics): run the generator in "
                    "inference mode (e.g. generator_kwargs={'train': False}); code-space AM must not let one "
                    "image's statistics depend on the others.")
        raise InputError(
            f"the generator failed on codes of shape {tuple(codes.shape)} ({type(err).__name__}: {err}).{hint}"
        ) from err
    if not hasattr(generated, "shape") or generated.ndim < 2 or generated.shape[0] != 1:
        raise InputError(
            f"the generator must map codes (B, *latent_shape) to images (B, ...); codes of shape {tuple(codes.shape)} "
            f"gave {getattr(generated, 'shape', type(generated).__name__)}."
        )
    example = jnp.zeros(generated.shape, jnp.float32)
    try:
        output_struct(forward, variables, example, kwargs)
    except InputError as err:
        raise InputError(
            f"the classifier cannot take the generator's output: the generator makes images of shape "
            f"{tuple(generated.shape[1:])} (batch {tuple(generated.shape)}), and the classifier failed on them "
            f"({err.__cause__ or err}). Use a generator whose images have the classifier's input shape."
        ) from err
    plan = plan_targets(forward, variables, kwargs, example, target, layer, num_images)
    regs = engine.check_regularizers(regularizers)
    if any(r.has_projection for r in regs):
        raise InputError(
            "image-space projections (Clip, Blur) cannot act in code space, where the image is not the "
            "optimised variable; use code_regularizers (e.g. Clip(-3, 3) on the code) or penalties."
        )
    code_regs = engine.check_regularizers(code_regularizers, "code_regularizers")
    if any(r.has_transform for r in code_regs):
        raise InputError("code_regularizers cannot hold transforms (Jitter acts on images: put it in regularizers).")
    if any(r.needs_index for r in regs + code_regs) and plan.kind not in ("class", "channel"):
        raise InputError("ClassMeanDistance needs class targets.")
    use_threshold, threshold_value = engine.check_threshold(threshold, plan.kind)
    key = engine.check_key(key, (isinstance(init, str) and init == "noise") or any(r.has_transform for r in regs),
                           "init='noise' or a transform regularizer")
    init_key, step_key = jax.random.split(key)
    params = engine.initial_params(init, code_shape, plan.count, init_key, init_scale, "code-space AM")
    spec = engine.Spec(
        forward=forward, kind=plan.kind, layer=layer, probe=plan.probe, truncate=layer is not None,
        target_fn=plan.target_fn, class_score=class_score, generator=gen_forward, range_map=range_map,
        optimizer=optimizer if optimizer is not None else engine.default_optimizer(float(learning_rate)),
        use_threshold=use_threshold, chunk=chunk,
    )
    data = engine.Data(
        variables=variables, kwargs=kwargs, gen_variables=gen_variables, gen_kwargs=gen_kwargs, indices=plan.indices,
        reference=None, regularizers=regs, code_regularizers=code_regs, key=step_key, threshold=threshold_value,
        steps=jnp.asarray(steps, jnp.int32),
    )
    result = engine.optimize(spec, data, params, steps, progress=progress)
    return to_visualization(result, plan.kind, codes=True)
