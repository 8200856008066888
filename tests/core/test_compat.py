"""xai_jax/core/compat.py: every access to JAX beyond its stable API, checked on the installed jax.

CI runs this on the oldest (0.10) and the newest jax; a release that moves an internal fails here
first, with the adapter function's name in the test name.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import pytest

from xai_jax.core import compat


@pytest.fixture(autouse=True)
def _no_deprecation_warnings():
    # A deprecated access would warn before it breaks: make it fail here instead.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("error", FutureWarning)
        yield


def _model(x: jax.Array) -> jax.Array:
    with jax.named_scope("block"):
        h = jax.nn.relu(x * 2.0)
    return jax.jit(lambda z: jnp.sum(jnp.maximum(z, 0.0)))(h)


def _closed() -> jax.extend.core.ClosedJaxpr:
    return jax.make_jaxpr(_model)(jnp.ones(3))


def test_is_tracer_and_any_tracer() -> None:
    seen: list[bool] = []

    def f(x: jax.Array) -> jax.Array:
        seen.append(compat.is_tracer(x) and compat.any_tracer({"a": [1.0, x]}))
        return x

    jax.jit(f)(jnp.ones(2))
    jax.grad(lambda x: f(x).sum())(jnp.ones(2))
    assert seen == [True, True]
    assert not compat.is_tracer(jnp.ones(2)) and not compat.any_tracer((1.0, jnp.ones(2)))


def test_atoms_literals_and_vars() -> None:
    closed = _closed()
    mul = next(e for e in closed.jaxpr.eqns if e.primitive.name == "mul")
    var, literal = mul.invars
    assert compat.is_jaxpr_var(var) and not compat.is_literal(var)
    assert compat.is_literal(literal) and float(compat.literal_value(literal)) == 2.0
    assert not compat.is_jaxpr_var(literal)
    assert not compat.is_drop_var(mul.outvars[0])


def test_drop_var() -> None:
    # make_jaxpr drops unused outputs before we see them; jaxprs from other transformations (and
    # hand-built ones) write them as "_", a DropVar, which is a Var subclass.
    aval = _closed().jaxpr.invars[0].aval
    dropped = compat.DropVar(aval)
    assert compat.is_drop_var(dropped) and not compat.is_jaxpr_var(dropped)


def test_bind_equation_reproduces_each_equation() -> None:
    closed = _closed()
    env: dict[object, object] = dict(zip(closed.jaxpr.invars, [jnp.arange(3.0) - 1.0]))

    def read(v: object) -> object:
        return compat.literal_value(v) if compat.is_literal(v) else env[v]

    for eqn in closed.jaxpr.eqns:
        out = compat.bind_equation(eqn, [read(v) for v in eqn.invars])
        outs = out if eqn.primitive.multiple_results else [out]
        env.update(zip(eqn.outvars, outs))
    assert float(env[closed.jaxpr.outvars[0]]) == pytest.approx(float(_model(jnp.arange(3.0) - 1.0)))


def test_name_stack_and_custom_jvp_function_name() -> None:
    closed = _closed()
    relu = next(e for e in closed.jaxpr.eqns if e.primitive.name == "custom_jvp_call")
    assert compat.custom_jvp_function_name(relu) == "relu"
    assert compat.name_stack(relu) == "block"
    nested = next(e for e in closed.jaxpr.eqns if e.primitive.name in compat.JIT_PRIMITIVES)
    assert compat.custom_jvp_function_name(nested) is None
    assert compat.name_stack(nested) == ""


def _nested(x: jax.Array) -> jax.Array:
    table = jnp.arange(3.0)  # a constant captured by the bodies below
    y = jax.checkpoint(lambda z: jnp.tanh(z) * table)(x)
    y = _sine(y)
    return jax.jit(lambda z: z + table)(y)


@jax.custom_vjp
def _sine(x: jax.Array) -> jax.Array:
    return jnp.sin(x)


_sine.defvjp(lambda x: (_sine(x), x), lambda x, g: (g * jnp.cos(x),))


def test_call_body_and_custom_call_primal_evaluate_to_the_equation() -> None:
    closed = jax.make_jaxpr(_nested)(jnp.ones(3))
    x = jnp.array([0.5, -1.0, 2.0])
    env: dict[object, object] = dict(zip(closed.jaxpr.invars, [x]))
    env.update(zip(closed.jaxpr.constvars, closed.consts))
    kinds = []
    for eqn in closed.jaxpr.eqns:
        body = compat.call_body(eqn) or compat.custom_call_primal(eqn)
        ins = [compat.literal_value(v) if compat.is_literal(v) else env[v] for v in eqn.invars]
        if body is not None:
            kinds.append(eqn.primitive.name)
            jaxpr, consts = body
            outs = jax.core.eval_jaxpr(jaxpr, consts, *ins)
        else:
            out = compat.bind_equation(eqn, ins)
            outs = out if eqn.primitive.multiple_results else [out]
        env.update(zip(eqn.outvars, outs))
    assert len(kinds) == 3, kinds  # remat, custom_vjp_call, jit
    assert jnp.allclose(env[closed.jaxpr.outvars[0]], _nested(x))
    mul = next(e for e in _closed().jaxpr.eqns if e.primitive.name == "mul")
    assert compat.call_body(mul) is None and compat.custom_call_primal(mul) is None


def test_backend_started() -> None:
    jnp.ones(1).block_until_ready()  # by now this process's backend runs
    assert compat.backend_started() is True
