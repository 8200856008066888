"""Methods as values: one declaration per attribution method.

An attribution method is written once, as a pure function of the static :class:`Problem` (model,
kind of target), the traced :class:`Inputs` (variables, ``x``, class indices) and its options::

    @xj.method("my_gradient", family="gradient")
    def my_gradient(problem: Problem, inputs: Inputs, *, scale: FiniteFloat = 1.0) -> jax.Array:
        '''Scaled gradient.'''
        return scale * target_gradient(problem, inputs, inputs.x, inputs.indices)

:func:`method` turns it into a :class:`Method`: a value that is called with the library's calling
convention, ``my_gradient(model, variables, x, target=None, *, scale=1.0, model_kwargs=None)``,
runs the eager checks (``x``, ``target``, each option by its annotation), splits the options into
static ones (hashable Python values: part of the compilation key) and traced ones (arrays, keys),
runs one jitted computation, and registers the method in :data:`METHODS` (so the CLI, SmoothGrad,
the uncertainty wrappers and the evaluation metrics see it).  Nothing else has to be edited.

Options are checked by their annotation: ``PositiveInt``, ``ChunkSize``, ``FiniteFloat``,
``NonNegativeFloat``, ``Flag``, ``Key``, ``Choice("a", "b")``, ``MethodValue``... or any
``Annotated[T, Option(check=...)]``.  An option whose annotation says it ``needs`` something a
generic caller must supply (a layer, a PRNG key) and that has no default is listed in
:attr:`Method.needs`.

Wrappers (SmoothGrad, MC dropout, the metrics) take *method values*: a :class:`Method`, its name,
a :func:`functools.partial` of it with options (``partial(xj.integrated_gradients, steps=16,
method="riemann_left")``), or any callable with the calling convention.  :func:`method_call`
validates such a value once, eagerly, at the real input, and returns a :class:`MethodCall` that the
wrapper applies inside its own jitted computation to perturbed inputs.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any

import jax
import jax.numpy as jnp
import numpy as np

from . import batching, checks
from .errors import InputError, ResourceExhaustedError, UnknownNameError, unknown_name_message
from .model import KeyedCallable, Model
from .numerics import guarded_jit
from .problem import Inputs, Problem, prepare
from .targets import Target, TargetSpec

REQUIRED = inspect.Parameter.empty
#: Keyword names of the calling convention; an option may not reuse them.
RESERVED_NAMES = frozenset({"model", "variables", "x", "target", "model_kwargs"})


# ---------------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OptionContext:
    """What an option check may look at: the prepared call and the options checked so far."""

    problem: Problem
    inputs: Inputs
    method: str
    options: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Option:
    """How a keyword option is checked (``check(ctx, name, value) -> value``), and what kind of
    thing a generic caller must supply when it has no default (``needs``: ``"layer"``, ``"key"``...)."""

    check: Callable[[OptionContext, str, Any], Any] | None = None
    needs: str | None = None


def _simple(check: Callable[..., Any], **kwargs: Any) -> Option:
    return Option(lambda ctx, name, value: check(name, value, **kwargs))


def Choice(*choices: str, what: str | None = None) -> Any:  # noqa: N802 - a type-like factory, used in annotations
    """Annotation for an option that takes one of ``choices`` (``what`` names it in errors)."""
    return Annotated[str, Option(lambda ctx, name, value: checks.check_choice(what or name, value, choices))]


PositiveInt = Annotated[int, _simple(checks.check_positive_int)]
NonNegativeInt = Annotated[int, _simple(checks.check_int, minimum=0)]
ChunkSize = Annotated[int | str | None, _simple(checks.check_chunk_size)]
FiniteFloat = Annotated[float, _simple(checks.check_float)]
NonNegativeFloat = Annotated[float, _simple(checks.check_float, minimum=0.0)]
PositiveFloat = Annotated[float, _simple(checks.check_float, minimum=0.0, exclusive_minimum=True)]
Flag = Annotated[bool, _simple(checks.check_bool)]
Key = Annotated[jax.Array, Option(lambda ctx, name, value: checks.check_key(name, value), needs="key")]


def _check_array(ctx: OptionContext, name: str, value: Any) -> Any:
    checks.check_finite_array(name, value)
    return value


#: Any array option (checked finite where it is concrete).
ArrayOption = Annotated[jax.Array, Option(_check_array)]


def resolve_baseline(baseline: Any, x: jax.Array, name: str = "baseline") -> jax.Array:
    """A reference batch with ``x``'s shape and dtype from a scalar, an array broadcastable to ``x``
    (one sample's shape, or one reference per sample of ``x``'s shape) or a callable
    ``x -> reference``; NaN and infinite values are refused where they can be seen."""
    if callable(baseline) and not isinstance(baseline, (jax.Array, np.ndarray)):
        baseline = baseline(x)
    if isinstance(baseline, (bool, np.bool_)) or not (
        checks.is_array(baseline) or isinstance(baseline, (int, float, np.number, list, tuple))
    ):
        raise InputError(
            f"{name} must be a number, an array broadcastable to x {tuple(x.shape)} or a callable x -> array; "
            f"got {type(baseline).__name__}."
        )
    value = jnp.asarray(baseline, x.dtype)
    try:
        value = jnp.broadcast_to(value, x.shape)
    except ValueError:
        raise InputError(
            f"{name} of shape {tuple(value.shape)} does not broadcast to x's shape {tuple(x.shape)}: pass a scalar, "
            f"one sample's shape {tuple(x.shape[1:])} or one reference per sample {tuple(x.shape)}."
        ) from None
    checks.check_finite_array(name, value)
    return value


#: Annotation of a baseline/reference option (resolved against ``x`` by :func:`resolve_baseline`).
Baseline = Annotated[Any, Option(lambda ctx, name, value: resolve_baseline(value, ctx.inputs.x, name))]


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """One option of a declared method."""

    name: str
    default: Any
    annotation: Any
    option: Option

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def needs(self) -> str | None:
        return self.option.needs


def _option_of(annotation: Any) -> Option:
    """The :class:`Option` carried by an annotation, also inside ``X | None``."""
    for candidate in (annotation, *typing.get_args(annotation)):
        for extra in getattr(candidate, "__metadata__", ()):
            if isinstance(extra, Option):
                return extra
    return Option()


# ---------------------------------------------------------------------------------------------------
# Static / traced split
# ---------------------------------------------------------------------------------------------------


def has_array(value: Any) -> bool:
    return any(isinstance(leaf, (jax.Array, np.ndarray)) for leaf in jax.tree_util.tree_leaves(value))


def split_static(
    options: Mapping[str, Any], what: str = "option"
) -> tuple[tuple[tuple[str, Any], ...], dict[str, Any]]:
    """Options as (hashable static part, traced part): values holding arrays (a baseline, a key, a
    bound method with array options) are traced; everything else must be hashable and becomes part
    of the compilation key."""
    static, traced = [], {}
    for name, value in options.items():
        if has_array(value):
            traced[name] = value
            continue
        if isinstance(value, (types.FunctionType, functools.partial)):
            # compared by code and captures: a new lambda per call does not recompile
            static.append((name, KeyedCallable(value)))
            continue
        try:
            hash(value)
        except TypeError:
            raise InputError(
                f"{what} {name}={value!r} is neither an array nor hashable; pass arrays or plain Python values "
                "(numbers, strings, tuples)."
            ) from None
        static.append((name, value))
    return tuple(sorted(static, key=lambda item: item[0])), traced


# ---------------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------------

Validate = Callable[[OptionContext], Mapping[str, Any] | None]

#: How a method that differentiates its input runs on integer inputs (token ids):
#: ``adapter(problem, inputs, options) -> (problem, inputs, options, finish)`` rewrites the call into
#: one on a floating input (the embedding the tokens are looked up in) and ``finish(result)`` turns
#: that call's result back into one value per token.  See :func:`xai_jax.trace.tokens.on_embedding`.
TokenAdapter = Callable[
    [Problem, Inputs, Mapping[str, Any]], tuple[Problem, Inputs, Mapping[str, Any], Callable[[Any], Any]]
]


class Method:
    """An attribution method as a value: callable with the calling convention, registered by name.

    Attributes:
      name: registry name (``xj.METHODS[name]`` is this object).
      family: ``"gradient"``, ``"path"``, ``"noise"``, ``"perturbation"``, ``"cam"``, ``"propagation"``...
      signed: whether the map has a meaningful sign (diverging colormap) or is a magnitude.
      resolution: ``"input"`` (a map with ``x``'s shape) or ``"layer"`` (``(B, h, w)`` at a layer).
      options: the keyword options, each an :class:`OptionSpec`.
      needs: ``{option: kind}`` of required options a generic caller must supply (``layer``, ``key``).
      report_options: options a report uses when the user gives none (never applied to a call).
      impl: the pure function ``impl(problem, inputs, **options)``.
    """

    def __init__(
        self,
        impl: Callable[..., Any],
        *,
        name: str,
        family: str,
        signed: bool = True,
        resolution: str = "input",
        report_options: Mapping[str, Any] | None = None,
        validate: Validate | None = None,
        tokens: bool | TokenAdapter = False,
    ) -> None:
        self.impl = impl
        self.tokens = tokens
        self.name = name
        self.family = family
        self.signed = signed
        if resolution not in ("input", "layer"):
            raise ValueError(f"resolution must be 'input' or 'layer'; got {resolution!r}")
        self.resolution = resolution
        self.report_options = dict(report_options or {})
        self._validate = validate
        hints = typing.get_type_hints(impl, include_extras=True)
        parameters = list(inspect.signature(impl).parameters.values())
        if len(parameters) < 2 or [p.name for p in parameters[:2]] != ["problem", "inputs"]:
            raise TypeError(f"{name}: impl must take (problem, inputs, *, options...)")
        self.options: dict[str, OptionSpec] = {}
        for p in parameters[2:]:
            if p.kind is not inspect.Parameter.KEYWORD_ONLY:
                raise TypeError(f"{name}: option {p.name!r} must be keyword-only")
            if p.name in RESERVED_NAMES:
                raise TypeError(f"{name}: option {p.name!r} clashes with the calling convention")
            annotation = hints.get(p.name, Any)
            self.options[p.name] = OptionSpec(p.name, p.default, annotation, _option_of(annotation))
        unknown = set(self.report_options) - set(self.options)
        if unknown:
            raise TypeError(f"{name}: report_options {sorted(unknown)} are not options")
        self.needs = {spec.name: spec.needs for spec in self.options.values() if spec.required and spec.needs}
        doc = inspect.getdoc(impl) or ""
        self.summary = doc.strip().splitlines()[0] if doc.strip() else ""
        self.__doc__ = doc + _CONVENTION_DOC
        self.__name__ = self.__qualname__ = name
        self.__module__ = impl.__module__
        self.__wrapped__ = impl
        self.__signature__ = self._public_signature(hints.get("return", Any))

    def _public_signature(self, returns: Any) -> inspect.Signature:
        p = inspect.Parameter
        head = [
            p("model", p.POSITIONAL_OR_KEYWORD, annotation=Model),
            p("variables", p.POSITIONAL_OR_KEYWORD, annotation=Any),
            p("x", p.POSITIONAL_OR_KEYWORD, annotation=Any),
            p("target", p.POSITIONAL_OR_KEYWORD, default=None, annotation=Target),
        ]
        opts = [p(s.name, p.KEYWORD_ONLY, default=s.default, annotation=s.annotation) for s in self.options.values()]
        tail = [p("model_kwargs", p.KEYWORD_ONLY, default=None, annotation=Mapping[str, Any] | None)]
        return inspect.Signature(head + opts + tail, return_annotation=returns)

    # -- calling -------------------------------------------------------------------------------------

    def __call__(
        self,
        model: Model,
        variables: Any,
        x: Any,
        target: Target = None,
        *,
        model_kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        problem, inputs, given, finish = self._prepare(model, variables, x, target, model_kwargs, options)
        call = self.prepare_call(problem, inputs, given)
        return finish(call.run(problem, inputs))

    def _prepare(
        self,
        model: Model,
        variables: Any,
        x: Any,
        target: Target,
        model_kwargs: Mapping[str, Any] | None,
        options: Mapping[str, Any],
    ) -> tuple[Problem, Inputs, Mapping[str, Any], Callable[[Any], Any]]:
        """``prepare`` for this method; integer inputs go through its token adapter, if it has one."""
        problem, inputs = prepare(
            model, variables, x, target, model_kwargs, tokens=self.name if not self.tokens else True
        )
        if callable(self.tokens) and jnp.issubdtype(inputs.x.dtype, jnp.integer):
            self.check_names(options)  # before the adapter reads them
            return self.tokens(problem, inputs, options)
        return problem, inputs, options, _unchanged

    def lower(
        self,
        model: Model,
        variables: Any,
        x: Any,
        target: Target = None,
        *,
        model_kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """The lowered computation of this call (``.compile().as_text()`` shows the HLO; for token ids,
        the computation on their embedding, before the sum per token)."""
        problem, inputs, given, _ = self._prepare(model, variables, x, target, model_kwargs, options)
        call = self.prepare_call(problem, inputs, given)
        return _run_compiled.lower(
            call.traced, problem, inputs, prepared=call.prepared, sharding=batching.batch_sharding(inputs.x)
        )

    def bind(self, **options: Any) -> BoundMethod:
        """This method with options fixed (what ``functools.partial(method, **options)`` gives)."""
        self.check_names(options)
        return BoundMethod(self, tuple(options.items()))

    def check_names(self, options: Mapping[str, Any]) -> None:
        for name in options:
            if name not in self.options:
                raise UnknownNameError(unknown_name_message("option", name, self.options, of=f"of {self.name!r}"))

    def prepare_call(self, problem: Problem, inputs: Inputs, options: Mapping[str, Any]) -> MethodCall:
        """Check ``options`` against this call (eagerly, with clear errors) and split them."""
        self.check_names(options)
        missing = [spec.name for spec in self.options.values() if spec.required and spec.name not in options]
        if missing:
            raise InputError(
                f"{self.name} needs the option(s) {', '.join(missing)} (e.g. {_example(self, missing[0])})."
            )
        checked: dict[str, Any] = {}
        for spec in self.options.values():
            value = options.get(spec.name, spec.default)
            if spec.option.check is not None and not (value is None and spec.default is None):
                value = spec.option.check(OptionContext(problem, inputs, self.name, checked), spec.name, value)
            checked[spec.name] = value
        if self._validate is not None:
            more = self._validate(OptionContext(problem, inputs, self.name, checked))
            if more:
                checked.update(more)
        static, traced = split_static(checked, f"{self.name} option")
        return MethodCall(Prepared(self, static), traced)

    def __repr__(self) -> str:
        return f"<method {self.name!r} ({self.family})>"

    def __reduce__(self) -> Any:  # pickles by name (methods are module-level singletons)
        return (_lookup, (self.name,))


def _unchanged(result: Any) -> Any:
    return result


def _lookup(name: str) -> Method:
    return METHODS[name]


def _example(method: Method, name: str) -> str:
    kind = method.options[name].needs
    return {"layer": f"{name}='conv4' (see xj.layers)", "key": f"{name}=jax.random.key(0)"}.get(
        kind or "", f"{name}=..."
    )


_CONVENTION_DOC = """

Calling convention (every method): ``method(model, variables, x, target=None, *, options...,
model_kwargs=None)``. ``model`` is a ``flax.linen.Module`` (run as ``model.apply(variables, x,
**model_kwargs)``) or any ``f(variables, x, **model_kwargs)`` for methods that need no layer;
``x`` is a batch ``(B, ...)`` (images NHWC); ``target`` is ``None`` (each sample's predicted class),
an int, an int array ``(B,)`` or a callable ``outputs -> (B,)``. The method is a value:
``functools.partial(method, **options)`` can be passed wherever a method is expected
(``xj.smoothgrad(..., method=...)``, ``xj.uncertainty.explain_mc``, the evaluation metrics)."""


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A method with its checked static options (hashable: part of a compilation key)."""

    method: Any  # Method, or CallableMethod for a user's function
    static: tuple[tuple[str, Any], ...]


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class MethodCall:
    """A method ready to run inside a jitted computation: its static part and its traced options.

    A pytree whose leaves are the traced options, so a wrapper passes it as one (traced) argument.
    """

    prepared: Prepared
    traced: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __hash__(self) -> int:  # hashable when it carries no arrays (then it is a static option)
        return hash((self.prepared, tuple(sorted(self.traced.items()))))

    @property
    def method(self) -> Any:
        return self.prepared.method

    def apply(self, problem: Problem, inputs: Inputs) -> Any:
        """Run the method on ``problem``/``inputs`` inside the caller's trace (no eager checks)."""
        return self.prepared.method.impl(problem, inputs, **_static_values(self.prepared.static), **self.traced)

    def run(self, problem: Problem, inputs: Inputs) -> Any:
        """Run the method as its own jitted computation (what a call of the method does)."""
        try:
            return _run_compiled(
                self.traced, problem, inputs, prepared=self.prepared, sharding=batching.batch_sharding(inputs.x)
            )
        except Exception as err:
            if _is_out_of_memory(err):
                raise ResourceExhaustedError(
                    f"{getattr(self.method, 'name', 'the method')} ran out of memory on a batch of shape "
                    f"{tuple(inputs.x.shape)}. Pass batch_size=<smaller int> (path points, samples or windows "
                    "evaluated at once), explain fewer images at a time, or lower XAI_JAX_MEMORY_BUDGET_MB "
                    f"(the budget batch_size='auto' assumes). The backend said: {str(err).splitlines()[0]}"
                ) from err
            raise

    def tree_flatten(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        names = tuple(sorted(self.traced))
        return tuple(self.traced[n] for n in names), (self.prepared, names)

    @classmethod
    def tree_unflatten(cls, aux: tuple[Any, ...], children: tuple[Any, ...]) -> MethodCall:
        prepared, names = aux
        return cls(prepared, dict(zip(names, children)))


def _is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or "RESOURCE_EXHAUSTED" in str(err) or "Out of memory" in str(err)


@functools.partial(guarded_jit, static_argnames=("problem", "prepared", "sharding"))
def _run_compiled(
    traced: Mapping[str, Any], problem: Problem, inputs: Inputs, *, prepared: Prepared, sharding: Any = None
) -> Any:
    def impl(traced: Mapping[str, Any], inputs: Inputs) -> Any:
        return prepared.method.impl(problem, inputs, **_static_values(prepared.static), **traced)

    if sharding is None:
        return impl(traced, inputs)
    return _run_sharded(
        impl,
        traced,
        inputs,
        sharding,
        random=any(spec.needs == "key" for spec in getattr(prepared.method, "options", {}).values()),
    )


def _run_sharded(
    impl: Callable[..., Any], traced: Mapping[str, Any], inputs: Inputs, sharding: Any, *, random: bool
) -> Any:
    """``impl`` on a batch sharded over a mesh (:func:`~xai_jax.core.batching.batch_sharding`).

    Attribution is per example, so each device explains its own examples: ``shard_map`` over the
    batch axis runs the method's program on the device's slice (every IG step, SmoothGrad sample or
    occlusion window of its examples), with no collective and the same numbers as one device given
    that slice.  A method that draws random numbers for the whole batch (SmoothGrad's noise) would
    draw different ones per slice, so it runs as one sharded program instead, with the batch axis of
    every expansion element constrained to the sharding (same noise, same maps; XLA may gather
    activations where a convolution merges the expansion axis into the batch).  So does a method
    with an output that has no batch axis, or a batch that does not divide over the devices.
    """
    batch = inputs.x.shape[0]
    axis = sharding.spec[0]
    names = axis if isinstance(axis, tuple) else (axis,)
    devices = int(np.prod([sharding.mesh.shape[name] for name in names]))

    def spec(leaf: Any) -> Any:
        per_example = getattr(leaf, "ndim", 0) >= 1 and leaf.shape[0] == batch
        return jax.sharding.PartitionSpec(axis) if per_example else jax.sharding.PartitionSpec()

    if not random and batch % devices == 0:
        out = jax.eval_shape(impl, traced, inputs)
        if all(getattr(leaf, "ndim", 0) >= 1 and leaf.shape[0] == batch for leaf in jax.tree_util.tree_leaves(out)):
            in_specs = (
                jax.tree_util.tree_map(spec, traced),
                Inputs(
                    jax.tree_util.tree_map(lambda _: jax.sharding.PartitionSpec(), inputs.variables),
                    jax.sharding.PartitionSpec(axis),  # type: ignore[arg-type]  # a tree of specs, not arrays
                    jax.tree_util.tree_map(spec, inputs.indices),
                    jax.tree_util.tree_map(spec, inputs.kwargs),
                ),
            )
            out_specs = jax.tree_util.tree_map(lambda _: jax.sharding.PartitionSpec(axis), out)
            local = jax.shard_map(impl, mesh=sharding.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
            return local(traced, inputs)
    with batching.sharded_batch(sharding, batch):
        out = impl(traced, batching.constrain_batch(inputs._replace(x=inputs.x)))
        return batching.constrain_batch(out)


def _static_values(static: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return {name: value.fn if isinstance(value, KeyedCallable) else value for name, value in static}


# ---------------------------------------------------------------------------------------------------
# Method values
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BoundMethod:
    """A :class:`Method` with some options fixed; callable like the method itself."""

    method: Method
    options: tuple[tuple[str, Any], ...]

    @property
    def name(self) -> str:
        return self.method.name

    def __call__(self, model: Model, variables: Any, x: Any, target: Target = None, **options: Any) -> Any:
        return self.method(model, variables, x, target, **{**dict(self.options), **options})

    def __getattr__(self, attr: str) -> Any:  # family, signed, resolution, needs... of the method
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.method, attr)


@dataclasses.dataclass(frozen=True, eq=False)
class CallableMethod:
    """A user's function with the calling convention, wrapped so that wrappers can run it on
    perturbed inputs inside their own computation (it must be traceable by JAX)."""

    fn: Callable[..., Any]
    name: str = "callable"
    family: str = "custom"
    signed: bool = True
    resolution: str = "input"

    def impl(self, problem: Problem, inputs: Inputs) -> Any:
        kwargs = {**dict(problem.forward.static_kwargs), **inputs.kwargs}
        return self.fn(
            problem.forward.model,
            inputs.variables,
            inputs.x,
            problem.target.as_argument(inputs.indices),
            model_kwargs=kwargs,
        )


MethodLike = Any  # str | Method | BoundMethod | functools.partial | Callable


def resolve_method(value: MethodLike) -> tuple[Any, dict[str, Any]]:
    """``(method, options)`` from a method value: a name, a :class:`Method`, a bound method, a
    ``functools.partial`` of one (options as keywords, no positional arguments), or a callable."""
    if isinstance(value, str):
        return METHODS[value], {}
    if isinstance(value, Method):
        return value, {}
    if isinstance(value, BoundMethod):
        return value.method, dict(value.options)
    if isinstance(value, functools.partial):
        inner, options = resolve_method(value.func)
        if value.args:
            raise InputError(
                "a method value may fix options only (functools.partial(xj.integrated_gradients, steps=16)); "
                f"this partial also fixes {len(value.args)} positional argument(s)."
            )
        options.update(value.keywords)
        if isinstance(inner, Method):
            inner.check_names(options)
        elif options:
            return CallableMethod(value), {}
        return inner, options
    if callable(value):
        return CallableMethod(value, name=getattr(value, "__name__", "callable")), {}
    raise InputError(
        f"expected a method: a name in xj.METHODS, a method such as xj.gradient, functools.partial(method, "
        f"**options), or a callable f(model, variables, x, target); got {type(value).__name__}."
    )


def method_call(value: MethodLike, problem: Problem, inputs: Inputs, **fixed: Any) -> MethodCall:
    """Check a method value against a call once (eagerly) and return what a wrapper runs.

    ``fixed`` are options the wrapper itself supplies (a baseline drawn per sample...); they must not
    also be given by the user.
    """
    method, options = resolve_method(value)
    clash = sorted(set(options) & set(fixed))
    if clash:
        raise InputError(f"{', '.join(clash)} of {method.name!r} is set by the wrapper; do not pass it.")
    if isinstance(method, CallableMethod):
        return MethodCall(Prepared(method, ()), {})
    return method.prepare_call(problem, inputs, {**options, **fixed})


def _check_method_value(ctx: OptionContext, name: str, value: Any) -> MethodCall:
    return method_call(value, ctx.problem, ctx.inputs)


def _check_input_method(ctx: OptionContext, name: str, value: Any) -> MethodCall:
    wrapped, _ = resolve_method(value)
    if wrapped.resolution != "input":
        raise InputError(f"{ctx.method} wraps input-resolution attribution methods; {wrapped.name!r} gives layer maps.")
    return method_call(value, ctx.problem, ctx.inputs)


#: Annotation of an option that takes a method value (checked against the call, then passed on).
MethodValue = Annotated[Any, Option(_check_method_value)]
#: The same, for a method whose maps have ``x``'s shape (what SmoothGrad and the metrics need).
InputMethod = Annotated[Any, Option(_check_input_method)]


# ---------------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------------


class Registry(Mapping[str, Method]):
    """Read-only mapping of method names to :class:`Method` values; :func:`method` adds to it."""

    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}

    def add(self, method: Method) -> Method:
        """Register ``method``.  The same definition run again (a notebook cell re-run, a module
        reloaded: same module and qualified name) replaces the earlier one; another method of an
        existing name is an error."""
        earlier = self._methods.get(method.name)
        if earlier is not None and earlier is not method and _origin(earlier) != _origin(method):
            raise ValueError(f"method {method.name!r} is registered twice ({_origin(earlier)} and {_origin(method)})")
        self._methods[method.name] = method
        return method

    def remove(self, name: str) -> Method:
        """Unregister ``name`` and return its method (for a method registered by a test or an experiment)."""
        method = self[name]
        del self._methods[name]
        return method

    def __getitem__(self, name: str) -> Method:
        try:
            return self._methods[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message("method", name, self._methods)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._methods)

    def __len__(self) -> int:
        return len(self._methods)


def _origin(method: Method) -> str:
    return f"{getattr(method.impl, '__module__', '?')}.{getattr(method.impl, '__qualname__', '?')}"


METHODS = Registry()


def method(
    name: str,
    *,
    family: str,
    signed: bool = True,
    resolution: str = "input",
    report_options: Mapping[str, Any] | None = None,
    validate: Validate | None = None,
    register: bool = True,
    tokens: bool | TokenAdapter = False,
) -> Callable[[Callable[..., Any]], Method]:
    """Declare an attribution method from its pure implementation (see the module docstring).

    Args:
      name: registry name.
      family: the method family (``"gradient"``, ``"path"``, ``"cam"``...).
      signed: whether maps have a meaningful sign (diverging colormap) or are magnitudes.
      resolution: ``"input"`` (maps of ``x``'s shape) or ``"layer"`` (``(B, h, w)`` at a layer).
      report_options: options a report (``xai-jax explain``) uses when the user gives none.
      validate: ``validate(ctx) -> extra options``: eager checks across options (``ctx.options`` are
        the options checked one by one); may return normalised options.
      register: add to :data:`METHODS` (default).
      tokens: how the method takes integer inputs (token ids). ``True``: it handles them itself,
        explaining the embedding lookup's output (LRP, DeepLIFT); a :data:`TokenAdapter` (e.g.
        :func:`xai_jax.trace.tokens.on_embedding`): the call runs on the embedding and the adapter
        sums the result per token (gradient methods); ``False``: integer inputs are refused.
    """

    def declare(impl: Callable[..., Any]) -> Method:
        made = Method(
            impl,
            name=name,
            family=family,
            signed=signed,
            resolution=resolution,
            report_options=report_options,
            validate=validate,
            tokens=tokens,
        )
        return METHODS.add(made) if register else made

    return declare


def fix_target(problem: Problem, inputs: Inputs) -> tuple[Problem, Inputs]:
    """The same call with the classes fixed at ``inputs.x`` (for wrappers that explain perturbed
    copies of ``x``: the predicted class must not change from one copy to the next)."""
    if problem.target.kind != "argmax":
        return problem, inputs
    indices = problem.class_indices(inputs)
    return dataclasses.replace(problem, target=TargetSpec("index")), inputs._replace(indices=indices)


__all__ = [
    "METHODS",
    "ArrayOption",
    "Baseline",
    "BoundMethod",
    "CallableMethod",
    "Choice",
    "ChunkSize",
    "FiniteFloat",
    "Flag",
    "InputMethod",
    "Key",
    "Method",
    "MethodCall",
    "MethodValue",
    "NonNegativeFloat",
    "NonNegativeInt",
    "Option",
    "OptionContext",
    "OptionSpec",
    "PositiveFloat",
    "PositiveInt",
    "Prepared",
    "TokenAdapter",
    "fix_target",
    "method",
    "method_call",
    "resolve_baseline",
    "resolve_method",
    "split_static",
]
