"""Shared plumbing of the uncertainty family: argument checks, dropout rngs, dependence on a key."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ..core import InputError, Inputs, Problem, Target, compat, prepare
from ..core.model import Model, adapt_model
from ..core.nnx_model import NnxModel
from ..core.problem import as_struct, cached_trace

#: Keyword arguments that switch a zoo model's dropout on (``MCDropoutCNN(x, deterministic=False)``).
DEFAULT_STOCHASTIC_KWARGS: Mapping[str, Any] = {"deterministic": False}


def with_rng(kwargs: Mapping[str, Any], collection: str, key: jax.Array) -> dict[str, Any]:
    """``kwargs`` with ``rngs[collection] = key`` (other rng streams the caller passed are kept)."""
    rngs = dict(kwargs.get("rngs", {}) or {})
    rngs[collection] = key
    return {**kwargs, "rngs": rngs}


def prepare_stochastic(
    model: Model,
    variables: Any,
    x: Any,
    target: Target,
    key: jax.Array,
    *,
    model_kwargs: Mapping[str, Any] | None,
    stochastic_kwargs: Mapping[str, Any] | None,
    rng_collection: str,
    run_without_switch: bool = True,
) -> tuple[Problem, Inputs, str]:
    """``prepare`` for a model run with its dropout on: ``model_kwargs | stochastic_kwargs`` plus
    ``rngs={rng_collection: key}`` (the key is traced, so a new key does not recompile).

    When the model rejects the *default* switch ``deterministic=False`` and ``run_without_switch``,
    it is prepared without it (most often it has no dropout at all) and the third value is a note
    for the caller's "output does not depend on the rng" error; otherwise the note is empty.

    An NNX model is switched by attribute, not by argument: with ``stochastic_kwargs=None`` every
    submodule with a ``deterministic`` attribute (``nnx.Dropout``) is set to ``False`` in the copy
    the adapter runs (never in the user's module), BatchNorm stays on its running averages, and
    ``rngs={rng_collection: key}`` re-seeds the model's dropout streams (see
    :mod:`xai_jax.core.nnx_model`).  Explicit ``stochastic_kwargs`` are passed to its ``__call__``.
    """
    if not isinstance(rng_collection, str) or not rng_collection:
        raise InputError(f"rng_collection must be the name of an rng stream such as 'dropout'; got {rng_collection!r}.")
    model, variables = adapt_model(model, variables)
    if isinstance(model, NnxModel):
        model = dataclasses.replace(model, stochastic=True, dropout_on=stochastic_kwargs is None)
        kwargs = with_rng({**dict(model_kwargs or {}), **dict(stochastic_kwargs or {})}, rng_collection, key)
        problem, inputs = prepare(model, variables, x, target, kwargs)
        note = (
            ""
            if stochastic_kwargs is not None
            else (
                " (An NNX model's dropout is switched on by setting deterministic=False on the submodules "
                "that have it, nnx.Dropout; this model has none that draws from the rng.)"
            )
        )
        return problem, inputs, note
    kwargs = {
        **dict(model_kwargs or {}),
        **dict(DEFAULT_STOCHASTIC_KWARGS if stochastic_kwargs is None else stochastic_kwargs),
    }
    kwargs = with_rng(kwargs, rng_collection, key)
    try:
        problem, inputs = prepare(model, variables, x, target, kwargs)
    except InputError as err:
        cause = err.__cause__
        rejected = isinstance(cause, TypeError) and "keyword" in str(cause)
        if rejected and stochastic_kwargs is None and run_without_switch:
            # Most often a model without dropout: run it as it is, so the caller's rng-dependence
            # check can say plainly that every sample would be the same.
            try:
                problem, inputs = prepare(
                    model, variables, x, target, with_rng(dict(model_kwargs or {}), rng_collection, key)
                )
            except InputError:
                pass
            else:
                return (
                    problem,
                    inputs,
                    (
                        f" The model does not take {dict(DEFAULT_STOCHASTIC_KWARGS)}, Flax's usual dropout switch;"
                        " if it switches dropout with another keyword, pass it as stochastic_kwargs= "
                        "(e.g. {'train': True})."
                    ),
                )
        if rejected:
            shown = {k: v for k, v in kwargs.items() if k != "rngs"}
            raise InputError(
                f"the model does not accept the keyword arguments {shown} ({cause}). Pass "
                "stochastic_kwargs= the keyword arguments that switch its dropout on (e.g. {'train': True}; "
                "{} if it needs none) and model_kwargs= any others."
            ) from cause
        raise
    return problem, inputs, ""


def output_depends_on_rng(problem: Problem, inputs: Inputs, rng_collection: str) -> bool:
    """Whether the model's output depends on the ``rng_collection`` key at all (read off its jaxpr).

    A model without dropout, with dropout rate 0, or with its dropout switched off never draws from
    the stream, so every Monte-Carlo sample would be the same.  The check is structural (no numbers
    are compared), cached per model and shapes, and conservative through nested calls (a call any
    of whose inputs depends on the key counts as depending on it).
    """
    key = inputs.kwargs["rngs"][rng_collection]

    def run(k: jax.Array, variables: Any, x: jax.Array, kwargs: Any) -> Any:
        return problem.forward(variables, x, with_rng(kwargs, rng_collection, k))

    def depends(*structs: Any) -> bool:
        closed = jax.make_jaxpr(run)(*structs)
        return _depends_on_first_input(closed.jaxpr)

    structs = (as_struct(key), as_struct(inputs.variables), as_struct(inputs.x), as_struct(dict(inputs.kwargs)))
    return bool(cached_trace(f"uncertainty:rng-dependence:{rng_collection}", problem.forward, depends, *structs))


def _depends_on_first_input(jaxpr: Any) -> bool:
    dependent = {id(jaxpr.invars[0])}
    for eqn in jaxpr.eqns:
        if any(compat.is_jaxpr_var(v) and id(v) in dependent for v in eqn.invars):
            dependent.update(id(v) for v in eqn.outvars)
    return any(compat.is_jaxpr_var(v) and id(v) in dependent for v in jaxpr.outvars)


# ---------------------------------------------------------------------------------------------------
# Dropout as a product with its mask, so relevance propagation (LRP, DeepLIFT) can pass through it
# ---------------------------------------------------------------------------------------------------


def _dropout_as_product(
    next_fun: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], context: Any
) -> Any:
    """Flax's ``nn.Dropout.__call__`` with ``select(mask, x / keep, 0)`` written as ``(x * mask) / keep``.

    The mask is drawn exactly as Flax draws it (same rng stream, same ``bernoulli`` call), and
    ``(x * 1) / keep == x / keep``, ``(x * 0) / keep == 0``: the outputs and gradients are
    bit-identical to ``nn.Dropout``'s (tested), but the trace is now a product by a constant, which
    the propagation engine treats as an element-wise affine step (relevance passes through the
    kept units), instead of a ``select_n`` it rejects.
    """
    module = context.module
    if (
        context.method_name != "__call__"
        or not isinstance(module, nn.Dropout)
        or type(module).__call__ is not nn.Dropout.__call__
    ):
        return next_fun(*args, **kwargs)
    names = ("inputs", "deterministic", "rng")
    bound = dict(zip(names, args))
    bound.update(kwargs)
    inputs = bound["inputs"]
    deterministic = nn.merge_param("deterministic", module.deterministic, bound.get("deterministic"))
    if module.rate == 0.0 or deterministic or module.rate == 1.0:
        return next_fun(*args, **kwargs)
    keep = 1.0 - module.rate
    rng = bound.get("rng")
    if rng is None:
        rng = module.make_rng(module.rng_collection)
    shape = list(inputs.shape)
    for dim in module.broadcast_dims:
        shape[dim] = 1
    mask = jnp.broadcast_to(jax.random.bernoulli(rng, p=keep, shape=shape), inputs.shape)
    return (inputs * mask.astype(inputs.dtype)) / keep


_PRODUCT_DROPOUT_CLASSES: dict[type, type] = {}


def product_dropout(model: Model) -> Model:
    """The same Linen model with every ``nn.Dropout`` computed as ``(x * mask) / keep``.

    Returns an instance of a subclass of ``type(model)`` (same name, same fields, same variables);
    an adapted NNX model (:class:`~xai_jax.core.nnx_model.NnxModel`) runs its ``nnx.Dropout``
    layers the same way (same key, same mask); a plain function is returned unchanged.  Used by
    :func:`explain_mc` so that propagation methods (LRP, DeepLIFT), whose engine refuses
    ``select_n``, work on MC-dropout samples.
    """
    if isinstance(model, NnxModel):
        return dataclasses.replace(model, product_dropout=True)
    if not isinstance(model, nn.Module):
        return model
    cls = type(model)
    if getattr(cls, "_xai_jax_product_dropout", False):
        return model
    sub = _PRODUCT_DROPOUT_CLASSES.get(cls)
    if sub is None:

        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N807 (the subclass's __call__)
            with nn.intercept_methods(_dropout_as_product):
                return cls.__call__(self, *args, **kwargs)

        sub = type(
            cls.__name__,
            (cls,),
            {
                "__call__": __call__,
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "_xai_jax_product_dropout": True,
            },
        )
        _PRODUCT_DROPOUT_CLASSES[cls] = sub
    fields = {
        f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.init and f.name not in ("parent", "name")
    }
    return sub(**fields)
