"""DeepDream: amplify what a layer sees in an image, octave by octave.

Mordvintsev, Olah & Tyka (2015), "Inceptionism: going deeper into neural networks" (Google AI
blog) and their reference notebook.  Gradient *ascent* on the image of

    L(x) = ½ · mean(a(x)²)        (``objective="l2"``, the original; a = the layer's output or one channel)
    L(x) = mean(a(x))             (``objective="mean"``)

with, at every step, a random circular shift of the image (jitter; the gradient is shifted back
before the update), the gradient divided by its standard deviation (per image), and a fixed step
size.  Octaves: the image is processed from a small scale up (``octave_scale ** e`` for the
exponents ``e``), the detail added at one scale (dreamed − base) being resized and carried to the
next, so that the patterns grow at several sizes.

The seed's DeepDream (VGG16, octaves 1.5^i for i = −5..2, 40 steps, gradient/std, random roll)
had three bugs this version does not copy: an L2 term that was ascended instead of penalised, an
RGB-noise step that did nothing, and a typo in a channel mean (.496 for .406).  There is no
ImageNet normalisation here: pass images in the model's own input range.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from ..core import checks
from ..core.errors import InputError, TargetError
from ..core.model import Forward, Model, adapt_model, make_forward
from ..core.numerics import guarded_jit
from ..core.problem import check_input
from ..trace import rewrite
from ..trace.layers import layer_info
from ..trace.xla_cpu import LOOP_GRADIENT_RULES
from . import engine

__all__ = ["deep_dream", "octave_sizes"]

OBJECTIVES = ("l2", "mean")


def octave_sizes(size: Sequence[int], octaves: int | Sequence[int], octave_scale: float) -> list[tuple[int, ...]]:
    """Spatial sizes of the octaves: ``round(size · octave_scale ** e)`` for each exponent ``e``
    (``octaves=n``: exponents ``−(n−1) .. 0``, ending at the image's own size)."""
    exponents = _exponents(octaves)
    return [tuple(max(1, round(s * octave_scale**e)) for s in size) for e in exponents]


def _exponents(octaves: int | Sequence[int]) -> list[int]:
    if isinstance(octaves, (int, np.integer)) and not isinstance(octaves, bool):
        if octaves < 1:
            raise InputError(f"octaves must be at least 1; got {octaves}.")
        return list(range(-(int(octaves) - 1), 1))
    try:
        exponents = [int(e) for e in octaves]  # type: ignore[union-attr]  # a bool raises TypeError: refused
    except TypeError:
        raise InputError(
            f"octaves must be an int (number of octaves) or a sequence of exponents; got {octaves!r}."
        ) from None
    if not exponents:
        raise InputError("octaves must not be empty.")
    return exponents


def _objective(forward: Forward, layer: str, channel: int | None, objective: str) -> Any:
    activation_of = rewrite(engine.truncated_forward(forward, layer), LOOP_GRADIENT_RULES)

    def total(variables: Any, x: jax.Array, kwargs: Any) -> jax.Array:
        a = activation_of(variables, x, kwargs).astype(jnp.float32)
        if channel is not None:
            a = a[..., channel]
        a = a.reshape(a.shape[0], -1)
        per_image = 0.5 * jnp.mean(a * a, axis=1) if objective == "l2" else jnp.mean(a, axis=1)
        return jnp.sum(per_image)  # images are independent: each one's gradient is its own

    return total


@functools.partial(guarded_jit, static_argnames=("forward", "layer", "channel", "objective"))
def _dream_octave(
    forward: Forward,
    variables: Any,
    kwargs: Any,
    image: jax.Array,
    key: jax.Array,
    steps: jax.Array,
    jitter: jax.Array,
    step_size: jax.Array,
    low: jax.Array,
    high: jax.Array,
    *,
    layer: str,
    channel: int | None,
    objective: str,
) -> jax.Array:
    """``steps`` updates of one octave (a compiled loop; steps, jitter, step size and range are data,
    so only a new model, layer, channel, objective or image size compiles anew)."""
    total = _objective(forward, layer, channel, objective)
    count = image.shape[0]
    roll = jax.vmap(lambda img, s: jnp.roll(img, (s[0], s[1]), axis=(0, 1)))

    def one_step(i: jax.Array, image: jax.Array) -> jax.Array:
        shifts = jax.random.randint(jax.random.fold_in(key, i), (count, 2), -jitter, jitter + 1)
        grad = roll(jax.grad(total, argnums=1)(variables, roll(image, shifts), kwargs), -shifts)  # un-roll the gradient
        grad = grad / (jnp.std(grad.reshape(count, -1), axis=1) + 1e-8).reshape(count, *([1] * (grad.ndim - 1)))
        return jnp.clip(image + step_size * grad, low, high)

    return jax.lax.fori_loop(0, steps, one_step, image)


def deep_dream(
    model: Model,
    variables: Any,
    image: Any,
    *,
    layer: str,
    channel: int | None = None,
    octaves: int | Sequence[int] = 4,
    octave_scale: float = 1.4,
    steps: int = 10,
    step_size: float = 0.01,
    jitter: int = 2,
    key: jax.Array | None = None,
    objective: str = "l2",
    value_range: Sequence[float] | None = None,
    resize_method: str = "linear",
    return_octaves: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
) -> jax.Array | tuple[jax.Array, list[jax.Array]]:
    """DeepDream (Mordvintsev, Olah & Tyka 2015): gradient ascent on ``½·mean(a²)`` of a layer.

    Args:
      model: an unbound Linen module; variables: its variables.
      image: a batch ``(B, H, W, C)`` in the model's input range (each image is dreamed on its own).
      layer: the layer whose activation is amplified (see ``xj.layers``).  The model is run only up
        to that layer, so octaves smaller than the model's input work for convolutional layers.
      channel: amplify one channel of the layer (``None``: the whole layer).
      octaves: number of octaves (exponents ``−(n−1)..0``) or the exponents themselves (the seed:
        ``range(-5, 3)``, which ends 1.5² times larger than the input).
      octave_scale: ratio between successive octaves.
      steps: gradient steps per octave; step_size: step on the std-normalised gradient.
      jitter: maximum random circular shift in pixels per step (0: none).
      key: PRNG key for the shifts (required when ``jitter > 0``).
      objective: ``"l2"`` (½·mean(a²), the original) or ``"mean"`` (mean activation).
      value_range: clip to ``(low, high)`` after every step (e.g. ``(0, 1)`` for MNIST); ``None``: no clip.
      resize_method: ``jax.image.resize`` method between octaves.
      return_octaves: also return the image at the end of each octave.

    Returns:
      The dreamed batch at the last octave's size (the input's size by default), float32; with
      ``return_octaves``, ``(image, [image after each octave])``.
    """
    model, variables = adapt_model(model, variables)
    forward, kwargs = make_forward(model, model_kwargs)
    forward.module("deep_dream")
    x = check_input(image, "image")
    if x.ndim != 4:
        raise InputError(f"image must be an NHWC batch (B, H, W, C); got shape {tuple(x.shape)}.")
    x = x.astype(jnp.float32)
    steps = cast(int, checks.check_positive_int("steps", steps))
    step_size = cast(float, checks.check_float("step_size", step_size, minimum=0.0, exclusive_minimum=True))
    octave_scale = cast(float, checks.check_float("octave_scale", octave_scale, minimum=0.0, exclusive_minimum=True))
    objective = checks.check_choice("objective", objective, OBJECTIVES)
    jitter = cast(int, checks.check_int("jitter (pixels)", jitter, minimum=0))
    return_octaves = checks.check_bool("return_octaves", return_octaves)
    info = layer_info(forward, variables, x, kwargs, layer)
    if channel is not None:
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)):
            raise TargetError(f"channel must be an int or None; got {channel!r}.")
        if not 0 <= int(channel) < info.shape[-1]:
            raise TargetError(
                f"channel {channel} out of range: layer {layer!r} has {info.shape[-1]} channels "
                f"(valid 0..{info.shape[-1] - 1})."
            )
        channel = int(channel)
    key = engine.check_key(key, jitter > 0, "jitter")
    if value_range is not None:
        try:
            low, high = value_range
        except (TypeError, ValueError):
            raise InputError(f"value_range must be a pair (low, high); got {value_range!r}.") from None
        low = cast(float, checks.check_float("value_range low", low))
        high = cast(float, checks.check_float("value_range high", high))
        if not high > low:
            raise InputError(f"value_range must be (low, high) with high > low; got {value_range}.")
    else:
        low, high = -np.inf, np.inf
    sizes = octave_sizes(x.shape[1:3], octaves, octave_scale)
    truncated = engine.truncated_forward(forward, layer)
    for size in sorted(set(sizes)):
        try:
            jax.eval_shape(truncated, variables, jax.ShapeDtypeStruct((x.shape[0], *size, x.shape[3]), x.dtype), kwargs)
        except Exception as err:
            raise InputError(
                f"the model cannot run up to layer {layer!r} on an octave of size {size} "
                f"({type(err).__name__}: {err}); "
                "use fewer octaves, a larger octave_scale... or a layer before any fixed-size part of the model."
            ) from err

    results = []
    detail = jnp.zeros((x.shape[0], *sizes[0], x.shape[3]), jnp.float32)
    dreamed = x
    for o, size in enumerate(sizes):
        shape = (x.shape[0], *size, x.shape[3])
        base = jax.image.resize(x, shape, resize_method)
        dreamed = base + jax.image.resize(detail, shape, resize_method)
        dreamed = _dream_octave(
            forward,
            variables,
            kwargs,
            dreamed,
            jax.random.fold_in(key, o),
            jnp.int32(steps),
            jnp.int32(jitter),
            jnp.float32(step_size),
            jnp.float32(low),
            jnp.float32(high),
            layer=layer,
            channel=channel,
            objective=objective,
        )
        detail = dreamed - base
        results.append(dreamed)
    return (dreamed, results) if return_octaves else dreamed
