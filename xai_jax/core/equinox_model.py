"""Equinox modules in the calling convention: arrays traced, everything else static.

An ``eqx.Module`` is a pytree of its arrays and of static fields.  The adapter partitions it
(``params, static = eqx.partition(model, eqx.is_array)``): :class:`EqxModel` holds the static half
(hashable, compared by Equinox's own equality: part of the compilation key) and the arrays travel as
the ``variables`` argument.  An Equinox model is written for one example, as Equinox's own examples
are, so the adapter runs it over the batch with ``jax.vmap``; a model written for a batch is passed
as a function instead::

    params, static = eqx.partition(model, eqx.is_array)
    xj.gradient(lambda p, x: eqx.combine(p, static)(x), params, x)

Equinox modules have no layer names here (nothing intercepts their submodule calls): methods that
reach a layer by name refuse them with a message saying so.  Equinox is imported only when the
user's model already comes from it.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import jax

from .errors import InputError, ModelModeError


def _equinox() -> Any:
    return sys.modules.get("equinox")


def is_eqx_module(value: Any) -> bool:
    """True for an ``equinox.Module`` (never imports Equinox: without it loaded there is none)."""
    eqx = _equinox()
    return eqx is not None and isinstance(value, eqx.Module)


@dataclasses.dataclass(frozen=True)
class EqxModel:
    """An Equinox module as ``f(params, x, **kwargs) = jax.vmap(combine(params, static))(x)``.

    ``static`` is ``eqx.partition(model, eqx.is_array)[1]``: the module without its arrays, hashable
    and compared with Equinox's equality.
    """

    static: Any

    @property
    def root_name(self) -> str:
        return type(self.static).__name__

    def __call__(self, params: Any, x: Any, **kwargs: Any) -> Any:
        eqx = _equinox()
        model = eqx.combine(params, self.static)
        # Equinox models take one example; kwargs (a key, a mask) are shared by every example
        return jax.vmap(lambda example: model(example, **kwargs))(x)


def adapt(model: Any, variables: Any) -> tuple[EqxModel, Any]:
    """``(EqxModel, params)`` from ``(module, None)`` (its own arrays) or ``(module, params)``.

    ``params`` is a tree like ``eqx.filter(model, eqx.is_array)`` (``None`` where it gives nothing:
    those arrays stay the module's own), so ``jax.grad`` of an explanation with respect to
    ``eqx.filter(model, eqx.is_inexact_array)`` works.

    Example:
      >>> import equinox as eqx
      >>> mlp = eqx.nn.MLP(4, 3, 8, 1, key=jax.random.key(0))
      >>> f, params = adapt(mlp, None)
      >>> f(params, jax.numpy.ones((5, 4))).shape
      (5, 3)
    """
    eqx = _equinox()
    _refuse_training_mode(model)
    own, static = eqx.partition(model, eqx.is_array)
    if variables is None:
        return EqxModel(static), own
    try:
        merged = jax.tree_util.tree_map(
            lambda given, mine: mine if given is None else given, variables, own, is_leaf=lambda leaf: leaf is None
        )
    except ValueError as err:
        raise InputError(
            "with an Equinox module, variables must be None (its own arrays) or a tree of the module's structure, "
            "such as "
            f"eqx.filter(model, eqx.is_array) ({err})."
        ) from None
    return EqxModel(static), merged


def _refuse_training_mode(model: Any) -> None:
    eqx = _equinox()
    dropout = getattr(getattr(eqx, "nn", None), "Dropout", None)
    if dropout is None:
        return
    on = [
        leaf
        for leaf in jax.tree_util.tree_leaves(model, is_leaf=lambda n: isinstance(n, dropout))
        if isinstance(leaf, dropout) and not leaf.inference and leaf.p > 0
    ]
    if on:
        raise ModelModeError(
            f"the Equinox model has {len(on)} eqx.nn.Dropout layer(s) with inference=False (training mode). "
            "Explanations are "
            "of the model in inference mode: pass eqx.nn.inference_mode(model)."
        )
