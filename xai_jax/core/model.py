"""The model adapter: a Flax Linen or NNX module, an Equinox module or a plain function as
``(variables, x) -> outputs``.

:func:`adapt_model` puts every kind of model in one form, ``(model, variables)`` with ``model``
hashable and ``variables`` the arrays to trace: a Linen module and a function are kept as they are;
an ``nnx.Module`` (or its graph definition) becomes an :class:`~xai_jax.core.nnx_model.NnxModel`
with its state as ``variables``; an ``equinox.Module`` becomes an
:class:`~xai_jax.core.equinox_model.EqxModel` with its arrays as ``variables``.

Methods are compiled once per model and per static option.  The model is part of the compilation
key, so it must compare equal to itself across calls: :func:`structural_key` gives every model a
hashable key -- a Linen module by its type and fields (lists and dicts inside, as in
``partial(ResNet, stage_sizes=[2, 2, 2, 2])``, are fine), a function by its code and what it closes
over, anything else by value when hashable and by identity otherwise.  A new ``lambda`` created
for every call therefore reuses the first compilation when it captures the same objects.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from . import equinox_model, nnx_model
from .errors import InputError
from .nnx_model import NnxModel

#: What the calling convention's ``model`` may be: a Linen module, an ``nnx.Module`` or its
#: ``nnx.GraphDef``, an ``equinox.Module``, or a function ``f(variables, x, **kwargs)``.
Model = nn.Module | Callable[..., Any]


def adapt_model(model: Any, variables: Any) -> tuple[Any, Any]:
    """``(model, variables)`` in the adapter's form (see the module docstring).

    NNX: ``(module, None)`` splits the module's state inside; ``(module, state)`` replaces that part
    of its state (to differentiate or vary it); ``(graphdef, state)`` is the functional form.
    Equinox: ``(module, None)`` or ``(module, params)`` with ``params`` like
    ``eqx.filter(module, eqx.is_array)``.  Anything else is returned unchanged.

    Example:
      >>> from flax import nnx
      >>> model, state = adapt_model(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), None)
      >>> type(model).__name__, type(state).__name__
      ('NnxModel', 'State')
    """
    if isinstance(model, nn.Module):
        return model, variables
    if isinstance(model, NnxModel) or nnx_model.is_nnx_module(model) or nnx_model.is_graphdef(model):
        return nnx_model.adapt(model, variables)
    if equinox_model.is_eqx_module(model):
        return equinox_model.adapt(model, variables)
    return model, variables


class RecompilationWarning(UserWarning):
    """The same model code was compiled many times because it captures new objects on each call."""


class _Identity:
    """Compares by identity; keeps the object alive so its ``id`` is never reused while keyed."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.value is self.value

    def __repr__(self) -> str:
        return f"<{type(self.value).__name__} at {id(self.value):#x}>"


def structural_key(value: Any, _depth: int = 0) -> Any:
    """A hashable key for ``value``: equal keys mean the same computation (see module docstring)."""
    if _depth > 12:
        return _Identity(value)
    nested = functools.partial(structural_key, _depth=_depth + 1)
    if isinstance(value, nn.Module):
        try:
            hash(value)
            return ("module", value)
        except TypeError:
            fields = tuple(
                (f.name, nested(getattr(value, f.name, None))) for f in dataclasses.fields(value) if f.name != "parent"
            )
            return ("module", type(value), fields)
    if isinstance(value, (jax.Array, np.ndarray)):
        return _Identity(value)
    if isinstance(value, types.FunctionType):
        cells = tuple(nested(c.cell_contents) if _cell_filled(c) else None for c in value.__closure__ or ())
        return (
            "function",
            value.__code__,
            _Identity(value.__globals__),
            cells,
            nested(value.__defaults__),
            nested(value.__kwdefaults__),
        )
    if isinstance(value, types.MethodType):
        return ("method", nested(value.__func__), nested(value.__self__))
    if isinstance(value, functools.partial):
        return ("partial", nested(value.func), nested(value.args), nested(value.keywords))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(nested(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((nested(k), nested(v)) for k, v in value.items()))
    try:
        hash(value)
    except TypeError:
        return _Identity(value)
    return (type(value), value)


def _cell_filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises ValueError
    except ValueError:
        return False
    return True


class KeyedCallable:
    """A callable compared and hashed by :func:`structural_key` (for jit-static fields)."""

    __slots__ = ("fn", "key")

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.key = structural_key(fn)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyedCallable) and other.key == self.key


_COMPILES_PER_CODE: dict[Any, set[int]] = {}
_WARNED: set[Any] = set()
_WARN_AFTER = 8


def _note_new_closure(model: Any, key: Any) -> None:
    """Warn once when one function's code arrives with new captured objects again and again (each
    is a new compilation, ~1 s): the usual cause is a lambda over changing arrays inside a loop."""
    code = getattr(model, "__code__", None)
    if code is None or code in _WARNED:
        return
    seen = _COMPILES_PER_CODE.setdefault(code, set())
    seen.add(hash(key))
    if len(_COMPILES_PER_CODE) > 256:  # bounded: forget the oldest code objects
        _COMPILES_PER_CODE.pop(next(iter(_COMPILES_PER_CODE)))
    if len(seen) > _WARN_AFTER:
        _WARNED.add(code)
        warnings.warn(
            f"the model function {code.co_name!r} ({code.co_filename}:{code.co_firstlineno}) was passed {len(seen)} "
            "times capturing different objects, and each is compiled anew (about a second each). Define the function "
            "once and pass what changes as variables or model_kwargs (arrays there are traced, not compiled in).",
            RecompilationWarning,
            stacklevel=4,
        )


@dataclasses.dataclass(frozen=True, eq=False)
class Forward:
    """A model as a hashable pure function, so jitted methods cache one compilation per model.

    ``static_kwargs`` are the hashable options of ``model_kwargs`` (``deterministic=True``...);
    array-valued ones (``rngs={"dropout": key}``, masks) travel as a traced argument instead, so a
    new key does not recompile.  Equality and hash follow :func:`structural_key` of the model.
    """

    model: Any
    static_kwargs: tuple[tuple[str, Any], ...] = ()

    @functools.cached_property
    def _key(self) -> Any:
        return (structural_key(self.model), self.static_kwargs)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Forward) and other._key == self._key

    @property
    def is_module(self) -> bool:
        """Whether the model has named layers: a Linen module or an NNX model."""
        return isinstance(self.model, (nn.Module, NnxModel))

    @property
    def root_name(self) -> str | None:
        """The root module's class name (the outermost scope of its traced equations), if a module."""
        if isinstance(self.model, nn.Module):
            return type(self.model).__name__
        if isinstance(self.model, NnxModel):
            return self.model.root_name
        return None

    def __call__(self, variables: Any, x: jax.Array, dynamic_kwargs: Mapping[str, Any] | None = None) -> Any:
        kwargs = dict(self.static_kwargs)
        kwargs.update(dynamic_kwargs or {})
        if isinstance(self.model, nn.Module):
            return self.model.apply(variables, x, **kwargs)
        return self.model(variables, x, **kwargs)

    def module(self, what: str = "this method") -> Any:
        """The model, when it has named layers (Linen or NNX); else a clear error saying what is needed."""
        if not self.is_module:
            if isinstance(self.model, equinox_model.EqxModel):
                raise InputError(
                    f"{what} needs to reach inside the model by layer name, and Equinox modules have no layer names in "
                    f"xai_jax (their submodule calls cannot be intercepted); got the Equinox model "
                    f"{self.model.root_name}. Methods without a layer work on it (gradient, integrated_gradients, "
                    "smoothgrad, occlusion, lrp/deeplift at the input...); for layer methods write the model in Flax "
                    "(flax.nnx or flax.linen)."
                )
            raise InputError(
                f"{what} needs to reach inside the model by layer name, which requires a flax.linen.Module or an "
                f"nnx.Module; got {type(self.model).__name__}. Pass the module (and its variables, or None for an "
                "nnx.Module) instead of a function."
            )
        return self.model

    def layer_parameters(self, variables: Any, layer: str) -> dict[str, Any]:
        """``{name: array}`` of the parameters of ``layer`` (``{"kernel": ..., "bias": ...}``)."""
        if isinstance(self.model, NnxModel):
            return nnx_model.layer_parameters(variables, layer)
        params = variables.get("params", {}) if hasattr(variables, "get") else {}
        for part in layer.split("#")[0].split("/"):
            params = params.get(part, {}) if hasattr(params, "get") else {}
        return dict(params) if hasattr(params, "items") else {}


def _has_array(value: Any) -> bool:
    return any(isinstance(leaf, (jax.Array, np.ndarray)) for leaf in jax.tree_util.tree_leaves(value))


def make_forward(model: Model, model_kwargs: Mapping[str, Any] | None) -> tuple[Forward, dict[str, Any]]:
    """Split ``model_kwargs`` into the static part (in the returned ``Forward``) and the traced part."""
    if nnx_model.is_nnx_module(model) or nnx_model.is_graphdef(model) or equinox_model.is_eqx_module(model):
        # a caller skipped adapt_model: a module here would be called as f(variables, x)
        raise InputError(f"internal: pass {type(model).__name__} through adapt_model(model, variables) first.")
    if not (isinstance(model, nn.Module) or callable(model)):
        raise InputError(
            "model must be a flax.linen.Module, an nnx.Module (or its GraphDef), an equinox.Module or a callable "
            f"f(variables, x); got {type(model).__name__}."
        )
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        raise InputError(f"model_kwargs must be a mapping of keyword arguments; got {type(model_kwargs).__name__}.")
    static, dynamic = {}, {}
    for name, value in (model_kwargs or {}).items():
        if _has_array(value):
            dynamic[name] = value
        else:
            try:
                hash(value)
            except TypeError:
                raise InputError(
                    f"model_kwargs[{name!r}] is neither an array nor hashable ({type(value).__name__}); "
                    "pass arrays or plain Python values."
                ) from None
            static[name] = value
    forward = Forward(model, tuple(sorted(static.items())))
    if isinstance(model, types.FunctionType):
        _note_new_closure(model, forward._key)
    return forward, dynamic
