"""Randomisation sanity checks: does the explanation depend on what the model learned?

Adebayo et al. (2018), "Sanity Checks for Saliency Maps": re-initialise the model's layers, from the
output layer down ("cascading") or one at a time ("independent"), and compare each explanation with
the original one; a method whose maps stay the same does not explain the model.  Randomisation acts
on the *variables pytree*: a "layer" is a module that owns parameters (its Flax path, e.g.
``"conv1"`` or ``"block/conv2"``), ordered by where the forward pass first uses them (found by tracing
the model once, so any Linen module or plain function works).  Fresh values come from one key (one
draw for the whole model: XLA:CPU compiles each random-number kernel for about a second), so a layer
gets the same fresh weights in every order and stage.

``init``: ``"torch"`` (default) draws every weight and bias from U(±1/√fan_in) and resets
normalisation layers to the identity (PyTorch's ``reset_parameters``, which Quantus calls);
``"truncated_normal"`` draws weights and biases from a normal truncated at ±2σ with variance 1/fan_in
(Adebayo et al.'s re-initialisation; Flax's LeCun normal); or a function ``(key, path, leaf) ->
leaf``.  Biases are re-drawn, not zeroed: with zero biases every ReLU unit that sees only an image's
exact-zero background has gradient 0, so the maps of a *random* network still trace the digit (on the
shipped MNIST CNN the absolute-gradient Spearman correlation climbs back from 0.19 to 0.53 when the
first layer is re-initialised with zero biases; with random biases it keeps falling, to 0.11).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..core import Inputs, Problem, Target, compiled, prepare
from ..core.errors import InputError, LayerNotFoundError, unknown_name_message
from ..core.model import Model
from . import _common as c
from .similarity import pearson, spearman, ssim

Array = jax.Array
SIMILARITIES = ("spearman", "pearson", "ssim")
ORDERS = ("top_down", "bottom_up", "independent")
INITS = ("torch", "truncated_normal")


class MPRTResult(NamedTuple):
    """A model parameter randomisation test.

    ``layers[l]``: the layer randomised at stage l (cascading: it and every layer before it in
    ``layers``); ``scores (L, B)``: similarity of each stage's explanation to the original one;
    ``original (B,)``: similarity of the given ``attributions`` to the recomputed original explanation
    (1 when they are the same map; Quantus' ``"original"`` entry); ``explanations (L + 1, B, ...)``:
    the original and every stage's explanation, when asked for (``keep_explanations=True``)."""

    layers: tuple[str, ...]
    scores: Array
    original: Array
    explanations: Array | None = None


# ---------------------------------------------------------------------------------------------------
# Layers of a variables pytree, and fresh values for them
# ---------------------------------------------------------------------------------------------------


def _leaf_paths(tree: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(tree, Mapping):
        out = []
        for k, v in tree.items():
            out.extend(_leaf_paths(v, (*prefix, str(k))))
        return out
    return [(prefix, tree)]


def parameter_layers(model: Model, variables: Any, x: Any, model_kwargs: Mapping[str, Any] | None = None) -> list[str]:
    """Names of the modules that own parameters (``"conv1"``, ``"block/conv2"``), from the input side to
    the output side: ordered by the first equation of the traced forward pass that reads one of their
    parameters."""
    from ..core.model import make_forward

    forward, dynamic = make_forward(model, model_kwargs)
    params = variables["params"] if isinstance(variables, Mapping) and "params" in variables else variables
    leaves = _leaf_paths(params)
    if not leaves:
        raise InputError("the variables hold no parameters to randomise.")
    layer_of_leaf = [_layer_name(path) for path, _ in leaves]

    def run(param_leaves: list[Any]) -> Any:
        rebuilt = _rebuild(params, dict(zip([p for p, _ in leaves], param_leaves)))
        full = {**variables, "params": rebuilt} if isinstance(variables, Mapping) and "params" in variables else rebuilt
        return forward(full, x, dynamic)

    closed = jax.make_jaxpr(run)([leaf for _, leaf in leaves])
    first_use: dict[str, int] = {}
    invars = {v: i for i, v in enumerate(closed.jaxpr.invars)}
    # Only top-level equations: a parameter read inside a nested call (a jitted sub-function) counts
    # where that call is; layers first read by the same equation keep their tree order.
    for position, eqn in enumerate(closed.jaxpr.eqns):
        for var in eqn.invars:
            i = None if isinstance(var, jax.extend.core.Literal) else invars.get(var)
            if i is not None:
                first_use.setdefault(layer_of_leaf[i], position)
    names = list(dict.fromkeys(layer_of_leaf))
    return sorted(names, key=lambda n: first_use.get(n, len(first_use) + names.index(n)))


def _layer_name(leaf_path: tuple[str, ...]) -> str:
    """The layer owning a parameter: its module path (``"block/conv2"`` for ``block/conv2/kernel``); a
    parameter at the top of a plain params dict (``{"w": ...}``) is a layer of its own."""
    return "/".join(leaf_path[:-1]) if len(leaf_path) > 1 else leaf_path[0]


def _rebuild(tree: Any, values: Mapping[tuple[str, ...], Any], prefix: tuple[str, ...] = ()) -> Any:
    if isinstance(tree, Mapping):
        return {k: _rebuild(v, values, (*prefix, str(k))) for k, v in tree.items()}
    return values[prefix]


def _fan_in(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape[:-1])) if len(shape) > 1 else int(shape[0])


def _kernel_fan_in(layer: Mapping[str, Any]) -> int | None:
    for name in ("kernel", "embedding", "weight"):
        if name in layer and hasattr(layer[name], "shape"):
            return _fan_in(tuple(layer[name].shape))
    return None


def fresh_parameters(key: Array, variables: Any, init: str | Callable[..., Any] = "torch") -> dict[str, Any]:
    """Re-initialised values for every parameter leaf, as a params-shaped tree (see the module doc).

    One random draw covers all leaves (so a whole model compiles one random-number kernel)."""
    params = variables["params"] if isinstance(variables, Mapping) and "params" in variables else variables
    leaves = _leaf_paths(params)
    if callable(init):
        keys = jax.random.split(key, len(leaves))
        return _rebuild(
            params, {p: jnp.asarray(init(k, p, leaf), jnp.asarray(leaf).dtype) for k, (p, leaf) in zip(keys, leaves)}
        )
    c.check_choice("init", init, INITS)
    sizes = [int(np.prod(np.shape(leaf))) for _, leaf in leaves]
    total = max(sum(sizes), 1)
    # U(-1, 1) or N(0, 1) truncated at ±2, scaled per leaf below.
    unit = _truncated_normal(key, total) if init == "truncated_normal" else _uniform(key, total)
    # A truncated normal's std is 0.8796 of the untruncated one: divide so the variance is 1/fan_in.
    correction = 0.87962566103423978 if init == "truncated_normal" else 1.0
    out: dict[tuple[str, ...], Any] = {}
    offset = 0
    for (path, leaf), size in zip(leaves, sizes):
        shape, dtype = tuple(np.shape(leaf)), jnp.asarray(leaf).dtype
        draw = unit[offset : offset + size].reshape(shape)
        offset += size
        name = path[-1]
        layer = _get(params, path[:-1])
        fan_in = _kernel_fan_in(layer)
        if name in ("kernel", "embedding", "weight"):
            out[path] = (draw / (np.sqrt(_fan_in(shape)) * correction)).astype(dtype)
        elif name == "bias" and fan_in is not None:  # a linear layer's bias: the kernel's fan-in scale
            out[path] = (draw / (np.sqrt(fan_in) * correction)).astype(dtype)
        elif name == "scale":  # a normalisation layer: identity
            out[path] = jnp.ones(shape, dtype)
        elif name == "bias":
            out[path] = jnp.zeros(shape, dtype)
        else:  # another parameter: scaled like a kernel
            out[path] = (draw / (np.sqrt(max(_fan_in(shape), 1)) * correction)).astype(dtype)
    return _rebuild(params, out)


@jax.jit
def _truncated_normal_jit(key: Array, template: Array) -> Array:
    return jax.random.truncated_normal(key, -2.0, 2.0, template.shape, jnp.float32)


def _truncated_normal(key: Array, n: int) -> Array:
    return _truncated_normal_jit(key, jnp.zeros((n,), jnp.float32))


@jax.jit
def _uniform_jit(key: Array, template: Array) -> Array:
    return jax.random.uniform(key, template.shape, jnp.float32, -1.0, 1.0)


def _uniform(key: Array, n: int) -> Array:
    return _uniform_jit(key, jnp.zeros((n,), jnp.float32))


def _get(tree: Mapping[str, Any], path: Sequence[str]) -> Any:
    for p in path:
        tree = tree[p]
    return tree


def randomise_layers(variables: Any, fresh: Any, layers: Sequence[str]) -> Any:
    """``variables`` with the parameters of ``layers`` replaced by their values in ``fresh`` (a params
    tree from :func:`fresh_parameters`); the layers' BatchNorm statistics are reset to their initial
    values (mean 0, variance 1), as both Flax's init and PyTorch's ``reset_parameters`` leave them."""
    has_collections = isinstance(variables, Mapping) and "params" in variables
    params = variables["params"] if has_collections else variables
    chosen = set(layers)

    def swap(tree: Any, new: Any, prefix: tuple[str, ...]) -> Any:
        if isinstance(tree, Mapping):
            return {k: swap(v, new[k], (*prefix, str(k))) for k, v in tree.items()}
        return new if _layer_name(prefix) in chosen else tree

    randomised = swap(params, fresh, ())
    if not has_collections:
        return randomised
    out = dict(variables)
    out["params"] = randomised
    if "batch_stats" in variables:

        def reset(tree: Any, prefix: tuple[str, ...]) -> Any:
            if isinstance(tree, Mapping):
                return {k: reset(v, (*prefix, str(k))) for k, v in tree.items()}
            if _layer_name(prefix) not in chosen:
                return tree
            return jnp.ones_like(tree) if prefix[-1] == "var" else jnp.zeros_like(tree)

        out["batch_stats"] = reset(variables["batch_stats"], ())
    return out


def _stages(names: list[str], order: str) -> list[tuple[str, list[str]]]:
    """``[(layer randomised at this stage, every layer randomised at this stage)]``."""
    if order == "independent":
        return [(n, [n]) for n in reversed(names)]
    sequence = list(reversed(names)) if order == "top_down" else list(names)
    return [(n, sequence[: i + 1]) for i, n in enumerate(sequence)]


# ---------------------------------------------------------------------------------------------------
# Similarity of explanations
# ---------------------------------------------------------------------------------------------------


@compiled(static=("method",))
def _explain(problem: Problem, inputs: Inputs, indices: Array | None, *, method: c.StaticMethod) -> Array:
    return c.explain(method, problem, inputs.variables, inputs.x, indices, inputs.kwargs)


@compiled
def _class_indices(problem: Problem, inputs: Inputs) -> Array | None:
    return problem.class_indices(inputs)


def _similarity(a: Array, b: Array, kind: str) -> Array:
    if kind == "ssim":
        if a.ndim < 3:
            raise InputError(
                f"similarity='ssim' compares images; these maps have shape {tuple(a.shape)}: use "
                "'spearman' or 'pearson'."
            )
        return jax.vmap(ssim)(a, b)
    fn = spearman if kind == "spearman" else pearson
    return fn(c.flat(a), c.flat(b))


_similarity_jit = jax.jit(_similarity, static_argnames=("kind",))


def _setup(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    method: Any,
    metric: str,
    model_kwargs: Any,
) -> tuple[Problem, Inputs, c.StaticMethod, Array | None]:
    explain_with = c.resolve_method(method, metric)
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    return problem, inputs, explain_with, _class_indices(problem, inputs)


def _choose_layers(
    model: Model, variables: Any, x: Array, layers: Sequence[str] | None, model_kwargs: Any
) -> list[str]:
    names = parameter_layers(model, variables, x, model_kwargs)
    if layers is None:
        return names
    chosen = list(layers)
    for name in chosen:
        if name not in names:
            raise LayerNotFoundError(unknown_name_message("parameter layer", name, names))
    return [n for n in names if n in chosen]


def mprt(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    method: Any,
    *,
    key: Array,
    order: str = "top_down",
    similarity: str = "spearman",
    absolute: bool = True,
    normalise: str | None = "max",
    init: str | Callable[..., Any] = "torch",
    layers: Sequence[str] | None = None,
    attributions: Any = None,
    keep_explanations: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
) -> MPRTResult:
    """Model parameter randomisation test (Adebayo et al. 2018, "Sanity Checks for Saliency Maps", §3).

    For stage l with parameters θ_l (the top l layers re-initialised, ``order="top_down"``: cascading;
    ``"bottom_up"``; or ``"independent"``: layer l alone, from the top), per sample::

        scores[l, b] = ρ( T(Φ(x_b; θ)), T(Φ(x_b; θ_l)) ),   T = |·| after normalisation

    ρ: ``"spearman"`` rank correlation (Adebayo's main measure, average ranks for ties; Quantus'
    default), ``"pearson"``, or ``"ssim"`` (on the 2-D maps).  A method that explains the model falls
    to ≈ 0 as layers are randomised; one that ignores the weights (an edge detector) stays ≈ 1.
    Quantus defaults: cascading top-down, Spearman, absolute values, normalised (scale-free for
    Spearman); its docstring calls this order "independent", and its ``return_average_correlation``
    also averages in the "original" entry.  ``key``: the re-initialisation; ``layers``: a subset of
    :func:`parameter_layers` (default: all).  See :func:`plot_mprt_cascade` for the picture.
    """
    problem, inputs, explain_with, indices = _setup(model, variables, x, target, method, "mprt", model_kwargs)
    c.check_choice("order", order, ORDERS)
    c.check_choice("similarity", similarity, SIMILARITIES)
    c.check_choice("normalise", normalise, c.NORMALISATIONS)
    c.check_key(key, True, "mprt")
    names = _choose_layers(model, inputs.variables, inputs.x, layers, model_kwargs)
    fresh = fresh_parameters(key, inputs.variables, init)

    def prepared(a: Array) -> Array:
        return c.preprocess(a, absolute=bool(absolute), normalise_by=normalise)

    original = _explain(problem, inputs, indices, method=explain_with)
    given = original if attributions is None else c.check_attributions(attributions, inputs.x)
    reference = prepared(original)
    stage_names, scores, maps = [], [], [reference]
    for name, randomised in _stages(names, order):
        stage_inputs = inputs._replace(variables=randomise_layers(inputs.variables, fresh, randomised))
        a = prepared(_explain(problem, stage_inputs, indices, method=explain_with))
        stage_names.append(name)
        scores.append(_similarity_jit(prepared(given), a, kind=similarity))
        if keep_explanations:
            maps.append(a)
    return MPRTResult(
        tuple(stage_names),
        jnp.stack(scores),
        _similarity_jit(prepared(given), reference, kind=similarity),
        jnp.stack(maps) if keep_explanations else None,
    )


def _smoothed(
    problem: Problem,
    inputs: Inputs,
    indices: Array | None,
    method: c.StaticMethod,
    draws: Array | None,
    key: Array | None,
    samples: int,
    magnitude: Array,
    batch_size: int,
) -> Array:
    """Mean of the explanations of ``x + ε σ`` over ``samples − 1`` draws ε and of ``x`` itself (Quantus:
    the last of its ``samples`` is noise-free), σ = ``magnitude`` · (max − min) of each sample.  Draw
    n is ``draws[n]`` or comes from ``fold_in(key, n)`` (memory: one chunk)."""
    total = _explain(problem, inputs, indices, method=method)
    for start, stop in c.chunks(samples - 1, batch_size):
        chunk = None if draws is None else draws[start:stop]
        total = total + _smoothed_chunk(
            problem, inputs, indices, chunk, key, jnp.arange(start, stop), magnitude, method=method
        )
    return total / samples


@compiled(static=("method",))
def _smoothed_chunk(
    problem: Problem,
    inputs: Inputs,
    indices: Array | None,
    draws: Array | None,
    key: Array | None,
    ids: Array,
    magnitude: Array,
    *,
    method: c.StaticMethod,
) -> Array:
    x = inputs.x
    if draws is None:
        assert key is not None  # smooth_mprt checked key
        draws = jax.vmap(lambda n: jax.random.normal(jax.random.fold_in(key, n), x.shape, x.dtype))(ids)
    axes = tuple(range(1, x.ndim))
    std = magnitude * (jnp.max(x, axis=axes, keepdims=True) - jnp.min(x, axis=axes, keepdims=True))
    return jnp.sum(c.explain_expanded(method, problem, inputs, x[None] + draws * std[None], indices), axis=0)


def smooth_mprt(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    method: Any,
    *,
    key: Array,
    samples: int = 50,
    noise_magnitude: float = 0.1,
    order: str = "bottom_up",
    similarity: str = "spearman",
    absolute: bool = True,
    normalise: str | None = "second_moment",
    init: str | Callable[..., Any] = "torch",
    layers: Sequence[str] | None = None,
    noise_draws: Any = None,
    batch_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> MPRTResult:
    """Smooth MPRT (Hedström et al. 2023, "Sanity Checks Revisited: An Exploration to Repair the Model
    Parameter Randomisation Test", §4.1): :func:`mprt` on denoised explanations,

        Φ̄(x; θ) = 1/N Σ_{n=1}^{N} Φ(x + ε_n; θ),   ε_n ~ N(0, σ²),  σ = noise_magnitude · (max x − min x),

    with ε_N = 0 (Quantus' last sample is noise-free), maps normalised by their second moment and
    made absolute, layers randomised bottom-up, Spearman correlation (Quantus' defaults, N = 50).
    The same ε are used for every stage (common random numbers: stage-to-stage changes are the
    model's, not the noise's; Quantus draws anew per stage, equal in distribution).
    ``noise_draws (N − 1, B, ...)``: the standard-normal ε/σ.  Returns :class:`MPRTResult`.
    """
    problem, inputs, explain_with, indices = _setup(model, variables, x, target, method, "smooth_mprt", model_kwargs)
    c.check_choice("order", order, ORDERS)
    c.check_choice("similarity", similarity, SIMILARITIES)
    c.check_choice("normalise", normalise, c.NORMALISATIONS)
    n = c.check_positive_int("samples", samples)
    magnitude = c.check_non_negative("noise_magnitude", noise_magnitude)
    c.check_key(key, True, "smooth_mprt")
    xs = inputs.x
    draws = None
    if noise_draws is not None:
        draws = c.check_draws("noise_draws", noise_draws, (n - 1, *xs.shape), "standard normal draws")
    noise_key = jax.random.fold_in(key, 1)
    size = (
        max(1, c.PERTURBED_IMAGES_PER_PASS // xs.shape[0])
        if batch_size is None
        else c.check_positive_int("batch_size", batch_size)
    )
    names = _choose_layers(model, inputs.variables, xs, layers, model_kwargs)
    fresh = fresh_parameters(key, inputs.variables, init)
    m = jnp.asarray(magnitude, xs.dtype)

    def smooth(stage_inputs: Inputs) -> Array:
        a = _smoothed(problem, stage_inputs, indices, explain_with, draws, noise_key, n, m, size)
        return c.preprocess(a, absolute=bool(absolute), normalise_by=normalise)

    reference = smooth(inputs)
    stage_names, scores = [], []
    for name, randomised in _stages(names, order):
        a = smooth(inputs._replace(variables=randomise_layers(inputs.variables, fresh, randomised)))
        stage_names.append(name)
        scores.append(_similarity_jit(reference, a, kind=similarity))
    # The reference is the smoothed explanation itself, so ``original`` is 1 by construction.
    return MPRTResult(tuple(stage_names), jnp.stack(scores), jnp.ones(xs.shape[0], jnp.float32))


def histogram_entropy(a: Array, bins: int = 100) -> Array:
    """Shannon entropy (nats) of the histogram of each sample's values, ``bins`` equal-width bins over
    [min, max] of the sample (NumPy's ``histogram`` binning; a constant map falls in one bin: 0)."""
    values = c.flat(a)

    def one(v: Array) -> Array:
        lo, hi = jnp.min(v), jnp.max(v)
        lo, hi = jnp.where(lo == hi, lo - 0.5, lo), jnp.where(lo == hi, hi + 0.5, hi)
        edges = jnp.linspace(lo, hi, bins + 1)
        idx = jnp.floor((v - lo) * (bins / (hi - lo))).astype(jnp.int32)
        idx = jnp.clip(idx, 0, bins - 1)
        # NumPy's correction so that a value equal to an edge lands where searchsorted would put it.
        idx = idx - (v < edges[idx]).astype(jnp.int32)
        idx = idx + ((v >= edges[idx + 1]) & (idx != bins - 1)).astype(jnp.int32)
        counts = jnp.zeros(bins, jnp.float32).at[idx].add(1.0)
        p = counts / jnp.sum(counts)
        return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))

    return jax.vmap(one)(values)


def efficient_mprt(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    method: Any,
    *,
    key: Array,
    bins: int = 100,
    absolute: bool = False,
    normalise: str | None = None,
    init: str | Callable[..., Any] = "torch",
    layers: Sequence[str] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Array:
    """Efficient MPRT (Hedström et al. 2023, §4.2): the relative rise of the explanation's complexity
    when the whole model is randomised,

        eMPRT_b = (H(Φ(x_b; θ_random)) − H(Φ(x_b; θ))) / H(Φ(x_b; θ))

    with H the entropy of a ``bins``-bin histogram of the map's values (:func:`histogram_entropy`;
    Quantus' ``discrete_entropy``, 100 bins, raw maps).  Higher is better (a method sensitive to the
    weights turns noisy).  Per sample ``(B,)``.  A constant original map has H = 0 and no relative
    rise: its score is the absolute rise H(Φ(x; θ_random)) (Quantus divides by zero there).
    """
    problem, inputs, explain_with, indices = _setup(model, variables, x, target, method, "efficient_mprt", model_kwargs)
    c.check_choice("normalise", normalise, c.NORMALISATIONS)
    n_bins = c.check_positive_int("bins", bins)
    c.check_key(key, True, "efficient_mprt")
    names = _choose_layers(model, inputs.variables, inputs.x, layers, model_kwargs)
    fresh = fresh_parameters(key, inputs.variables, init)
    randomised = inputs._replace(variables=randomise_layers(inputs.variables, fresh, names))

    def complexity(stage_inputs: Inputs) -> Array:
        a = c.preprocess(
            _explain(problem, stage_inputs, indices, method=explain_with),
            absolute=bool(absolute),
            normalise_by=normalise,
        )
        return _entropy_jit(a, bins=n_bins)

    before, after = complexity(inputs), complexity(randomised)
    return jnp.where(before > 0, (after - before) / jnp.where(before > 0, before, 1.0), after)


_entropy_jit = jax.jit(histogram_entropy, static_argnames=("bins",))


@compiled(static=("method", "similarity", "absolute", "normalise_by"))
def _random_logit(
    problem: Problem,
    inputs: Inputs,
    indices: Array,
    others: Array,
    *,
    method: c.StaticMethod,
    similarity: str,
    absolute: bool,
    normalise_by: str | None,
) -> Array:
    a = c.explain(method, problem, inputs.variables, inputs.x, indices, inputs.kwargs)
    b = c.explain(method, problem, inputs.variables, inputs.x, others, inputs.kwargs)
    a = c.preprocess(a, absolute=absolute, normalise_by=normalise_by)
    b = c.preprocess(b, absolute=absolute, normalise_by=normalise_by)
    return _similarity(a, b, similarity)


def random_logit(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    method: Any,
    *,
    key: Array | None = None,
    similarity: str = "ssim",
    absolute: bool = False,
    normalise: str | None = "max",
    other_classes: Any = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Array:
    """Random logit test (Sixt, Granz & Landgraf 2020, "When Explanations Lie: Why Many Modified BP
    Attributions Fail", §5): the similarity between the explanation of the target class and that of
    a uniformly drawn *other* class,

        RL_b = SSIM( Φ_c(x_b), Φ_{c'}(x_b) ),   c' ~ U({0..K−1} \\ {c})

    per sample ``(B,)``; low is good (the map depends on the class).  SSIM on the 2-D maps (the
    paper's); Quantus flattens the maps to 1-D vectors before its SSIM, which compares rows of
    unrelated pixels.  ``other_classes (B,)`` injects c'.  Quantus defaults: SSIM, maps normalised by
    their maximum (per sample here), no absolute value.  Needs class targets.
    """
    explain_with = c.resolve_method(method, "random_logit")
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    if problem.target.kind == "callable":
        raise InputError(
            "random_logit compares explanations of different classes; it needs class targets, not a callable."
        )
    c.check_choice("similarity", similarity, SIMILARITIES)
    c.check_choice("normalise", normalise, c.NORMALISATIONS)
    indices = _class_indices(problem, inputs)
    num_classes = int(jax.eval_shape(lambda: problem.outputs(inputs)).shape[-1])
    if num_classes < 2:
        raise InputError("random_logit needs a model with at least two classes.")
    if other_classes is None:
        key = c.check_key(key, True, "random_logit")
        shift = jax.random.randint(key, indices.shape, 1, num_classes)
        others = (indices + shift) % num_classes  # uniform over the other classes
    else:
        others = c.check_draws("other_classes", other_classes, indices.shape, "one class per sample", jnp.int32)
        if c.is_concrete(others) and c.is_concrete(indices) and bool(jnp.any(others == indices)):
            raise InputError("other_classes must differ from each sample's target class.")
    return _random_logit(
        problem,
        inputs,
        indices,
        others,
        method=explain_with,
        similarity=similarity,
        absolute=bool(absolute),
        normalise_by=normalise,
    )
