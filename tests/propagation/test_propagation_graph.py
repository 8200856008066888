"""The propagation graph (xai_jax/trace/graph.py): flattening, layer grouping, names, taps."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.core.model import make_forward
from xai_jax.trace import graph
from xai_jax.trace.layers import probed_forward


class ConvBNBlock(nn.Module):
    @nn.compact
    def __call__(self, x):
        y = nn.Conv(4, (3, 3), name="conv")(x)
        y = nn.BatchNorm(use_running_average=True, name="bn")(y)
        return nn.relu(y * 2.0) + x  # a constant scale after BN, then a residual sum


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (1, 1), name="stem")(x)
        x = ConvBNBlock(name="block")(nn.relu(x))
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        return nn.Dense(3, name="head")(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def net():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 4, 4)), jnp.float32)
    v = Net().init(jax.random.key(0), x)
    return Net(), v, x


def plan_of(model, v, x, **options):
    return graph.trace_plan(lambda v, x: model.apply(v, x), (v, x), 1, root="Net", **options)[0]


def test_grouping_names_and_kinds(net):
    model, v, x = net
    plan = plan_of(model, v, x)
    steps = [s for s in plan.steps if s.kind != "constant"]
    assert [(s.kind, s.name) for s in steps if s.kind in ("conv", "dense", "sum", "avgpool")] == [
        ("conv", "stem"),
        ("conv", "block/conv"),
        ("sum", "block"),
        ("avgpool", ""),
        ("dense", "head"),
    ]
    block_conv = next(s for s in steps if s.name == "block/conv")
    # bias add, BN sub/mul/add and the inline ×2 are one layer
    assert [e.primitive for e in block_conv.eqns] == ["conv_general_dilated", "add", "sub", "mul", "add", "mul"]
    assert block_conv.has_scale and block_conv.has_bias and block_conv.x_nonnegative
    assert not next(s for s in steps if s.name == "stem").x_nonnegative


def test_layer_equals_its_folded_affine_form(net):
    """z = c ⊙ A_W(x) + b with c = chain(1, no bias) and b = chain(0): the step's own forward."""
    model, v, x = net
    plan = plan_of(model, v, x)
    env = {}
    graph.run(plan, jax.tree_util.tree_leaves((v, x)), graph.default_handle, record=env)
    step = next(s for s in plan.layers() if s.name == "block/conv")
    vals = [a.val if not hasattr(a, "id") else env[a.id] for a in step.inputs]
    z = env[step.outputs[0].id]
    anchor = step.apply(vals[0], vals[1])
    c = step.chain(jnp.ones_like(z), step.chain_constants(vals), bias=False)
    b = step.chain(jnp.zeros_like(z), step.chain_constants(vals))
    np.testing.assert_allclose(c * anchor + b, z, rtol=1e-5, atol=1e-5)
    folded = step.folded_weight(vals[1], step.chain_constants(vals))  # BN's per-channel scale in the kernel
    assert folded is not None
    np.testing.assert_allclose(step.apply(vals[0], folded) + b, z, rtol=1e-5, atol=1e-5)


def test_no_merge_keeps_batchnorm_apart(net):
    model, v, x = net
    plan = plan_of(model, v, x, merge_affine=False)
    block_conv = next(s for s in plan.layers() if s.name == "block/conv")
    assert [e.primitive for e in block_conv.eqns] == ["conv_general_dilated", "add"]
    assert [s.kind for s in plan.steps if s.name == "block/bn" and s.kind != "constant"] == ["affine"] * 3


def test_probe_tap_moves_to_the_end_of_the_layer(net):
    model, v, x = net
    forward, _ = make_forward(model, None)
    probe = jnp.zeros((2, 4, 4, 4))
    run = probed_forward(forward, "block/conv")
    plan = graph.trace_plan(lambda v, x, p: run(v, x, {}, p)[0], (v, x, probe), 1, probe_argnum=2, root="Net")[0]
    step = next(s for s in plan.layers() if s.name == "block/conv")
    assert plan.tap is step.outputs[0]  # the conv's output is inside the merged layer: read after BN and ×2
    assert not any(e.primitive == "add" and plan.probe in e.inputs for e in plan.graph.eqns)


def test_nested_calls_are_inlined_with_joined_names(net):
    model, v, x = net
    jitted = jax.jit(model.apply)
    plan = graph.trace_plan(lambda v, x: jitted(v, x), (v, x), 1, root="Net")[0]
    assert [s.name for s in plan.layers()] == ["stem", "block/conv", "head"]


def test_unsupported_message_names_primitive_and_layer():
    class Bad(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2, name="out")(jnp.cumsum(nn.Dense(3, name="hidden")(x), axis=-1))

    x = jnp.ones((2, 3))
    v = Bad().init(jax.random.key(0), x)
    with pytest.raises(xj.UnsupportedError, match=r"'cumsum' in 'Bad'.*Supported: linear layers"):
        graph.trace_plan(lambda v, x: Bad().apply(v, x), (v, x), 1)
