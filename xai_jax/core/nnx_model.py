"""Flax NNX models in the calling convention: the graph definition is static, the state is traced.

An ``nnx.Module`` is an object that carries its own state.  Methods need a pure function of arrays,
so the adapter splits it (``graphdef, state = nnx.split(model)``): :class:`NnxModel` holds the
graph definition -- hashable, so it is part of the compilation key, as a Linen module's fields are
-- and the state travels as the ``variables`` argument, traced like a Linen variables dict.  Every
call merges a *fresh copy* of the module inside the traced function (``nnx.merge`` on a copy of the
state), so the user's module and state are never touched, whatever the model does when it runs.

On that copy, and only there, every submodule's class is swapped for a subclass whose ``__call__``

* pushes ``jax.named_scope`` with the submodule's attribute path (relative to its caller's, as Flax
  Linen names its scopes), so every equation of the traced model carries the NNX layer path
  (``"layers/0/conv"``) in its name stack, as a Linen model's carries its module path: the
  propagation engine reads layer names and types from there;
* hands the output to the interception hook, when one is active (:func:`intercept_calls`): the
  layer listing, capture and probes of :mod:`xai_jax.trace.layers` see every submodule call with its
  path, as ``flax.linen.intercept_methods`` shows them for Linen;
* runs ``nnx.Dropout`` as ``(x * mask) / keep`` when asked (:attr:`NnxModel.product_dropout`), the
  same mask as ``nnx.Dropout`` draws, so relevance propagation passes through it.

Only ``__call__`` of a submodule is a layer (other methods are not intercepted).

**Mode.**  A model in training mode changes its own state when it runs: BatchNorm updates its batch
statistics, Dropout advances its rng stream's counter.  Both are seen on the copy after the call (a
variable whose value is a new array) and refused with :class:`ModelModeError`, whose message says to
call ``model.eval()``: an explanation is of a fixed function.  Monte-Carlo dropout runs the model
with :attr:`NnxModel.stochastic` (rng draws allowed) and, unless the caller switches dropout with its
own call arguments, :attr:`NnxModel.dropout_on`, which sets ``deterministic=False`` on every
submodule that has the attribute (``nnx.Dropout``) in the copy -- what ``model.train()`` does to
Dropout -- while BatchNorm stays on its running averages (a BatchStat update is still refused).

**Rng streams.**  ``model_kwargs={"rngs": {"dropout": key}}`` (Flax Linen's convention, which the
uncertainty wrappers use) is not passed to the model: it re-seeds the copy's streams instead.  The
``j``-th stream (in graph order) drawn for collection ``c`` -- a stream tagged ``c``, or the stream
of a module whose ``rng_collection`` is ``c`` -- gets key ``jax.random.fold_in(key, j)`` and
counter 0.  So a per-sample key gives a per-sample dropout mask with the state traced.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .errors import InputError, ModelModeError

#: ``hook(path, method, module, output) -> output``: what an interception does with a submodule call.
CallHook = Callable[[tuple[str, ...], str, Any, Any], Any]

_HOOK: contextvars.ContextVar[CallHook | None] = contextvars.ContextVar("xai_jax_nnx_hook", default=None)


@contextlib.contextmanager
def intercept_calls(hook: CallHook) -> Iterator[None]:
    """Within this context, every submodule call of an :class:`NnxModel` run passes its output
    through ``hook(path, "__call__", module, output)`` (whose return value replaces the output).

    Example:
      >>> from flax import nnx
      >>> seen = []
      >>> model, state = adapt(nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.relu), None)
      >>> with intercept_calls(lambda path, method, module, out: seen.append("/".join(path)) or out):
      ...     _ = model(state, jnp.ones((1, 2)))
      >>> seen
      ['layers/0']
    """
    token = _HOOK.set(hook)
    try:
        yield
    finally:
        _HOOK.reset(token)


# ---------------------------------------------------------------------------------------------------
# The adapter
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NnxModel:
    """An NNX model as ``f(state, x, **kwargs)``: hashable (graph definition and flags), state traced.

    Attributes:
      graphdef: ``nnx.split(model)[0]``; NNX graph definitions are hashable and equal for equal
        structure and static attributes (``deterministic``, ``use_running_average``...).
      stochastic: the forward may draw from rng streams (Monte-Carlo dropout); otherwise a draw is
        refused as training mode.
      dropout_on: set ``deterministic=False`` on every submodule that has the attribute, in the copy
        (implies ``stochastic``).
      product_dropout: run ``nnx.Dropout`` as ``(x * mask) / keep`` (same mask; relevance propagation).
    """

    graphdef: Any
    stochastic: bool = False
    dropout_on: bool = False
    product_dropout: bool = False
    #: the root class's ``input_shape`` (one example's shape) when it declares one, as Linen zoo
    #: classes do (an instance attribute, so ``getattr(model, "input_shape", None)`` reads it)
    input_shape: Any = dataclasses.field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        declared = getattr(self.root_type, "input_shape", None)
        object.__setattr__(self, "input_shape", tuple(declared) if isinstance(declared, (tuple, list)) else None)

    @property
    def root_type(self) -> type:
        return _root_type(self.graphdef)

    @property
    def root_name(self) -> str:
        """The root module's class name: the outermost name scope of a traced call (as in Linen)."""
        return self.root_type.__name__

    def __call__(self, state: Any, x: Any, **kwargs: Any) -> Any:
        if state is None:
            raise InputError(
                "an NNX model needs its state: pass the module itself (xj.gradient(model, None, x)) or its graph "
                "definition with its state (graphdef, state = nnx.split(model); xj.gradient(graphdef, state, x))."
            )
        rngs = kwargs.pop("rngs") if _is_key_mapping(kwargs.get("rngs")) else None
        # a copy: merging must never alias the caller's Variable objects (a forward that writes to its
        # state would otherwise write tracers into them)
        module = nnx.merge(self.graphdef, jax.tree_util.tree_map(lambda leaf: leaf, state))
        if self.dropout_on:
            module.set_attributes(deterministic=False, raise_if_not_found=False)
            _require_streams(module)
        if rngs:
            _reseed(module, rngs)
        paths = _instrument(module)
        before = _variables(module)
        run = _Run(paths, _HOOK.get(), self.product_dropout)
        token = _RUN.set(run)
        try:
            with jax.named_scope(self.root_name):
                out = module(x, **kwargs)
        finally:
            _RUN.reset(token)
        _check_unchanged(before, paths, allow_rng=self.stochastic or self.dropout_on)
        return out


def _root_type(graphdef: Any) -> type:
    node_type = getattr(graphdef.nodes[0], "type", None)
    return node_type if isinstance(node_type, type) else type(None)


def is_nnx_module(value: Any) -> bool:
    return isinstance(value, nnx.Module)


def is_graphdef(value: Any) -> bool:
    return isinstance(value, nnx.GraphDef)


def adapt(model: Any, variables: Any) -> tuple[NnxModel, Any]:
    """``(NnxModel, state)`` from the three NNX forms of the calling convention.

    * ``(module, None)``: the module's whole state (``nnx.split(module)``).
    * ``(module, state)``: ``state`` (an ``nnx.State``, e.g. ``nnx.state(module, nnx.Param)``, possibly
      traced) replaces the matching part of the module's state; the rest is the module's own.  This is
      the form to differentiate or vary the parameters: ``jax.grad(lambda p: xj.gradient(model, p, x).sum())``.
    * ``(graphdef, state)``: the functional form, ``graphdef, state = nnx.split(module)``; ``state``
      may also be a tuple of states (``nnx.split(module, nnx.Param, ...)``'s).

    Example:
      >>> from flax import nnx
      >>> layer = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
      >>> model, state = adapt(layer, None)
      >>> model(state, jnp.ones((4, 2))).shape
      (4, 3)
    """
    if isinstance(model, NnxModel):
        return model, variables
    if is_graphdef(model):
        if variables is None:
            raise InputError(
                "an NNX graph definition needs its state: graphdef, state = nnx.split(model); "
                "xj.gradient(graphdef, state, x) -- or pass the module itself: xj.gradient(model, None, x)."
            )
        graphdef, state = model, _join_states(variables)
    else:
        graphdef, own = nnx.split(model)
        if variables is None:
            state = own
        else:
            given = _join_states(variables)
            if not isinstance(given, nnx.State):
                raise InputError(
                    "with an nnx.Module, variables must be None (the module's own state) or an nnx.State that replaces "
                    f"part of it (e.g. nnx.state(model, nnx.Param)); got {type(given).__name__}."
                )
            state = _replace_part(own, given)
    _refuse_split_keys(state)
    return NnxModel(graphdef), state


def _join_states(variables: Any) -> Any:
    if isinstance(variables, (tuple, list)) and variables and all(isinstance(s, nnx.State) for s in variables):
        return nnx.merge_state(*variables)
    return variables


def _replace_part(own: Any, given: Any) -> Any:
    """``own`` with the leaves ``given`` has (same paths) replaced by ``given``'s."""
    own_flat = dict(nnx.to_flat_state(own))
    for path, value in nnx.to_flat_state(given):
        if path not in own_flat:
            raise InputError(
                f"variables has {'/'.join(map(str, path))!r}, which the model does not have; pass a part of "
                "nnx.state(model) (e.g. nnx.state(model, nnx.Param))."
            )
        own_flat[path] = value
    return nnx.from_flat_state(own_flat)


def _require_streams(module: Any) -> None:
    """Monte-Carlo dropout re-seeds the model's rng streams per sample: a Dropout switched on that
    has no stream of its own would fail inside NNX with a message about a missing argument."""
    missing = [
        ("/".join(map(str, path)) or "the model")
        for path, node in nnx.iter_graph(module)
        if isinstance(node, nnx.Dropout) and node.rate > 0 and node.rngs is None
    ]
    if missing:
        raise InputError(
            f"the NNX model's Dropout at {', '.join(repr(m) for m in missing[:4])} has no rng stream of its own "
            "(it was built without rngs=), so Monte-Carlo dropout cannot give each sample its own mask through the "
            "model's state. "
            "Build it as nnx.Dropout(rate, rngs=rngs) -- as Flax's MNIST example does -- then pass the model again."
        )


def _is_key_mapping(value: Any) -> bool:
    """``{"dropout": key}`` (Linen's ``rngs=`` convention), as opposed to an ``nnx.Rngs`` the model takes."""
    return (
        isinstance(value, Mapping)
        and not isinstance(value, nnx.Object)
        and bool(value)
        and all(isinstance(k, str) for k in value)
    )


def _value(variable: Any) -> Any:
    return variable.get_value() if hasattr(variable, "get_value") else variable.value


def _set_value(variable: Any, value: Any) -> None:
    if hasattr(variable, "set_value"):
        variable.set_value(value)
    else:  # pragma: no cover - older flax
        variable.value = value


def _reseed(module: Any, rngs: Mapping[str, Any]) -> None:
    for collection, key in rngs.items():
        streams: dict[int, Any] = {}
        for _, node in nnx.iter_graph(module):
            if isinstance(node, nnx.RngStream) and node.tag == collection:
                streams.setdefault(id(node), node)
            own = getattr(node, "rngs", None) if isinstance(node, nnx.Module) else None
            if isinstance(own, nnx.RngStream) and getattr(node, "rng_collection", None) == collection:
                streams.setdefault(id(own), own)
        key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
        if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)
        for j, stream in enumerate(streams.values()):
            _set_value(stream.key, jax.random.fold_in(key, j))
            _set_value(stream.count, jnp.zeros_like(_value(stream.count)))


# ---------------------------------------------------------------------------------------------------
# Interception on the merged copy
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Run:
    paths: dict[int, str]
    hook: CallHook | None
    product_dropout: bool
    stack: list[str] = dataclasses.field(default_factory=list)


_RUN: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("xai_jax_nnx_run", default=None)
_INTERCEPTED: dict[type, type] = {}


def _instrument(module: Any) -> dict[int, str]:
    """Swap the class of every submodule of ``module`` (the merged copy, never the user's) for its
    intercepting subclass; ``{id(submodule): "attribute/path"}``."""
    paths: dict[int, str] = {}
    for path, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Module) and path and id(node) not in paths:
            paths[id(node)] = "/".join(str(p) for p in path)
            object.__setattr__(node, "__class__", _intercepting_class(type(node)))
    return paths


def _intercepting_class(cls: type) -> type:
    """``cls`` with a ``__call__`` that names and reports the call (same name, fields and methods)."""
    if getattr(cls, "_xai_jax_base", None) is not None:
        return cls
    sub = _INTERCEPTED.get(cls)
    if sub is None:
        sub = type(
            cls.__name__,
            (cls,),
            {
                "__call__": _intercepted_call,
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "_xai_jax_base": cls,
            },
        )
        _INTERCEPTED[cls] = sub
    return sub


def _intercepted_call(self: Any, *args: Any, **kwargs: Any) -> Any:
    base = type(self)._xai_jax_base
    run = _RUN.get()
    path = run.paths.get(id(self)) if run is not None else None
    if run is None or path is None:  # a copy made inside an NNX transform, or a call outside our forward
        return base.__call__(self, *args, **kwargs)
    outer = run.stack[-1] if run.stack else ""
    scope = path[len(outer) + 1 :] if outer and path.startswith(outer + "/") else path
    run.stack.append(path)
    try:
        with jax.named_scope(scope):
            if run.product_dropout and base.__call__ is nnx.Dropout.__call__:
                out = _dropout_as_product(self, *args, **kwargs)
            else:
                out = base.__call__(self, *args, **kwargs)
    finally:
        run.stack.pop()
    if run.hook is not None:
        out = run.hook(tuple(path.split("/")), "__call__", self, out)
    return out


def _dropout_as_product(
    module: Any, inputs: jax.Array, *, deterministic: bool | None = None, rngs: Any = None
) -> jax.Array:
    """``nnx.Dropout.__call__`` with ``select(mask, x / keep, 0)`` written as ``(x * mask) / keep``:
    the same decisions, the same key and the same ``bernoulli`` mask, so outputs and gradients are
    identical, but the trace is a product by a constant that relevance propagation passes through."""
    deterministic = module.deterministic if deterministic is None else deterministic
    if module.rate == 0.0 or deterministic or module.rate == 1.0:
        return nnx.Dropout.__call__(module, inputs, deterministic=deterministic, rngs=rngs)
    rngs = module.rngs if rngs is None else rngs
    if isinstance(rngs, nnx.Rngs):
        key = rngs[module.rng_collection]()
    elif isinstance(rngs, nnx.RngStream):
        key = rngs()
    elif isinstance(rngs, jax.Array):
        key = rngs
    else:
        return nnx.Dropout.__call__(module, inputs, deterministic=deterministic, rngs=rngs)  # its own error
    keep = 1.0 - module.rate
    shape = list(inputs.shape)
    for dim in module.broadcast_dims:
        shape[dim] = 1
    mask = jnp.broadcast_to(jax.random.bernoulli(key, p=keep, shape=shape), inputs.shape)
    return (inputs * mask.astype(inputs.dtype)) / keep


# ---------------------------------------------------------------------------------------------------
# Training mode: the forward changed the copy's state
# ---------------------------------------------------------------------------------------------------


def _variables(module: Any) -> list[tuple[str, Any, Any]]:
    found = []
    for path, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Variable):
            found.append(("/".join(str(p) for p in path), node, _value(node)))
    return found


def _check_unchanged(before: list[tuple[str, Any, Any]], paths: dict[int, str], *, allow_rng: bool) -> None:
    changed = [(path, var) for path, var, value in before if _value(var) is not value]
    if allow_rng:
        changed = [(path, var) for path, var in changed if not isinstance(var, nnx.RngState)]
    if not changed:
        return
    reasons: list[str] = []
    for path, var in changed:
        owner = max((p for p in paths.values() if path.startswith(p + "/")), key=len, default="")
        if isinstance(var, nnx.BatchStat):
            what = "updates its batch statistics (BatchNorm with use_running_average=False)"
        elif isinstance(var, nnx.RngState):
            what = "draws from its rng stream (Dropout with deterministic=False)"
        else:
            what = f"writes its {type(var).__name__} variable {path!r}"
        reason = f"{owner!r} {what}" if owner else f"the model {what}"
        if reason not in reasons:
            reasons.append(reason)
    shown = "; ".join(reasons[:4]) + (f"; and {len(reasons) - 4} more" if len(reasons) > 4 else "")
    raise ModelModeError(
        f"the NNX model changes its own state when it runs, so it is in training mode: {shown}. Explanations are of "
        "the model in inference mode: call model.eval() before passing it, or pass "
        "nnx.view(model, deterministic=True, use_running_average=True) (an inference-mode view that leaves your model "
        "as it is); if the model's __call__ takes its own switch, pass it in model_kwargs (e.g. model_kwargs={'train': "
        "False}). For explanations over dropout masks use xj.uncertainty.mc_dropout or explain_mc, which switch "
        "dropout on themselves."
    )


# ---------------------------------------------------------------------------------------------------
# Parameters of a layer (the CAM head)
# ---------------------------------------------------------------------------------------------------


def layer_parameters(state: Any, layer: str) -> dict[str, Any]:
    """``{name: array}`` of the variables directly under ``layer``'s path in ``state``."""
    node: Any = state
    for part in layer.split("#")[0].split("/"):
        key: Any = int(part) if part.isdigit() else part
        try:
            node = node[key]
        except (KeyError, TypeError, IndexError):
            return {}
    if not isinstance(node, (nnx.State, Mapping)):
        return {}
    return {
        str(k): _value(v) if isinstance(v, nnx.Variable) else v
        for k, v in node.items()
        if isinstance(v, nnx.Variable) or hasattr(v, "shape")
    }


def _refuse_split_keys(state: Any) -> None:
    """A stream's key is one key; one with axes was split per example (``nnx.split_rngs``, inside
    ``nnx.vmap``) and not restored: the model would draw a batch of keys where it expects one."""
    if not isinstance(state, nnx.State):
        return
    split = [
        ("/".join(map(str, path)), jnp.shape(_value(value)))
        for path, value in nnx.to_flat_state(state)
        if isinstance(value, nnx.RngKey) and jnp.ndim(_value(value)) > 0
    ]
    if split:
        where = ", ".join(f"{path!r} {shape}" for path, shape in split[:4])
        raise InputError(
            f"the NNX model's rng keys at {where} have a batch axis: its rng state was split per example "
            "(nnx.split_rngs, as inside nnx.vmap) and not restored. Pass the model with one key per stream: outside "
            "the split (nnx.restore_rngs), or re-seeded with nnx.reseed(model, dropout=0)."
        )
