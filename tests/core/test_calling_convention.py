"""The calling convention of DESIGN.md §1: model adapter, targets, batch checks, model_kwargs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.core import chunked_sum, chunked_vmap


class DropoutMLP(nn.Module):
    @nn.compact
    def __call__(self, x, *, deterministic: bool = True, scale: float = 1.0):
        h = nn.relu(nn.Dense(16, name="fc1")(x.reshape(x.shape[0], -1)))
        h = nn.Dropout(0.5, deterministic=deterministic)(h)
        return scale * nn.Dense(5, name="fc2")(h)


@pytest.fixture(scope="module")
def mlp():
    model = DropoutMLP()
    x = jax.random.normal(jax.random.key(0), (6, 3, 4))
    return model, model.init(jax.random.key(1), x), x


def _manual_grad(model, variables, x, classes, **kwargs):
    return jax.grad(lambda z: jnp.sum(model.apply(variables, z, **kwargs)[jnp.arange(z.shape[0]), classes]))(x)


def test_targets_none_int_array_callable(mlp):
    model, variables, x = mlp
    logits = model.apply(variables, x)
    pred = jnp.argmax(logits, -1)
    np.testing.assert_allclose(xj.gradient(model, variables, x), _manual_grad(model, variables, x, pred), rtol=1e-6)
    np.testing.assert_allclose(
        xj.gradient(model, variables, x, 2), _manual_grad(model, variables, x, jnp.full(6, 2)), rtol=1e-6
    )
    classes = np.array([0, 1, 2, 3, 4, 0])
    np.testing.assert_allclose(
        xj.gradient(model, variables, x, classes), _manual_grad(model, variables, x, classes), rtol=1e-6
    )
    via_callable = xj.gradient(model, variables, x, lambda out: out[:, 1] - out[:, 0])
    expected = jax.grad(lambda z: jnp.sum(model.apply(variables, z)[:, 1] - model.apply(variables, z)[:, 0]))(x)
    np.testing.assert_allclose(via_callable, expected, rtol=1e-5, atol=1e-7)


def test_plain_callable_model(mlp):
    model, variables, x = mlp
    fn = lambda v, z: model.apply(v, z)
    np.testing.assert_allclose(xj.gradient(fn, variables, x, 3), xj.gradient(model, variables, x, 3), rtol=1e-6)


def test_model_kwargs_static_and_array_valued(mlp):
    model, variables, x = mlp
    key = jax.random.key(7)
    got = xj.gradient(
        model, variables, x, 1, model_kwargs={"deterministic": False, "rngs": {"dropout": key}, "scale": 2.0}
    )
    expected = _manual_grad(model, variables, x, jnp.full(6, 1), deterministic=False, rngs={"dropout": key}, scale=2.0)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    other = xj.gradient(
        model,
        variables,
        x,
        1,
        model_kwargs={"deterministic": False, "rngs": {"dropout": jax.random.key(8)}, "scale": 2.0},
    )
    assert not np.allclose(got, other)  # a new key is a new dropout mask, not a cached one


def test_saliency_and_input_x_gradient(mlp):
    model, variables, x = mlp
    g = xj.gradient(model, variables, x, 4)
    np.testing.assert_array_equal(xj.saliency(model, variables, x, 4), jnp.abs(g))
    np.testing.assert_allclose(xj.input_x_gradient(model, variables, x, 4), x * g, rtol=1e-6)


def test_composes_with_user_jit_and_vmap(mlp):
    model, variables, x = mlp
    eager = xj.gradient(model, variables, x, 2)
    np.testing.assert_allclose(jax.jit(lambda z: xj.gradient(model, variables, z, 2))(x), eager, rtol=1e-6)
    per_sample = jax.vmap(lambda z: xj.gradient(model, variables, z[None], 2)[0])(x)
    np.testing.assert_allclose(per_sample, eager, rtol=1e-5, atol=1e-7)
    targets = jnp.array([0, 1, 2, 3, 4, 0])
    np.testing.assert_allclose(
        jax.jit(lambda z, t: xj.gradient(model, variables, z, t))(x, targets),
        xj.gradient(model, variables, x, targets),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "bad_x, message",
    [
        (np.zeros((3, 4), np.float32), "batch"),  # one sample without its batch axis: model fails
        (np.zeros(12, np.float32), "batch axis is missing"),
        (np.zeros((6, 3, 4), np.uint8), "dtype uint8"),
    ],
)
def test_bad_inputs(mlp, bad_x, message):
    model, variables, _ = mlp
    with pytest.raises(xj.InputError, match=message):
        xj.gradient(model, variables, bad_x)


@pytest.mark.parametrize("name", ["integrated_gradients", "input_x_gradient", "deeplift", "lrp"])
def test_integer_images_are_refused_by_methods_that_take_token_ids(mlp, name):
    """Methods that explain token ids from their embedding lookup must not take an image given as
    integers (cast by the model as it is) for tokens: that is the missing ``/ 255``, refused."""
    model, variables, _ = mlp
    with pytest.raises(xj.InputError, match="dtype uint8 .* uint8 images / 255"):
        xj.METHODS[name](model, variables, np.zeros((6, 3, 4), np.uint8))


def test_one_image_without_batch_axis_on_a_zoo_model():
    """A zoo model declares its input shape, so one image is recognised as such."""
    model = xj.models.build("mnist_cnn")
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    variables = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), variables)
    with pytest.raises(
        xj.InputError, match=r"^x has shape \(28, 28, 1\), one example .* batch axis is missing. Pass x\[None\]"
    ):
        xj.gradient(model, variables, np.zeros((28, 28, 1), np.float32))
    # another wrong shape with its batch axis: the model's own error, not a batch-axis hint (issue 13.10)
    with pytest.raises(
        xj.InputError, match=r"^the model failed on x of shape \(2, 14, 14, 1\) \(float32\): ScopeParamShapeError"
    ) as err:
        xj.gradient(model, variables, np.zeros((2, 14, 14, 1), np.float32))
    assert "x[None]" not in str(err.value)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_an_error(mlp, value):
    model, variables, x = mlp
    bad = np.array(x)
    bad[3, 2, 1] = value
    with pytest.raises(xj.InputError, match="NaN or infinite"):
        xj.gradient(model, variables, bad)


def test_nan_found_in_a_large_batch(mlp):
    """A NaN at the end of > 4096 values: the reduction that looks for it must not lose it."""
    model, variables, _ = mlp
    bad = np.ones((400, 3, 4), np.float32)
    bad[-1, -1, -1] = np.nan
    with pytest.raises(xj.InputError, match="1 NaN"):
        xj.gradient(model, variables, bad)


@pytest.mark.parametrize(
    "target, message",
    [
        (5, "out of range"),
        (-1, "out of range"),
        (np.array([0, 1, 2, 3, 4, 9]), r"\[9\] out of range"),
        (np.arange(5), "shape \\(6,\\)"),
        (np.ones(6, np.float32), "integer"),
        (True, "bool"),
        ("cat", "str"),
    ],
)
def test_bad_targets(mlp, target, message):
    model, variables, x = mlp
    with pytest.raises(xj.TargetError, match=message):
        xj.gradient(model, variables, x, target)


def test_callable_target_must_return_one_scalar_per_sample(mlp):
    model, variables, x = mlp
    with pytest.raises(xj.TargetError, match="one scalar per sample"):
        xj.gradient(model, variables, x, lambda out: out)


def test_class_target_needs_class_scores():
    fn = lambda v, x: x * v
    x = jnp.ones((2, 3, 4))
    with pytest.raises(xj.TargetError, match="callable target"):
        xj.gradient(fn, 2.0, x, 1)
    np.testing.assert_allclose(xj.gradient(fn, 2.0, x, lambda out: out.sum(axis=(1, 2))), 2 * x)


def test_class_target_without_indices_is_refused_clearly():
    # TargetSpec.select indexed None (a bare TypeError) when a class target came without its indices.
    from xai_jax.core.targets import TargetSpec

    with pytest.raises(xj.TargetError, match="class indices"):
        TargetSpec("index").select(jnp.ones((2, 3)), None)


def test_registry_lists_methods_and_rejects_unknown_names():
    assert {"gradient", "saliency", "input_x_gradient"} <= set(xj.METHODS)
    info = xj.METHODS["saliency"]
    assert info.family == "gradient" and not info.signed and info.resolution == "input"
    with pytest.raises(xj.UnknownNameError, match="Did you mean: 'saliency'"):
        xj.METHODS["salency"]


@pytest.mark.parametrize("chunk", [None, 1, 3, 4, 10, 64])
def test_chunked_helpers_equal_a_full_vmap(chunk):
    xs = jax.random.normal(jax.random.key(0), (10, 5))
    fn = lambda v: jnp.sin(v) * 2
    np.testing.assert_allclose(chunked_vmap(fn, xs, chunk_size=chunk), jax.vmap(fn)(xs), rtol=1e-6)
    np.testing.assert_allclose(chunked_sum(fn, xs, chunk_size=chunk), jax.vmap(fn)(xs).sum(0), rtol=1e-5)


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_vmap(jnp.sin, jnp.ones((4, 2)), chunk_size=0)
