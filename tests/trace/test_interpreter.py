"""The jaxpr interpreter and the fast max-pool gradient it substitutes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import xai_jax as xj
from xai_jax.trace import FAST_GRADIENT_RULES, max_pool_first_max_gradient, rewrite

POOLS = [
    ((4, 28, 28, 8), (2, 2), (2, 2), "VALID"),
    ((3, 9, 11, 5), (3, 3), (2, 2), ((1, 1), (1, 1))),
    ((2, 10, 10, 3), (3, 3), (1, 1), "SAME"),
    ((2, 7, 7, 2), (2, 3), (1, 2), "VALID"),
]


@pytest.mark.parametrize("shape, window, strides, padding", POOLS)
def test_fast_pool_gradient_is_bit_identical_to_xla(shape, window, strides, padding):
    x = jnp.round(jax.random.normal(jax.random.key(0), shape) * 2) / 2  # many ties inside windows

    def f(z):
        return jnp.sum(jnp.sin(nn.max_pool(nn.relu(z), window, strides, padding)))

    fast = rewrite(f, FAST_GRADIENT_RULES)
    assert fast(x) == f(x)
    np.testing.assert_array_equal(jax.grad(fast)(x), jax.grad(f)(x))


def test_fast_pool_has_no_scatter_in_its_gradient():
    f = lambda z: jnp.sum(nn.max_pool(z, (2, 2), (2, 2)))
    x = jnp.ones((8, 28, 28, 4))
    assert "select_and_scatter" in jax.jit(jax.grad(f)).lower(x).as_text()
    assert "select_and_scatter" not in jax.jit(jax.grad(rewrite(f, FAST_GRADIENT_RULES))).lower(x).as_text()


def test_fast_pool_check_grads():
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 2))
    params = dict(
        window_dimensions=(1, 2, 2, 1),
        window_strides=(1, 2, 2, 1),
        padding=((0, 0),) * 4,
        base_dilation=(1,) * 4,
        window_dilation=(1,) * 4,
    )
    check_grads(
        lambda z: max_pool_first_max_gradient(z, **params), (x,), order=1, modes=["rev"], eps=1e-3, atol=1e-2, rtol=1e-2
    )


def test_nested_calls_are_inlined_so_rules_apply_inside():
    seen = []

    def spy(eqn, invals):
        seen.append(eqn.primitive.name)
        return jnp.sin(invals[0])

    inner = jax.jit(lambda z: jnp.cos(z) * 2)
    remat = jax.checkpoint(lambda z: jnp.cos(z) + 1)
    f = lambda z: inner(z) + remat(z)
    out = rewrite(f, {"cos": spy})(jnp.float32(0.3))
    assert seen == ["cos", "cos"]
    np.testing.assert_allclose(out, jnp.sin(0.3) * 2 + jnp.sin(0.3) + 1, rtol=1e-6)


def test_rewrite_composes_with_jit_vmap_grad():
    f = lambda w, z: jnp.sum(nn.max_pool(jnp.tanh(z * w), (2, 2), (2, 2)))
    fast = rewrite(f, FAST_GRADIENT_RULES)
    x = jax.random.normal(jax.random.key(2), (3, 4, 4, 1))
    expected = jax.vmap(jax.grad(f, argnums=1), in_axes=(None, 0))(1.5, x)
    np.testing.assert_allclose(
        jax.jit(jax.vmap(jax.grad(fast, argnums=1), in_axes=(None, 0)))(1.5, x), expected, rtol=1e-6
    )


def test_strict_mode_names_unsupported_higher_order_primitives():
    f = lambda z: jax.lax.fori_loop(0, 3, lambda i, c: c * 2, z)
    np.testing.assert_allclose(rewrite(f, {})(jnp.float32(1.0)), 8.0)  # bound as is when not strict
    with pytest.raises(xj.UnsupportedError, match="scan"):  # fori_loop with static bounds is a scan
        rewrite(f, {}, strict=True)(jnp.float32(1.0))


def test_gradient_entry_point_uses_the_fast_pool():
    class Pooled(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.max_pool(nn.relu(nn.Conv(3, (3, 3))(x)), (2, 2), (2, 2))
            return nn.Dense(4)(x.reshape(x.shape[0], -1))

    model = Pooled()
    x = jnp.round(jax.random.normal(jax.random.key(3), (5, 8, 8, 1)) * 2) / 2
    variables = model.init(jax.random.key(4), x)
    expected = jax.grad(lambda z: jnp.sum(model.apply(variables, z)[:, 2]))(x)
    np.testing.assert_array_equal(xj.gradient(model, variables, x, 2), expected)


def test_relu_rule_with_the_true_backward_passes_check_grads():
    """The custom_vjp ReLU machinery is a faithful gradient when given ReLU's own backward."""
    from xai_jax.trace.activations import relu_rules, relu_with_backward

    relu = relu_with_backward(lambda x, g: jnp.where(x > 0, g, 0.0))
    x = jax.random.normal(jax.random.key(0), (3, 7)) + 0.05  # keep away from the kink
    check_grads(lambda z: jnp.sin(relu(z) * 2.0), (x,), order=1, modes=["rev"], eps=1e-3, atol=1e-2, rtol=1e-2)
    f = lambda z: jnp.sum(jnp.tanh(nn.relu(z) - jnp.maximum(z * 2, 0)))
    rewritten = rewrite(f, relu_rules(lambda x, g: jnp.where(x > 0, g, 0.0)))
    np.testing.assert_allclose(jax.grad(rewritten)(x), jax.grad(f)(x), rtol=1e-6)
