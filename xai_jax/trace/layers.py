"""Layer access by module path, on any Flax Linen or NNX model, with no change to the model.

A *layer* is one call of a submodule, named by its module path joined with ``/`` (``"conv1"``,
``"block/conv2"``; for NNX the attribute path, ``"layers/0/conv"``); a submodule called more than
once gets ``"#k"`` for its k-th later call, and (Linen) a method other than ``__call__`` is named
``"path:method"``.  Capture works through an *interception* (:func:`intercept_outputs`): every
submodule call is reported with its path and its output, so it can be recorded or a zero *probe*
added to it; the gradient with respect to the probe is the gradient with respect to the layer's
output.  One interception per framework (:data:`INTERCEPTIONS`): Linen's through
:func:`flax.linen.intercept_methods`; NNX's, which has none, through the adapter that swaps the
classes of the submodules of the merged copy it runs (:mod:`xai_jax.core.nnx_model`).  Both report
``(path, method, module, output)`` and one namer turns that into layer names, so names follow the
same rules in both.  Inline operations (``nn.relu(x)``, ``x + y``) are not modules and have no name
of their own; a layer's output is what its module returns (for a ``Conv`` followed by an inline
``nn.relu``, the pre-activation).

An element-wise activation applied directly to a layer's output is a layer too, named
``"<layer>+<activation>"`` (``"conv4+relu"``): Grad-CAM and its relatives are usually computed on
the rectified maps, which an inline ``nn.relu`` would otherwise hide.  It is found in the model's
jaxpr (the activation equation whose input is the module's output) and probed by re-evaluating that
jaxpr with the probe added to the activation's output.

Attention probabilities are layers too: every softmax in the traced model (``jax.nn.softmax`` or a
hand-written ``exp(a - max) / Σ exp(a - max)``, as the detector of :mod:`.activations` finds it) is
listed as ``"<module path>/softmax"`` (``"encoder_layer_0/self_attention/softmax"``; ``"#k"`` for
the k-th later one in the same module), type ``"softmax"``, so ``xj.capture`` and
``xj.layer_gradient`` reach the attention weights of any model with no change to its code.  They
are probed the same way, on the model's jaxpr with the softmax's output as the probed value.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from ..core import nnx_model
from ..core.errors import InputError, LayerNotFoundError, unknown_name_message
from ..core.model import Forward, Model, adapt_model, make_forward
from ..core.problem import Inputs, Problem, as_struct, cached_trace, check_input, compiled, prepare
from ..core.targets import Target
from .activations import ACTIVATION_NAMES, traced_graph
from .graph import layer_name
from .walker import Eqn, Graph, Var, bind_original, evaluate_graph, is_literal

#: Joins a layer's name and the activation applied to its output: ``"conv4+relu"``.
ACTIVATION_JOIN = "+"
#: Activations that ``jax.nn.<name>`` reproduces exactly (no slope or scale parameter to recover).
PARAMETER_FREE_ACTIVATIONS = frozenset(
    n
    for n in (
        "relu",
        "relu6",
        "sigmoid",
        "hard_sigmoid",
        "silu",
        "swish",
        "hard_silu",
        "hard_swish",
        "hard_tanh",
        "softplus",
        "soft_sign",
        "log_sigmoid",
        "mish",
        "tanh",
        "sparse_plus",
        "selu",
    )
    if hasattr(jax.nn, n)
)


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """One layer: its name, its module type and the shape/dtype of its output for a given input.

    For an activation applied directly to a layer's output (``"conv4+relu"``), ``type`` is the
    activation's name and ``after`` the layer it follows.
    """

    name: str
    type: str
    shape: tuple[int, ...] | None
    dtype: str | None
    after: str | None = None

    def __str__(self) -> str:
        return f"{self.name:<32} {self.type:<20} {self.shape}"


@dataclasses.dataclass(frozen=True)
class ArrayLayer(LayerInfo):
    """A layer whose output is one array (what :func:`layer_info` returns): shape and dtype known."""

    shape: tuple[int, ...]
    dtype: str


class LayerList(list[LayerInfo]):
    """A list of :class:`LayerInfo` that prints as a table."""

    def names(self) -> list[str]:
        return [layer.name for layer in self]

    def __str__(self) -> str:
        return "\n".join([f"{'name':<32} {'type':<20} output shape"] + [str(layer) for layer in self])


# ---------------------------------------------------------------------------------------------------
# Interception: every framework reports submodule calls as hook(path, method, module, output)
# ---------------------------------------------------------------------------------------------------

#: ``hook(path, method, module, output) -> output``: a submodule call as an interception reports it.
CallHook = Callable[[tuple[str, ...], str, Any, Any], Any]


def _linen_interception(hook: CallHook) -> contextlib.AbstractContextManager[Any]:
    """Linen: :func:`flax.linen.intercept_methods` sees every method call of every bound module."""

    def interceptor(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        out = next_fun(*args, **kwargs)
        return hook(tuple(context.module.path), context.method_name, context.module, out)

    return nn.intercept_methods(interceptor)


#: One context manager factory per framework; :func:`intercept_outputs` enters them all, so a hook
#: sees the submodule calls of whichever model runs (a generator and a classifier may differ).
INTERCEPTIONS: tuple[Callable[[CallHook], contextlib.AbstractContextManager[Any]], ...] = (
    _linen_interception,
    nnx_model.intercept_calls,
)


class _CallNamer:
    """Names each submodule call as it happens (``path``, ``path#1`` for a repeated call)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, path_parts: tuple[str, ...], method: str) -> str | None:
        path = "/".join(path_parts)
        if not path or method == "setup" or (method.startswith("_") and method != "__call__"):
            return None
        base = path if method == "__call__" else f"{path}:{method}"
        k = self.counts.get(base, 0)
        self.counts[base] = k + 1
        return base if k == 0 else f"{base}#{k}"


@contextmanager
def intercept_outputs(on_output: Callable[[str, Any, Any], Any]) -> Iterator[None]:
    """Within this context, each submodule call of a Linen or NNX model run passes its output
    through ``on_output(layer_name, module, output)``, whose return value replaces the output."""
    namer = _CallNamer()

    def hook(path: tuple[str, ...], method: str, module: Any, out: Any) -> Any:
        name = namer(path, method)
        return out if name is None else on_output(name, module, out)

    with contextlib.ExitStack() as stack:
        for interception in INTERCEPTIONS:
            stack.enter_context(interception(hook))
        yield


def layers(model: Model, variables: Any, x: Any, *, model_kwargs: Mapping[str, Any] | None = None) -> LayerList:
    """Every layer of ``model`` reached on input ``x``: name, module type and output shape.

    ``model`` is a Linen module (with its variables) or an ``nnx.Module`` (``variables=None``; layer
    names are attribute paths such as ``"layers/0/conv"``).

    Example::

        print(xj.layers(model, variables, x[:1]))
    """
    model, variables = adapt_model(model, variables)
    forward, dynamic = make_forward(model, model_kwargs)
    forward.module("xj.layers")
    x = x if hasattr(x, "shape") and hasattr(x, "dtype") else jnp.asarray(x)
    return list_layers(forward, variables, x, dynamic)


def list_layers(forward: Forward, variables: Any, x: Any, kwargs: Mapping[str, Any]) -> LayerList:
    def trace(variables: Any, x: Any, kwargs: Any) -> LayerList:
        found: list[LayerInfo] = []

        def record(name: str, mod: Any, out: Any) -> Any:
            array = hasattr(out, "shape") and hasattr(out, "dtype")
            shape, dtype = (tuple(out.shape), str(out.dtype)) if array else (None, None)
            found.append(LayerInfo(name, type(mod).__name__, shape, dtype))
            if isinstance(out, jax.Array) and jnp.issubdtype(out.dtype, jnp.inexact):
                # an identity marker: the module's output becomes a fresh value in the jaxpr, named
                # after the layer, as probed_forward's probe makes it (a value the model had already
                # passed to an activation before a module returned it is not that module's)
                out = checkpoint_name(out, _MARK + name)
            return out

        def run(variables: Any, x: Any, kwargs: Any) -> None:
            found.clear()
            with intercept_outputs(record):
                forward(variables, x, kwargs)

        closed = jax.make_jaxpr(run)(variables, x, kwargs)
        after = _activations_after_marks(traced_graph(closed.jaxpr, closed.consts, inline_custom=False))
        modules = {info.name for info in found}
        softmaxes: dict[str, list[LayerInfo]] = {}  # module name -> its softmaxes, listed before it
        for name, e in softmax_layers(forward, variables, x, kwargs)[0]:
            if name not in modules:  # a module literally named ".../softmax" keeps the name
                out = e.outputs[0].aval
                owner = name.rpartition("/")[0]
                softmaxes.setdefault(owner if owner in modules else "", []).append(
                    LayerInfo(name, SOFTMAX, tuple(out.shape), str(out.dtype))
                )
        listed = LayerList()
        for info in found:
            if info.name in softmaxes and "#" not in info.name:
                listed.extend(softmaxes.pop(info.name))
            listed.append(info)
            act = after.get(info.name)
            name = f"{info.name}{ACTIVATION_JOIN}{act}"
            if act is not None and name not in modules:  # a module literally named so keeps the name
                listed.append(LayerInfo(name, act, info.shape, info.dtype, after=info.name))
        for rest in softmaxes.values():  # softmaxes outside any listed module (the root's own code)
            listed.extend(rest)
        return listed

    structs = as_struct((variables, x, dict(kwargs)))
    return cached_trace("layers", forward, trace, *structs)


_MARK = "xai_jax.layer:"
#: Type (and last name component) of a softmax layer: ``"block/attention/softmax"``.
SOFTMAX = "softmax"


def _model_graph(forward: Forward, variables: Any, x: Any, kwargs: Mapping[str, Any]) -> tuple[Graph, Any]:
    """The model's flat graph with its units (softmaxes) marked, and its output shapes.  Custom-JVP
    functions are inlined: ``jax.nn.softmax`` is one."""
    closed, shapes = jax.make_jaxpr(lambda v, a, k: forward(v, a, k), return_shape=True)(variables, x, dict(kwargs))
    return traced_graph(closed.jaxpr, closed.consts, inline_custom=True, units=True), shapes


def softmax_layers(
    forward: Forward, variables: Any, x: Any, kwargs: Mapping[str, Any]
) -> tuple[list[tuple[str, Eqn]], Graph, Any]:
    """``([(name, last equation of the softmax)], graph, output shapes)`` for every softmax of the
    model, in program order, named ``"<module path>/softmax"`` (``"#k"`` for the k-th later one in
    the same module)."""
    graph, shapes = _model_graph(forward, variables, x, kwargs)
    root = type(forward.model).__name__ if forward.is_module else None
    found: list[tuple[str, Eqn]] = []
    counts: dict[str, int] = {}
    for e in graph.eqns:
        if e.unit is not None and e.unit.kind == "softmax":
            base = "/".join(p for p in (layer_name(e.scope, root), SOFTMAX) if p)
            k = counts.get(base, 0)
            counts[base] = k + 1
            found.append((base if k == 0 else f"{base}#{k}", e))
    return found, graph, shapes


def probed_softmaxes(forward: Forward, names: tuple[str, ...]) -> Callable[..., tuple[Any, list[jax.Array]]]:
    """``(variables, x, kwargs, probes) -> (outputs, [softmax output])`` for the softmax layers
    ``names``, each with its probe (zeros of its shape) added: the gradients with respect to the
    probes are the gradients with respect to the attention probabilities."""

    def run(variables: Any, x: Any, kwargs: Mapping[str, Any], probes: Any) -> tuple[Any, list[jax.Array]]:
        found, graph, shapes = softmax_layers(forward, variables, x, kwargs)
        by_name = dict(found)
        missing = [n for n in names if n not in by_name]
        if missing:
            raise LayerNotFoundError(unknown_name_message("softmax layer", missing[0], list(by_name)))
        where = {id(by_name[n]): i for i, n in enumerate(names)}
        captured: dict[int, jax.Array] = {}

        def rule_for(e: Eqn) -> Any:
            i = where.get(id(e))
            if i is None:
                return None

            def add_probe(eqn: Any, invals: Any) -> Any:
                out = bind_original(eqn, invals)
                value = (out[0] if eqn.primitive.multiple_results else out) + probes[i]
                captured[i] = value
                return [value] if eqn.primitive.multiple_results else value

            return add_probe

        flat = evaluate_graph(graph, jax.tree_util.tree_leaves((variables, x, dict(kwargs))), rule_for)
        outputs = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shapes), flat)
        return outputs, [captured[i] for i in range(len(names))]

    return run


def _activation_consumers(graph: Graph) -> dict[int, Eqn]:
    """Each value (by id) -> the first element-wise activation equation of the traced function's own
    (top-level) equations taking it as its only (non-literal) input and returning one value of its
    shape.  Top level only: a layer output captured inside a lifted transform (``nn.remat``,
    ``nn.jit``) cannot be returned from it, so it could not be probed."""
    first: dict[int, Eqn] = {}
    for e in graph.eqns:
        if e.depth != 0 or e.activation is None or len(e.outputs) != 1:
            continue
        inputs = [a for a in e.inputs if not is_literal(a)]  # drop literals (max(x, 0.0))
        if len(inputs) == 1 and isinstance(inputs[0], Var) and e.outputs[0].shape == inputs[0].shape:
            first.setdefault(inputs[0].id, e)
    return first


def _activations_after_marks(graph: Graph) -> dict[str, str]:
    """Layer name -> the activation applied directly to its marked output (top level only, as
    :func:`_activation_consumers`)."""
    consumers = _activation_consumers(graph)
    found: dict[str, str] = {}
    for e in graph.eqns:
        mark = e.params.get("name") if e.primitive == "name" else None
        consumer = consumers.get(e.outputs[0].id)
        if (
            isinstance(mark, str)
            and mark.startswith(_MARK)
            and consumer is not None
            and consumer.activation is not None
        ):
            found[mark[len(_MARK) :]] = consumer.activation
    return found


def split_activation(layer: str) -> tuple[str, str | None]:
    """``"conv4+relu"`` -> ``("conv4", "relu")``; any other name (``"a+b"``) -> ``(name, None)``."""
    base, join, act = layer.rpartition(ACTIVATION_JOIN)
    return (base, act) if join and base and act in ACTIVATION_NAMES else (layer, None)


def layer_info(forward: Forward, variables: Any, x: jax.Array, kwargs: Mapping[str, Any], layer: str) -> ArrayLayer:
    """The :class:`LayerInfo` of ``layer`` for this input, or :class:`LayerNotFoundError`."""
    if not isinstance(layer, str):
        raise InputError(
            f"layer must be a layer name (str); got {type(layer).__name__}. See xj.layers(model, variables, x)."
        )
    forward.module("layer access")
    available = list_layers(forward, variables, x, kwargs)
    for info in available:
        if info.name == layer:
            if info.shape is None:
                raise InputError(f"layer {layer!r} ({info.type}) does not return a single array.")
            return ArrayLayer(info.name, info.type, info.shape, str(info.dtype), info.after)
    raise LayerNotFoundError(unknown_name_message("layer", layer, available.names()))


def probed_forward(forward: Forward, layer: str) -> Callable[..., tuple[Any, jax.Array]]:
    """``(variables, x, kwargs, probe) -> (outputs, layer_output)`` with ``probe`` added to the layer.

    The gradient with respect to ``probe`` (zeros of the layer's shape) is the gradient with respect
    to the layer's output; ``layer_output`` includes the probe, so it is the activation itself.
    """

    base, activation = split_activation(layer)

    def run_softmax(variables: Any, x: jax.Array, kwargs: Mapping[str, Any], probe: jax.Array) -> tuple[Any, jax.Array]:
        outputs, (value,) = probed_softmaxes(forward, (layer,))(variables, x, kwargs, [probe])
        return outputs, value

    def run_module(variables: Any, x: jax.Array, kwargs: Mapping[str, Any], probe: jax.Array) -> tuple[Any, jax.Array]:
        captured: list[jax.Array] = []

        def add_probe(name: str, mod: Any, out: Any) -> Any:
            if name == layer and not captured:
                out = out + probe
                captured.append(out)
            return out

        listed = {info.name: info for info in list_layers(forward, variables, x, kwargs)}
        if layer in listed and listed[layer].type == SOFTMAX and listed[layer].shape is not None:
            return run_softmax(variables, x, kwargs, probe)
        with intercept_outputs(add_probe):
            outputs = forward(variables, x, kwargs)
        if not captured:  # the layer was not reached on this input (data-dependent control flow)
            raise InputError(f"layer {layer!r} was not called by the model on this input.")
        return outputs, captured[0]

    def run_after_activation(
        variables: Any, x: jax.Array, kwargs: Mapping[str, Any], probe: jax.Array
    ) -> tuple[Any, jax.Array]:
        listed = {info.name: info for info in list_layers(forward, variables, x, kwargs)}
        if layer in listed and listed[layer].after is None:  # a module literally named "a+relu"
            return run_module(variables, x, kwargs, probe)
        base_args = (variables, x, kwargs, jnp.zeros_like(probe))  # the probe goes after the activation only
        closed, shapes = jax.make_jaxpr(probed_forward(forward, base), return_shape=True)(*base_args)
        graph = traced_graph(closed.jaxpr, closed.consts, inline_custom=False)
        layer_output = graph.outputs[-1]
        target = _activation_consumers(graph).get(layer_output.id) if isinstance(layer_output, Var) else None
        if target is None or target.activation != activation:
            raise InputError(f"layer {layer!r}: no {activation!r} is applied directly to {base!r}'s output.")
        captured: list[jax.Array] = []

        def add_probe(eqn: Any, invals: Any) -> Any:
            out = bind_original(eqn, invals)
            value = (
                out[0] if eqn.primitive.multiple_results else out
            ) + probe  # one output (see _activation_consumers)
            captured.append(value)
            return [value] if eqn.primitive.multiple_results else value

        flat = evaluate_graph(graph, jax.tree_util.tree_leaves(base_args), lambda e: add_probe if e is target else None)
        outputs, _ = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shapes), flat)
        return outputs, captured[0]

    return run_module if activation is None else run_after_activation


def capture(
    model: Model, variables: Any, x: Any, layer: str, *, model_kwargs: Mapping[str, Any] | None = None
) -> tuple[Any, jax.Array]:
    """``(outputs, activation)``: the model's outputs and the output of ``layer`` for batch ``x``."""
    model, variables = adapt_model(model, variables)
    forward, dynamic = make_forward(model, model_kwargs)
    x = check_input(x, tokens=True)  # token ids: any layer after the lookup is floating
    info = layer_info(forward, variables, x, dynamic, layer)
    probe = jnp.zeros(info.shape, info.dtype)
    return probed_forward(forward, layer)(variables, x, dynamic, probe)


@compiled(static=("layer",))
def _layer_gradient(problem: Problem, inputs: Inputs, layer: str) -> tuple[jax.Array, jax.Array]:
    info = layer_info(problem.forward, inputs.variables, inputs.x, inputs.kwargs, layer)
    run = probed_forward(problem.forward, layer)

    def total(probe: jax.Array) -> tuple[jax.Array, jax.Array]:
        outputs, activation = run(inputs.variables, inputs.x, inputs.kwargs, probe)
        indices = problem.target.indices(outputs, inputs.indices)
        return jnp.sum(problem.target.select(outputs, indices)), activation

    gradient, activation = jax.grad(total, has_aux=True)(jnp.zeros(info.shape, info.dtype))
    return activation, gradient


def layer_gradient(
    model: Model,
    variables: Any,
    x: Any,
    target: Target = None,
    *,
    layer: str,
    model_kwargs: Mapping[str, Any] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``(activation, gradient)``: the output of ``layer`` and ``∂f_target/∂activation``.

    The building block of Grad-CAM and every layer attribution.  ``target`` follows the usual
    convention (``None`` = each sample's predicted class).
    """
    # Token ids are fine: the layer's output is differentiated, not x.
    problem, inputs = prepare(model, variables, x, target, model_kwargs, tokens=True)
    layer_info(problem.forward, inputs.variables, inputs.x, inputs.kwargs, layer)  # clear error now
    return _layer_gradient(problem, inputs, layer=layer)
