"""The model adapter: any Flax Linen module or plain function as ``(variables, x) -> outputs``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from .errors import InputError

Model = nn.Module | Callable[..., Any]


def _has_array(value: Any) -> bool:
    return any(isinstance(leaf, (jax.Array, np.ndarray)) for leaf in jax.tree_util.tree_leaves(value))


@dataclasses.dataclass(frozen=True)
class Forward:
    """A model as a hashable pure function, so jitted methods cache one compilation per model.

    ``static_kwargs`` are the hashable options of ``model_kwargs`` (``deterministic=True``...);
    array-valued ones (``rngs={"dropout": key}``, masks) travel as a traced argument instead, so a
    new key does not recompile.
    """

    model: Any
    static_kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def is_module(self) -> bool:
        return isinstance(self.model, nn.Module)

    def __call__(self, variables: Any, x: jax.Array, dynamic_kwargs: Mapping[str, Any] | None = None) -> Any:
        kwargs = dict(self.static_kwargs)
        kwargs.update(dynamic_kwargs or {})
        if self.is_module:
            return self.model.apply(variables, x, **kwargs)
        return self.model(variables, x, **kwargs)

    def module(self, what: str = "this method") -> nn.Module:
        """The Linen module, or a clear error when a plain function was given."""
        if not self.is_module:
            raise InputError(
                f"{what} needs to reach inside the model by layer name, which requires a "
                f"flax.linen.Module; got {type(self.model).__name__}. Pass the unbound Linen module "
                "and its variables instead of a function."
            )
        return self.model


def make_forward(model: Model, model_kwargs: Mapping[str, Any] | None) -> tuple[Forward, dict[str, Any]]:
    """Split ``model_kwargs`` into the static part (in the returned ``Forward``) and the traced part."""
    if not (isinstance(model, nn.Module) or callable(model)):
        raise InputError(f"model must be a flax.linen.Module or a callable f(variables, x); got {type(model).__name__}.")
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
    return Forward(model, tuple(sorted(static.items()))), dynamic
