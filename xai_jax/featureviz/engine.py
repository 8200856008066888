"""The optimisation loop shared by activation maximisation (pixel and code space) and inversion.

One *problem* optimises ``T`` independent variables at once (one per target: a class, a channel,
a sample to invert).  The model sees the ``T`` images as one batch and the loss is the sum of the
per-target losses: samples are independent in inference mode, so each target's gradient is the
gradient of its own loss (one backward pass for all).  Penalties, transforms and projections are
vmapped per image, and the optax update is ``jax.vmap``-ed over the targets, so every optax
transformation -- even one that computes a global norm -- acts on each target on its own, exactly
as ``T`` separate runs would (tested).  Models whose samples interact (BatchNorm in training mode)
are outside this contract: run them in inference mode.  Steps run in a jitted
``lax.scan`` over a chunk of steps; a Python loop over chunks feeds the progress bar.  The step
index and the chunk size are independent: step ``i`` always uses ``fold_in(key, i)``, so the
result does not depend on how the steps are chunked.

Early stopping (``threshold``) is a per-target mask inside the scan: a target whose probability
has reached the threshold keeps its variable and optimizer state unchanged from then on (and its
step counter stops); once every target is done, the remaining steps of the scan are skipped
by a ``lax.cond`` and the Python loop stops before the next chunk.

The loss of one target, minimised, is

    loss(v) = −score(model(transforms(image(v)))) + Σ penalties(image(v)) + Σ code penalties(v)

where ``image(v)`` is ``v`` itself in pixel space or ``generator(v)`` (mapped to the classifier's
range) in code space, and ``score`` the target's objective (see :func:`target_scores`).  After each
update the projections (clipping, blurring) are applied to ``v``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core import checks, compat
from ..core.errors import InputError
from ..core.model import Forward
from ..core.numerics import guarded_jit
from ..trace import rewrite
from ..trace.layers import PARAMETER_FREE_ACTIVATIONS, intercept_outputs, probed_forward, split_activation
from ..trace.xla_cpu import LOOP_GRADIENT_RULES
from .regularizers import Regularizer

_T = TypeVar("_T")

KINDS = ("class", "channel", "callable", "features")
CLASS_SCORES = ("log_softmax", "logit")


# ----------------------------------------------------------------------------------------------------
# Forward passes that stop at a layer
# ----------------------------------------------------------------------------------------------------


class _Reached(Exception):  # noqa: N818 -- control flow (the layer was reached), not an error
    def __init__(self, value: Any) -> None:
        super().__init__("layer reached")
        self.value = value


def truncated_forward(forward: Forward, layer: str) -> Callable[..., jax.Array]:
    """``(variables, x, kwargs) -> activation of layer``: runs the model only up to ``layer``.

    The interceptor raises as soon as the layer has produced its output, so the traced
    computation holds nothing after it: a conv layer of a CNN with a dense head can be evaluated
    on images of any size (DeepDream octaves), and the unused head costs nothing.  Limit: the layer
    must not sit inside a lifted Flax transform (``nn.scan``/``nn.vmap``/``nn.remat``), whose inner
    trace cannot hand a value out through an exception; use a layer outside it.  A ``"conv4+relu"``
    layer stops at ``conv4`` and applies ``jax.nn.relu``; an activation with parameters (leaky
    slope...) runs the whole model instead.
    """

    base, activation = split_activation(layer)
    if activation is not None and activation not in PARAMETER_FREE_ACTIVATIONS:
        # its parameters (a leaky slope...) live only in the model's trace: run the whole model
        full, up_to_base = probed_forward(forward, layer), truncated_forward(forward, base)

        def run_whole(variables: Any, x: jax.Array, kwargs: Any) -> jax.Array:
            out = jax.eval_shape(up_to_base, variables, x, kwargs)
            return full(variables, x, kwargs, jnp.zeros(out.shape, out.dtype))[1]

        return run_whole

    def run(variables: Any, x: jax.Array, kwargs: Any) -> jax.Array:
        def stop(name: str, mod: Any, out: Any) -> Any:
            if name == layer:  # a module (also one literally named "a+relu", if reached first)
                raise _Reached(out)
            if activation is not None and name == base:
                raise _Reached(getattr(jax.nn, activation)(out))
            return out

        try:
            with intercept_outputs(stop):
                forward(variables, x, kwargs)
        except _Reached as reached:
            return reached.value
        raise InputError(f"layer {layer!r} was not called by the model on this input.")

    return run


# ----------------------------------------------------------------------------------------------------
# The static description of a problem
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Spec:
    """Static (hashable) half of an optimisation problem; one compilation per distinct Spec."""

    forward: Forward
    kind: str  # "class" | "channel" | "callable" | "features"
    layer: str | None = None
    probe: tuple[tuple[int, ...], str] | None = None  # shape/dtype of the layer's output (batch 1)
    truncate: bool = False  # evaluate only up to the layer (its output is all the target needs)
    target_fn: Callable[[Any], jax.Array] | None = None
    class_score: str = "log_softmax"
    generator: Forward | None = None
    range_map: tuple[float, float, float, float] | None = None  # generator (lo, hi) -> classifier (lo, hi)
    optimizer: Any = None
    use_threshold: bool = False
    chunk: int = 1
    fast_gradients: bool = True  # LOOP_GRADIENT_RULES: fast conv/pool gradients inside the scan


class Data(NamedTuple):
    """Traced half of an optimisation problem (a pytree)."""

    variables: Any
    kwargs: Any
    gen_variables: Any
    gen_kwargs: Any
    indices: jax.Array | None  # (T,) class/channel index per target
    reference: jax.Array | None  # (T, ...) reference features (inversion)
    regularizers: tuple[Regularizer, ...]
    code_regularizers: tuple[Regularizer, ...]
    key: jax.Array  # for the random transforms
    threshold: jax.Array  # float32 scalar
    steps: jax.Array  # int32 scalar: steps requested


class State(NamedTuple):
    params: jax.Array  # (T, ...)
    opt_state: Any  # per-target optimizer states (leading axis T)
    done: jax.Array  # (T,) bool: threshold reached
    taken: jax.Array  # (T,) int32: updates applied


class Trace(NamedTuple):
    score: jax.Array  # (chunk, T)
    probability: jax.Array  # (chunk, T)


# ----------------------------------------------------------------------------------------------------
# Every target at once
# ----------------------------------------------------------------------------------------------------


def _model(spec: Spec, fn: Callable[..., Any]) -> Callable[..., Any]:
    return rewrite(fn, LOOP_GRADIENT_RULES) if spec.fast_gradients else fn


def to_images(spec: Spec, data: Data, params: jax.Array) -> jax.Array:
    """The images of the targets' variables ``(T, ...)``: the variables themselves (pixel space), or
    the generator's outputs mapped to the classifier's range (code space; inference mode, so each
    image depends on its own code only)."""
    if spec.generator is None:
        return params
    images = _model(spec, spec.generator)(data.gen_variables, params, data.gen_kwargs)
    if spec.range_map is not None:
        src_lo, src_hi, dst_lo, dst_hi = spec.range_map
        images = dst_lo + (images - src_lo) * ((dst_hi - dst_lo) / (src_hi - src_lo))
    return images


def target_scores(
    spec: Spec, data: Data, images: jax.Array, indices: jax.Array | None, reference: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    """``(scores, probabilities)``, each ``(T,)``, of a batch of images, one target per image.

    The model runs once on the whole batch (samples are independent in inference mode, so the
    gradient of the summed losses is every target's own gradient).  Scores are maximised:

    * ``class``: ``log softmax(logits)[c]`` (= −cross-entropy, the seed's loss) or the logit itself;
      the probability is ``softmax(logits)[c]``.
    * ``channel``: mean over spatial positions of channel ``c`` of the layer's output (Erhan et al.
      2009; a dense layer's unit ``c`` is its value).
    * ``callable``: ``target(outputs)`` (or ``target(activation)`` when a layer is given).
    * ``features``: ``−‖Φ(x) − Φ₀‖² / ‖Φ₀‖²`` (Mahendran & Vedaldi 2015, Eq. 1 and 3).

    Non-class targets report NaN as their probability.
    """
    count = images.shape[0]
    activation = None
    if spec.layer is None:
        outputs = _model(spec, spec.forward)(data.variables, images, data.kwargs)
    elif spec.truncate:
        outputs = None
        activation = _model(spec, truncated_forward(spec.forward, spec.layer))(data.variables, images, data.kwargs)
    else:
        shape, dtype = _present(spec.probe, "the layer probe")
        outputs, activation = _model(spec, probed_forward(spec.forward, spec.layer))(
            data.variables, images, data.kwargs, jnp.zeros((count, *shape[1:]), dtype)
        )
    nan = jnp.full((count,), jnp.nan, jnp.float32)
    if spec.kind == "class":
        logits, chosen = _present(outputs, "the outputs").astype(jnp.float32), _present(indices, "class indices")
        log_p = jnp.take_along_axis(jax.nn.log_softmax(logits), chosen[:, None], axis=-1)[:, 0]
        score = (
            log_p if spec.class_score == "log_softmax" else jnp.take_along_axis(logits, chosen[:, None], axis=-1)[:, 0]
        )
        return score, jnp.exp(log_p)
    if spec.kind == "channel":
        layer = _present(activation, "the layer's output")
        a = layer.astype(jnp.float32).reshape(count, -1, layer.shape[-1])
        channels = _present(indices, "channel indices")
        return jnp.mean(jnp.take_along_axis(a, channels[:, None, None], axis=-1), axis=(1, 2)), nan
    if spec.kind == "callable":
        value = _present(spec.target_fn, "the target function")(activation if spec.layer is not None else outputs)
        return jnp.reshape(value, (count,)).astype(jnp.float32), nan
    if spec.kind == "features":
        reference_features = _present(reference, "the reference features")
        d = (_present(activation, "the layer's output").astype(jnp.float32) - reference_features).reshape(count, -1)
        ref = reference_features.reshape(count, -1)
        error = jnp.sum(d * d, axis=1) / jnp.maximum(jnp.sum(ref * ref, axis=1), 1e-12)
        return -error, nan
    raise AssertionError(spec.kind)


def _present(value: _T | None, what: str) -> _T:
    """``value``, which the target's kind guarantees (checked when the spec was built)."""
    if value is None:
        raise AssertionError(f"{what} is missing for this target kind")
    return value


def _transform(data: Data, image: jax.Array, key: jax.Array) -> jax.Array:
    for reg in data.regularizers:
        if reg.has_transform:
            key, sub = jax.random.split(key)
            image = reg.transform(image, sub)
    return image


def _penalty(regs: Sequence[Regularizer], x: jax.Array, index: jax.Array | None) -> jax.Array:
    total = jnp.zeros((), jnp.float32)
    for reg in regs:
        if reg.has_penalty:
            total = total + reg.penalty(x, index)
    return total


def _index_axis(data: Data) -> int | None:
    return None if data.indices is None else 0


def losses(spec: Spec, data: Data, params: jax.Array, keys: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Sum over targets of ``−score + penalties`` (each target's gradient is its own loss's)."""
    images = to_images(spec, data, params)
    seen = jax.vmap(functools.partial(_transform, data))(images, keys) if _has_transform(data) else images
    scores, probabilities = target_scores(spec, data, seen, data.indices, data.reference)
    penalty = jax.vmap(functools.partial(_penalty, data.regularizers), in_axes=(0, _index_axis(data)))(
        images, data.indices
    )
    if spec.generator is not None:
        penalty = penalty + jax.vmap(
            functools.partial(_penalty, data.code_regularizers), in_axes=(0, _index_axis(data))
        )(params, data.indices)
    return jnp.sum(penalty - scores), (scores, probabilities)


def project(spec: Spec, data: Data, params: jax.Array, step: jax.Array) -> jax.Array:
    """Projections after an update (one target): on the image in pixel space, on the code in code space."""
    regs = data.regularizers if spec.generator is None else data.code_regularizers
    for reg in regs:
        if reg.has_projection:
            params = reg.project(params, step)
    return params


def _has_transform(data: Data) -> bool:
    return any(reg.has_transform for reg in data.regularizers)


def _where(mask: jax.Array, on_true: Any, on_false: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(mask, a, b), on_true, on_false)


def _update_one(
    spec: Spec, data: Data, params: jax.Array, grad: jax.Array, opt_state: Any, frozen: jax.Array, step: jax.Array
) -> tuple[jax.Array, Any]:
    """One optax update of one target, skipped when ``frozen``."""
    updates, new_opt_state = spec.optimizer.update(grad, opt_state, params)
    new_params = project(spec, data, optax.apply_updates(params, updates), step)
    return jnp.where(frozen, params, new_params), _where(frozen, opt_state, new_opt_state)


def step(spec: Spec, data: Data, state: State, i: jax.Array) -> tuple[State, Trace]:
    """Update ``i`` of every target (the body of the scan; also usable in a plain Python loop)."""
    count = state.done.shape[0]
    keys = jax.random.split(jax.random.fold_in(data.key, i), count)
    active = i < data.steps
    grad, (scores, probabilities) = jax.grad(functools.partial(losses, spec, data), has_aux=True)(state.params, keys)
    done = state.done
    if spec.use_threshold:
        if _has_transform(data):  # the stop decision is about the image we keep, not a jittered one
            _, probabilities = target_scores(
                spec, data, to_images(spec, data, state.params), data.indices, data.reference
            )
        done = done | (active & (probabilities >= data.threshold))
    frozen = done | ~active
    params, opt_state = jax.vmap(functools.partial(_update_one, spec, data), in_axes=(0, 0, 0, 0, None))(
        state.params, grad, state.opt_state, frozen, i
    )
    nan = jnp.full_like(scores, jnp.nan)
    trace = Trace(jnp.where(active & ~state.done, scores, nan), jnp.where(active & ~state.done, probabilities, nan))
    return State(params, opt_state, done, state.taken + (~frozen).astype(jnp.int32)), trace


def init_state(spec: Spec, data: Data, params: jax.Array) -> State:
    count = params.shape[0]
    params = jax.vmap(lambda p: project(spec, data, p, jnp.asarray(0)))(params)
    return State(
        params, jax.vmap(spec.optimizer.init)(params), jnp.zeros((count,), bool), jnp.zeros((count,), jnp.int32)
    )


@functools.partial(guarded_jit, static_argnames=("spec",))
def _init(spec: Spec, data: Data, params: jax.Array) -> State:
    return init_state(spec, data, params)


def _scan(spec: Spec, data: Data, state: State, start: jax.Array) -> tuple[State, Trace]:
    """Steps ``start .. start + spec.chunk − 1`` in one ``lax.scan`` (steps past ``data.steps``, and
    every step once all targets are done, are skipped by a ``lax.cond``)."""

    def body(state: State, j: jax.Array) -> tuple[State, Trace]:
        i = start + j
        count = state.done.shape[0]

        def skip(state: State) -> tuple[State, Trace]:
            nan = jnp.full((count,), jnp.nan, jnp.float32)
            return state, Trace(nan, nan)

        finished = (i >= data.steps) | jnp.all(state.done)
        return jax.lax.cond(finished, skip, lambda s: step(spec, data, s, i), state)

    return jax.lax.scan(body, state, jnp.arange(spec.chunk, dtype=jnp.int32))


@functools.partial(guarded_jit, static_argnames=("spec",))
def _run_chunk(spec: Spec, data: Data, state: State, start: jax.Array) -> tuple[State, Trace]:
    return _scan(spec, data, state, start)


class Result(NamedTuple):
    images: jax.Array
    params: jax.Array
    scores: jax.Array
    probabilities: jax.Array
    steps: jax.Array
    score_history: jax.Array
    probability_history: jax.Array


def _final(spec: Spec, data: Data, state: State) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Final images and their scores, re-computed on exactly the returned images (no transform)."""

    images = to_images(spec, data, state.params)
    scores, probabilities = target_scores(spec, data, images, data.indices, data.reference)
    return images, scores, probabilities


@functools.partial(guarded_jit, static_argnames=("spec",))
def _finish(spec: Spec, data: Data, state: State) -> tuple[jax.Array, jax.Array, jax.Array]:
    return _final(spec, data, state)


@functools.partial(guarded_jit, static_argnames=("spec",))
def _run_all(spec: Spec, data: Data, params: jax.Array) -> tuple[State, Trace, tuple[jax.Array, jax.Array, jax.Array]]:
    """Initialisation, every step (one scan) and the final re-scoring in one compiled function."""
    state = init_state(spec, data, params)
    state, trace = _scan(spec, data, state, jnp.asarray(0, jnp.int32))
    return state, trace, _final(spec, data, state)


def optimize(spec: Spec, data: Data, params: jax.Array, steps: int, *, progress: bool | str = False) -> Result:
    """Run ``steps`` updates of every target: one jitted scan over all steps, or (``spec.chunk <
    steps``) one per chunk of steps, with a progress bar and an early exit once every target is done."""
    count = params.shape[0]
    chunks = math.ceil(steps / spec.chunk)
    if chunks == 1 and not progress:
        state, trace, (images, scores, probabilities) = _run_all(spec, data, params)
        return Result(images, state.params, scores, probabilities, state.taken, trace.score, trace.probability)
    state = _init(spec, data, params)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=progress if isinstance(progress, str) else "optimizing", unit="step")
    traces: list[Trace] = []
    try:
        for c in range(chunks):
            state, trace = _run_chunk(spec, data, state, jnp.asarray(c * spec.chunk, jnp.int32))
            traces.append(trace)
            if bar is not None:
                bar.update(min(spec.chunk, steps - c * spec.chunk))
            if spec.use_threshold and c + 1 < chunks and not compat.is_tracer(state.done) and bool(jnp.all(state.done)):
                if bar is not None:
                    bar.set_postfix_str("every target reached the threshold")
                break
    finally:
        if bar is not None:
            bar.close()
    images, scores, probabilities = _finish(spec, data, state)
    history = jnp.concatenate([jnp.stack([t.score, t.probability]) for t in traces], axis=1)[:, :steps]
    if history.shape[1] < steps:  # chunks skipped after an early exit
        history = jnp.concatenate(
            [history, jnp.full((2, steps - history.shape[1], count), jnp.nan, jnp.float32)], axis=1
        )
    return Result(images, state.params, scores, probabilities, state.taken, history[0], history[1])


# ----------------------------------------------------------------------------------------------------
# Settings shared by the public functions (the values were checked by options.Optimization)
# ----------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def default_optimizer(learning_rate: float) -> optax.GradientTransformation:
    """``optax.adam(learning_rate)``, one object per rate so repeated calls reuse the compilation."""
    return optax.adam(learning_rate)


def chunk_size(chunk: int | None, steps: int, progress: bool | str) -> int:
    """Steps per jitted scan: ``chunk`` (at most ``steps``), else all at once, or 1/20 of them with a
    progress bar (so the bar moves)."""
    if chunk is None:
        return steps if not progress else max(1, math.ceil(steps / 20))
    return min(chunk, steps)


def threshold_setting(threshold: float | None, kind: str) -> tuple[bool, jax.Array]:
    """``(use_threshold, threshold as a float32 scalar)``; the value was checked by
    :class:`~xai_jax.featureviz.options.Optimization`, here only that it has class targets to act on."""
    if threshold is None:
        return False, jnp.asarray(jnp.inf, jnp.float32)
    if kind != "class":
        raise InputError(
            "threshold (early stop on the target probability) needs class targets (no layer, no callable)."
        )
    return True, jnp.asarray(threshold, jnp.float32)


def check_key(key: Any, needed: bool, why: str) -> jax.Array:
    """The run's key: required when ``needed`` (``why`` says what is random), else a fixed key that
    is never used for randomness."""
    if key is None and not needed:
        return jax.random.key(0)
    if key is None:
        raise InputError(f"{why} is random: pass an explicit key=jax.random.key(seed).")
    return checks.check_key("key", key)


@functools.partial(guarded_jit, static_argnames=("shape", "count"))
def _noise(key: jax.Array, scale: jax.Array, *, shape: tuple[int, ...], count: int) -> jax.Array:
    return jax.vmap(lambda t: scale * jax.random.normal(jax.random.fold_in(key, t), shape, jnp.float32))(
        jnp.arange(count)
    )


def initial_params(init: Any, shape: tuple[int, ...], count: int, key: jax.Array, scale: float, what: str) -> jax.Array:
    """``(count, *shape)`` starting variables: ``"noise"`` (scale · N(0, 1), target t drawn from
    ``fold_in(key, t)``), ``"zeros"``, or an array of shape ``shape`` or ``(count, *shape)``."""
    if isinstance(init, str):
        if init == "zeros":
            return jnp.zeros((count, *shape), jnp.float32)
        if init == "noise":
            return _noise(key, jnp.float32(scale), shape=tuple(shape), count=count)
        raise InputError(f"init must be 'noise', 'zeros' or an array; got {init!r}.")
    with np.errstate(over="ignore"):  # an overflow to inf is reported by the check just below
        arr = jnp.asarray(init, jnp.float32)
    checks.check_finite_array("init", arr)  # also after the cast: 1e39 in float64 is inf in float32
    if tuple(arr.shape) == tuple(shape):
        return jnp.broadcast_to(arr, (count, *shape))
    if tuple(arr.shape) == (count, *shape):
        return arr
    raise InputError(f"init for {what} must have shape {tuple(shape)} or {(count, *shape)}; got {tuple(arr.shape)}.")
