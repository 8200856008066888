"""One walker, one activation detector: the gradient interpreter, the propagation graph and the layer
listing read a model the same way, and rules can target an activation kind."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.trace import graph, rewrite
from xai_jax.trace.activations import Activation, count_relus, find_activations, relu_rules


class Mixed(nn.Module):
    """Every form of activation, next to things that look like one: LayerNorm's variance clamp and the
    ``max(x, 0)`` inside ``jax.nn.celu``."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.LayerNorm(name="ln")(nn.Dense(6, name="d1")(x)))
        h = jax.nn.silu(nn.Dense(6, name="d2")(h))  # a jit named "silu"
        h = jnp.tanh(nn.Dense(6, name="d3")(h))  # a primitive
        h = jax.nn.celu(nn.Dense(6, name="d4")(h))  # a jit named "celu" holding max(x, 0)
        h = jnp.maximum(nn.Dense(6, name="d5")(h), 0.0)
        return nn.Dense(3, name="head")(h)


@pytest.fixture(scope="module")
def mixed():
    x = jax.random.normal(jax.random.key(0), (4, 5))
    model = Mixed()
    return model, model.init(jax.random.key(1), x), x


KINDS = ["relu", "silu", "tanh", "celu", "relu"]


def test_interpreter_propagation_and_listing_see_the_same_activations(mixed):
    model, variables, x = mixed
    fn = lambda v, z: model.apply(v, z)
    assert [e.activation for e in find_activations(fn, variables, x)] == KINDS
    propagation = graph.flatten(jax.make_jaxpr(fn)(variables, x))
    assert [e.activation for e in propagation.eqns if e.activation] == KINDS
    listed = [info for info in xj.layers(model, variables, x) if info.after is not None]
    assert [(info.after, info.type) for info in listed] == [
        ("ln", "relu"),
        ("d2", "silu"),
        ("d3", "tanh"),
        ("d4", "celu"),
        ("d5", "relu"),
    ]


def test_count_relus_ignores_the_max_inside_celu(mixed):
    model, variables, x = mixed
    assert count_relus(lambda v, z: model.apply(v, z), variables, x) == 2


def test_a_rule_targets_an_activation_kind_in_every_form(mixed):
    """``{Activation("relu"): rule}`` reaches nn.relu and jnp.maximum(x, 0) and nothing else; a rule
    for ``silu`` reaches the named call as one unit."""
    model, variables, x = mixed
    fn = lambda z: model.apply(variables, z)
    seen = []

    def spy(kind):
        def rule(eqn, invals):
            seen.append((kind, eqn.primitive.name))
            return xj.trace.interpreter.bind_original(eqn, invals)

        return rule

    out = rewrite(fn, {Activation("relu"): spy("relu"), Activation("silu"): spy("silu")})(x)
    np.testing.assert_array_equal(out, fn(x))
    assert seen == [("relu", "custom_jvp_call"), ("silu", "jit"), ("relu", "max")]
    # an activation rule wins over a rule for the same primitive; other max equations keep theirs
    seen.clear()
    rewrite(fn, {Activation("relu"): spy("relu"), "max": spy("max")})(x)
    assert seen.count(("relu", "max")) == 1 and ("relu", "custom_jvp_call") in seen
    assert ("max", "max") in seen  # LayerNorm's variance clamp: a max, not a ReLU


def test_gradient_methods_keep_custom_derivatives_propagation_inlines_them():
    """A ReLU inside a user's custom_vjp function is invisible to gradient rules (its own VJP is the
    function's gradient) and visible to relevance propagation (which replaces every backward pass)."""

    @jax.custom_vjp
    def clipped(z):
        return jnp.maximum(z, 0.0)

    clipped.defvjp(lambda z: (clipped(z), z), lambda z, g: (2.0 * g,))  # deliberately not ReLU's gradient
    fn = lambda z: jnp.sum(clipped(z) * jnp.arange(3.0))
    x = jnp.array([1.0, -1.0, 2.0])
    assert [e.activation for e in find_activations(fn, x)] == []
    assert [e.activation for e in find_activations(fn, x, inline_custom=True)] == ["relu"]
    guided = rewrite(fn, relu_rules(lambda z, g: jnp.where((z > 0) & (g > 0), g, 0.0)))
    np.testing.assert_array_equal(jax.grad(guided)(x), jax.grad(fn)(x))
    np.testing.assert_array_equal(jax.grad(fn)(x), 2.0 * jnp.arange(3.0))


def test_xla_cpu_rules_live_in_one_module():
    import importlib.util

    from xai_jax.models import train
    from xai_jax.trace import xla_cpu

    assert xla_cpu.FAST_GRADIENT_RULES is xj.trace.FAST_GRADIENT_RULES
    assert train._TRAINING_RULES["conv_general_dilated"] is xla_cpu.conv_transpose_kernel_rule
    for old in ("xai_jax.trace.pooling", "xai_jax.featureviz.loop_rules"):  # no second home for a rule
        assert importlib.util.find_spec(old) is None
