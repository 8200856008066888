"""From a user's call to a jitted computation: validation, and the static/traced split.

Every method's public function calls :func:`prepare` (eager checks with clear errors, on concrete
values) and then its jitted implementation ``impl(problem, inputs, **static_options)``.  ``Problem``
is static and hashable (the model and the kind of target), ``Inputs`` is a pytree of arrays, so one
compilation serves every batch of the same shape and every class index.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .checks import all_finite, count_nonfinite
from .errors import InputError, XaiJaxError
from .model import Forward, Model, adapt_model, make_forward
from .numerics import guarded_jit
from .targets import Target, TargetSpec, resolve_target


@dataclasses.dataclass(frozen=True)
class Problem:
    """The static half of a method call: the model and the kind of target."""

    forward: Forward
    target: TargetSpec

    def outputs(self, inputs: Inputs, x: jax.Array | None = None) -> Any:
        return self.forward(inputs.variables, inputs.x if x is None else x, inputs.kwargs)

    def class_indices(self, inputs: Inputs) -> jax.Array | None:
        """Target classes fixed at ``inputs.x`` (one forward pass only for ``target=None``)."""
        if self.target.kind == "argmax":
            return self.target.indices(self.outputs(inputs), None)
        return inputs.indices

    def scalar_fn(self, inputs: Inputs, indices: jax.Array | None) -> Callable[[jax.Array], jax.Array]:
        """``x -> (B,)`` target scalars with the classes held fixed."""

        def scalars(x: jax.Array) -> jax.Array:
            return self.target.select(self.outputs(inputs, x), indices)

        return scalars


class Inputs(NamedTuple):
    """The traced half of a method call (a pytree)."""

    variables: Any
    x: jax.Array
    indices: jax.Array | None
    kwargs: Mapping[str, Any]


def check_input(x: Any, name: str = "x", *, tokens: bool | str = False) -> jax.Array:
    """A floating array with a non-empty batch axis and, where it can be checked, finite values.

    The finite check runs whenever ``x`` is concrete, also inside a caller's ``jax.jit`` that
    traces something else (``jax.jit(lambda params: xj.gradient(model, params, x))``); a traced
    ``x`` cannot be checked and is taken as given.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise InputError(f"{name} must be an array of shape (B, ...); got {type(x).__name__} ({err}).") from None
    if x.ndim < 2:
        raise InputError(
            f"{name} has shape {tuple(x.shape)}: a batch axis is missing. Methods take a batch "
            f"(B, ...); for a single example pass {name}[None]."
        )
    if x.shape[0] == 0:
        raise InputError(f"{name} has shape {tuple(x.shape)}: the batch is empty (B = 0); pass at least one example.")
    if jnp.issubdtype(x.dtype, jnp.integer) and tokens is True:
        return jnp.asarray(x)  # token ids: the method explains the embedding (see xai_jax.trace.tokens)
    if jnp.issubdtype(x.dtype, jnp.integer) and isinstance(tokens, str):
        raise InputError(
            f"{name} has dtype {x.dtype} (token ids?): {tokens} differentiates its input, and integer inputs have no "
            "gradient. Use xj.lrp (it explains the embedding lookup's output, one value per token), or pass the "
            "embedding as the input (then sum the attribution over the embedding axis for one value per token)."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise InputError(
            f"{name} has dtype {x.dtype}; attributions need floating inputs in the model's input "
            "range (e.g. uint8 images / 255 as float32)."
        )
    if all_finite(x) is False:
        raise InputError(
            f"{name} contains {count_nonfinite(x)} NaN or infinite value(s); attributions of such inputs are "
            "meaningless."
        )
    return jnp.asarray(x)


def _leaf_key(leaf: Any) -> tuple[Any, Any]:
    # dtype objects are hashable and compare like their names; formatting them as strings cost
    # ~0.3 ms per call on a model with a few dozen parameters
    dtype = getattr(leaf, "dtype", None)
    if dtype is not None and hasattr(leaf, "shape"):
        return tuple(leaf.shape), dtype
    return tuple(np.shape(leaf)), str(type(leaf) if dtype is None else dtype)


def _shape_key(tree: Any) -> tuple[Any, ...]:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return (treedef, tuple(_leaf_key(leaf) for leaf in leaves))


def _leaf_struct(leaf: Any) -> jax.ShapeDtypeStruct:
    dtype = getattr(leaf, "dtype", None)
    if isinstance(dtype, np.dtype) and hasattr(leaf, "shape"):  # arrays: no type promotion to run
        return jax.ShapeDtypeStruct(leaf.shape, jax.dtypes.canonicalize_dtype(dtype))
    return jax.ShapeDtypeStruct(np.shape(leaf), jnp.result_type(leaf))  # Python scalars, PRNG keys


def as_struct(tree: Any) -> Any:
    """Shape/dtype structs of ``tree``'s leaves, with the dtypes JAX would give them (canonical)."""
    return jax.tree_util.tree_map(_leaf_struct, tree)


#: Results of shape-only computations, most recently used last (see :func:`cached_trace`).
_TRACES: collections.OrderedDict[Any, Any] = collections.OrderedDict()
_TRACES_KEPT = 256


def cached_trace(tag: str, forward: Forward, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` for a shape-only computation (``eval_shape``, layer listing, a model's layer
    structure), cached per ``(tag, forward, shapes of args)`` so repeated calls on same-shaped batches
    do not re-trace.  Only the result is kept (never ``args``: they may be the caller's arrays); the
    256 most recently used results."""
    key = (tag, forward, _shape_key(args))
    try:
        value = _TRACES[key]
        _TRACES.move_to_end(key)
        return value
    except KeyError:  # not cached (or evicted by another thread meanwhile)
        pass
    value = fn(*args)
    _TRACES[key] = value
    while len(_TRACES) > _TRACES_KEPT:
        _TRACES.popitem(last=False)
    return value


def output_struct(forward: Forward, variables: Any, x: jax.Array, kwargs: Mapping[str, Any]) -> Any:
    """Shape/dtype of the model's outputs for ``x`` (cached per model and shapes), with checks."""
    structs = (as_struct(variables), jax.ShapeDtypeStruct(x.shape, x.dtype), as_struct(dict(kwargs)))
    try:
        out = cached_trace("outputs", forward, lambda *a: jax.eval_shape(forward, *a), *structs)
    except XaiJaxError:  # the adapter's own clear errors (an NNX model in training mode...)
        raise
    except Exception as err:
        raise model_error(forward, x, err, structs[0], structs[2]) from err
    leaves = jax.tree_util.tree_leaves(out)
    if not leaves or leaves[0].ndim == 0 or leaves[0].shape[0] != x.shape[0]:
        got = tuple(leaves[0].shape) if leaves else "nothing"
        raise InputError(
            f"the model maps x of shape {tuple(x.shape)} to outputs of shape {got}, whose leading axis "
            f"is not the batch of {x.shape[0]}: x seems to lack its batch axis (pass x[None] for one "
            "example) or the model mixes samples."
        )
    return out


def model_error(forward: Forward, x: Any, err: Exception, variables: Any = None, kwargs: Any = None) -> InputError:
    """The model's own error on ``x``, led by a batch-axis hint only when the batch axis is really
    missing: ``x`` has exactly the shape of one example the model declares, or the model accepts
    ``x[None]``."""
    declared = getattr(forward.model, "input_shape", None)
    missing = isinstance(declared, tuple) and tuple(x.shape) == declared
    if not missing and variables is not None:
        try:
            jax.eval_shape(forward, variables, jax.ShapeDtypeStruct((1, *x.shape), x.dtype), kwargs)
            missing = True
        except Exception:
            missing = False
    if missing:
        return InputError(
            f"x has shape {tuple(x.shape)}, one example of this model's input: the batch "
            f"axis is missing. Pass x[None] (shape {(1, *x.shape)})."
        )
    return InputError(
        f"the model failed on x of shape {tuple(x.shape)} ({x.dtype}): {type(err).__name__}: {err} "
        "(methods pass x to the model as given: a batch with the batch axis first, in the model's layout)"
    )


def prepare(
    model: Model,
    variables: Any,
    x: Any,
    target: Target = None,
    model_kwargs: Mapping[str, Any] | None = None,
    *,
    tokens: bool | str = False,
) -> tuple[Problem, Inputs]:
    """Validate a method call and split it into its static and traced halves (``tokens``: True if the
    method takes integer inputs, or its name for the error that says it does not)."""
    model, variables = adapt_model(model, variables)
    forward, dynamic_kwargs = make_forward(model, model_kwargs)
    x = check_input(x, tokens=tokens)
    out = output_struct(forward, variables, x, dynamic_kwargs)
    output_shape = tuple(out.shape) if hasattr(out, "shape") else None
    spec, indices = resolve_target(target, x.shape[0], output_shape)
    return Problem(forward, spec), Inputs(variables, x, indices, dynamic_kwargs)


def compiled(impl: Callable[..., Any] | None = None, *, static: tuple[str, ...] = ()) -> Any:
    """Jit ``impl(problem, inputs, **options)`` with ``problem`` and the named options static."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        return guarded_jit(fn, static_argnames=("problem", *static))

    return wrap(impl) if impl is not None else wrap
