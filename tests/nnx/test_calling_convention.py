"""Flax NNX in the calling convention: the three forms, layer names from attribute paths, the
user's module never touched, compilation keys, and the errors for a model in training mode."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import xai_jax as xj
from xai_jax.core import compat
from xai_jax.core.errors import ModelModeError
from xai_jax.core.model import adapt_model, make_forward
from xai_jax.models.nnx_mnist import build


class Block(nnx.Module):
    def __init__(self, c_in: int, c_out: int, *, rngs: nnx.Rngs) -> None:
        self.conv = nnx.Conv(c_in, c_out, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(c_out, rngs=rngs)

    def __call__(self, x):
        return nnx.relu(self.bn(self.conv(x)))


class Net(nnx.Module):
    """Blocks in an ``nnx.List``, a shared module called twice, a Dropout, a Linear head."""

    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.layers = nnx.List([Block(1, 4, rngs=rngs), Block(4, 4, rngs=rngs)])
        self.mix = nnx.Conv(4, 4, (1, 1), rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.head = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        x = self.mix(self.mix(x))  # the same module twice: "mix", "mix#1"
        x = self.drop(x)
        return self.head(jnp.mean(x, axis=(1, 2)))


def _net(seed: int = 0, *, eval_mode: bool = True) -> Net:
    model = build(Net)
    rng = np.random.default_rng(seed)
    graphdef, state = nnx.split(model)

    def draw(variable):
        if isinstance(variable, nnx.RngState):
            return variable
        shape = variable.get_value().shape
        return variable.replace(
            jnp.asarray(
                rng.uniform(0.5, 1.5, shape) if isinstance(variable, nnx.BatchStat) else rng.normal(0.0, 0.5, shape),
                jnp.float32,
            )
        )

    model = nnx.merge(graphdef, jax.tree_util.tree_map(draw, state, is_leaf=lambda v: isinstance(v, nnx.Variable)))
    if eval_mode:
        model.eval()
    return model


X = jnp.asarray(np.random.default_rng(1).normal(size=(3, 6, 6, 1)), jnp.float32)
TARGET = jnp.asarray([0, 2, 1])


def _reference_gradient(model: nnx.Module, x: jax.Array, target: jax.Array) -> jax.Array:
    return jax.grad(lambda x: jnp.sum(model(x)[jnp.arange(x.shape[0]), target]))(x)


def test_three_forms_give_the_gradient_of_the_model():
    model = _net()
    expected = _reference_gradient(model, X, TARGET)
    graphdef, state = nnx.split(model)
    graphdef2, params, rest = nnx.split(model, nnx.Param, ...)
    forms = {
        "module": (model, None),
        "graphdef, state": (graphdef, state),
        "graphdef, (params, rest)": (graphdef2, (params, rest)),
        "module, params": (model, nnx.state(model, nnx.Param)),
    }
    for form, (m, v) in forms.items():
        np.testing.assert_allclose(xj.gradient(m, v, X, TARGET), expected, rtol=1e-6, atol=1e-6, err_msg=form)


def test_state_passed_with_the_module_replaces_its_own():
    model = _net()
    params = nnx.state(model, nnx.Param)
    doubled = jax.tree_util.tree_map(lambda a: 2 * a, params)
    other = _net()
    nnx.update(other, doubled)
    np.testing.assert_allclose(
        xj.gradient(model, doubled, X, TARGET), _reference_gradient(other, X, TARGET), rtol=1e-5, atol=1e-6
    )


def test_differentiating_an_explanation_with_respect_to_the_parameters():
    model = _net()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def by_hand(p):
        m = nnx.merge(graphdef, p, rest)
        return jnp.sum(_reference_gradient(m, X, TARGET) ** 2)

    got = jax.grad(lambda p: jnp.sum(xj.gradient(model, p, X, TARGET) ** 2))(params)
    want = jax.grad(by_hand)(params)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_users_module_is_never_touched():
    model = _net()
    classes = {path: type(node) for path, node in nnx.iter_graph(model)}
    leaves = jax.tree_util.tree_leaves(nnx.state(model))
    xj.gradient(model, None, X, TARGET)
    xj.layers(model, None, X)
    xj.capture(model, None, X, "layers/1/bn+relu")
    xj.lrp(model, None, X, TARGET, layer="layers/1")
    xj.grad_cam(model, None, X, TARGET, layer="mix#1")
    assert {path: type(node) for path, node in nnx.iter_graph(model)} == classes
    after = jax.tree_util.tree_leaves(nnx.state(model))
    assert all(a is b for a, b in zip(after, leaves)) and len(after) == len(leaves)
    assert not compat.any_tracer(after)


def test_layer_names_are_attribute_paths():
    listed = xj.layers(_net(), None, X)
    names = listed.names()
    for name in (
        "layers/0/conv",
        "layers/0/bn",
        "layers/0",
        "layers/1/conv",
        "layers/1/bn+relu",
        "mix",
        "mix#1",
        "drop",
        "head",
    ):
        assert name in names, (name, names)
    types = {info.name: info.type for info in listed}
    assert types["layers/0"] == "Block" and types["head"] == "Linear" and types["layers/1/bn+relu"] == "relu"
    assert listed[names.index("layers/1/conv")].shape == (3, 6, 6, 4)


def test_traced_equations_carry_the_layer_paths_in_their_name_stack():
    model, state = adapt_model(_net(), None)
    closed = jax.make_jaxpr(lambda s, x: model(s, x))(state, X)
    scopes = set()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            scopes.add(compat.name_stack(eqn))
            body = compat.call_body(eqn)
            if body is not None:
                walk(body[0])

    walk(closed.jaxpr)
    for scope in ("Net/layers/0/conv", "Net/layers/1/bn", "Net/mix", "Net/head"):
        assert any(s == scope or s.startswith(scope + "/") for s in scopes), (scope, sorted(scopes))


def test_capture_and_layer_gradient_probe_the_named_layer():
    model = _net()
    outputs, activation = xj.capture(model, None, X, "layers/0/bn+relu")
    np.testing.assert_allclose(outputs, model(X), rtol=1e-6, atol=1e-6)
    expected = model.layers[0](X)  # Block returns relu(bn(conv(x))): the rectified map
    np.testing.assert_allclose(activation, expected, rtol=1e-6, atol=1e-6)

    # the layer gradient, checked by splitting the model by hand at the second block's input
    _, grad = xj.layer_gradient(model, None, X, TARGET, layer="layers/0")

    def rest(a):
        a = model.layers[1](a)
        a = model.mix(model.mix(a))
        return jnp.sum(model.head(jnp.mean(a, axis=(1, 2)))[jnp.arange(3), TARGET])

    np.testing.assert_allclose(grad, jax.grad(rest)(expected), rtol=1e-5, atol=1e-6)


def test_equal_structures_share_a_compilation_key_and_modes_do_not():
    a, b = _net(0), _net(1)
    key = lambda m: make_forward(adapt_model(m, None)[0], None)[0]
    assert key(a) == key(b) and hash(key(a)) == hash(key(b))
    c = _net(0)
    c.train()
    assert key(c) != key(a)


# ---------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------


def test_a_model_in_training_mode_is_refused_with_what_to_do():
    model = _net(eval_mode=False)
    with pytest.raises(ModelModeError) as err:
        xj.gradient(model, None, X, TARGET)
    message = str(err.value)
    assert "training mode" in message and "model.eval()" in message and "nnx.view" in message
    assert "'layers/0/bn' updates its batch statistics" in message
    assert "'drop' draws from its rng stream" in message
    assert isinstance(err.value, xj.InputError)
    with pytest.raises(ModelModeError):  # layer access too
        xj.layers(model, None, X)
    # the switch: an inference-mode view leaves the model as it is, and gives the eval() numbers
    view = nnx.view(model, deterministic=True, use_running_average=True)
    evaluated = _net()
    np.testing.assert_allclose(xj.gradient(view, None, X, TARGET), xj.gradient(evaluated, None, X, TARGET), rtol=1e-6)
    assert model.drop.deterministic is False


def test_only_dropout_on_is_refused_too():
    model = _net()
    model.drop.deterministic = False
    with pytest.raises(ModelModeError, match="'drop' draws from its rng stream"):
        xj.integrated_gradients(model, None, X, TARGET, steps=2)


def test_a_graphdef_needs_its_state():
    graphdef, _ = nnx.split(_net())
    with pytest.raises(xj.InputError, match=r"graph definition needs its state: graphdef, state = nnx.split\(model\)"):
        xj.gradient(graphdef, None, X)


def test_a_state_the_model_does_not_have_is_named():
    state = nnx.State({"nope": {"kernel": nnx.Param(jnp.ones(2))}})
    with pytest.raises(xj.InputError, match="'nope/kernel', which the model does not have"):
        xj.gradient(_net(), state, X)


def test_rng_keys_left_split_are_refused():
    model = _net()
    graphdef, state = nnx.split(model)
    state["drop"]["rngs"]["key"] = state["drop"]["rngs"]["key"].replace(jax.random.split(jax.random.key(0), 4))
    with pytest.raises(xj.InputError, match="split"):
        xj.gradient(graphdef, state, X)
