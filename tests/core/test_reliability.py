"""Regression tests of the reliability pass (issue 13): no silent wrong answer, clear errors,
composition with a caller's jit, compilation reuse."""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.core import methods as method_module
from xai_jax.core.model import RecompilationWarning, structural_key


class MLP(nn.Module):
    widths: Any = (6,)  # a list here used to make the module unhashable

    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        for width in self.widths:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(3)(x)


class SmallCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), name="conv")(x))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(3, name="head")(x)


@pytest.fixture(scope="module")
def mlp():
    model = MLP()
    x = jax.random.normal(jax.random.key(1), (4, 2, 3))
    return model, model.init(jax.random.key(0), x), x


@pytest.fixture(scope="module")
def cnn():
    model = SmallCNN()
    x = jax.random.uniform(jax.random.key(1), (3, 6, 6, 1))
    return model, model.init(jax.random.key(0), x), x


# --- 2: every float option is checked finite -------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_noise_levels_are_refused(mlp, value):
    model, variables, x = mlp
    with pytest.raises(xj.InputError, match="sigma must be a finite number"):
        xj.smoothgrad(model, variables, x, key=jax.random.key(0), sigma=value)
    with pytest.raises(xj.InputError, match="stdev must be a finite number"):
        xj.smoothgrad(model, variables, x, key=jax.random.key(0), stdev=value)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_baselines_are_refused(mlp, cnn, value):
    model, variables, x = mlp
    for baseline in (value, np.full(x.shape, value, np.float32), lambda z: z * value):
        with pytest.raises(xj.InputError, match="baseline contains"):
            xj.integrated_gradients(model, variables, x, baseline=baseline)
        with pytest.raises(xj.InputError, match="baseline contains"):
            xj.deeplift(model, variables, x, baseline=baseline)
    model, variables, x = cnn
    with pytest.raises(xj.InputError, match="baseline contains"):
        xj.occlusion(model, variables, x, window=2, baseline=value)


def test_eps_and_epsilon_are_checked_finite(mlp):
    model, variables, x = mlp
    with pytest.raises(xj.InputError, match="eps must be a finite number"):
        xj.deeplift(model, variables, x, eps=math.nan)
    with pytest.raises(xj.InputError, match="epsilon must be a finite number"):
        xj.lrp_transpose(model, variables, x, epsilon=math.inf)


# --- 3: composite selectors that match nothing ------------------------------------------------------


def test_composite_selector_matching_no_layer_is_an_error(cnn):
    model, variables, x = cnn
    rule = xj.rules.Epsilon(1e-3)
    with pytest.raises(xj.InputError, match=r"No layer matches the layer name selector 'conv9'.*'conv'"):
        xj.lrp(model, variables, x, composite=xj.composites.MapComposite(names={"conv9": rule}))
    with pytest.raises(xj.InputError, match="type selector 'GroupNorm'"):
        xj.lrp(model, variables, x, composite=xj.composites.MapComposite(types={"GroupNorm": rule}))
    with pytest.raises(xj.InputError, match="layer name selector 'blocks/\\*'"):
        xj.lrp(model, variables, x, composite=xj.composites.EpsilonPlus(names={"blocks/*": rule}))
    # a matching name, a glob and a built-in composite's own conv/dense entries on a model without
    # some of them are fine
    xj.lrp(model, variables, x, composite=xj.composites.MapComposite(names={"con*": rule}, types={"dense": rule}))
    mlp_model = MLP()
    mlp_x = jnp.ones((2, 3))
    xj.lrp(mlp_model, mlp_model.init(jax.random.key(0), mlp_x), mlp_x, composite=xj.composites.EpsilonPlus())


# --- 4: the registry does not change numbers -------------------------------------------------------


def test_registry_entry_is_the_method_itself(cnn):
    model, variables, x = cnn
    for name in ("integrated_gradients", "smoothgrad", "occlusion"):
        assert xj.METHODS[name] is getattr(xj, name)
    np.testing.assert_array_equal(
        xj.METHODS["integrated_gradients"](model, variables, x, 1), xj.integrated_gradients(model, variables, x, 1)
    )
    assert xj.METHODS["integrated_gradients"].options["steps"].default == 50
    assert xj.METHODS["integrated_gradients"].report_options == {"steps": 32, "return_error": True}


# --- 8: composition with a caller's jit over something else -----------------------------------------


def test_jit_over_parameters_with_a_closed_over_batch(cnn):
    model, variables, x = cnn
    eager = xj.gradient(model, variables, x, 1)
    np.testing.assert_allclose(jax.jit(lambda v: xj.gradient(model, v, x, 1))(variables), eager, rtol=1e-6)
    # the differentiable-explanation use: a loss on the explanation, differentiated in the parameters
    loss = lambda v: jnp.sum(xj.input_x_gradient(model, v, x, 1) ** 2)
    grads = jax.jit(jax.grad(loss))(variables)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    sg = jax.jit(lambda k: xj.smoothgrad(model, variables, x, key=k, samples=2))(jax.random.key(0))
    np.testing.assert_allclose(
        sg, xj.smoothgrad(model, variables, x, key=jax.random.key(0), samples=2), rtol=1e-5, atol=1e-7
    )
    # a NaN batch closed over by the caller's jit is still refused (the check runs on concrete values)
    bad = np.array(x)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(xj.InputError, match="NaN"):
        jax.jit(lambda v: xj.gradient(model, v, bad, 1))(variables)


# --- 10: unhashable modules, model errors, empty batches --------------------------------------------


def test_module_with_list_attribute(mlp):
    _, _, x = mlp
    model = MLP(widths=[5, 4])  # lists: the upstream ResNet's stage_sizes, the ViT's config dict
    variables = model.init(jax.random.key(0), x)
    with pytest.raises(TypeError):
        hash(model)
    attr = xj.integrated_gradients(model, variables, x, 2, steps=4)
    assert attr.shape == x.shape
    assert structural_key(MLP(widths=[5, 4])) == structural_key(model) != structural_key(MLP(widths=[5, 3]))


def test_empty_batch_and_model_errors(mlp):
    model, variables, x = mlp
    with pytest.raises(xj.InputError, match="the batch is empty"):
        xj.gradient(model, variables, x[:0])

    def broken(variables, x):
        raise RuntimeError("the model's own problem")

    with pytest.raises(xj.InputError, match="RuntimeError: the model's own problem") as err:
        xj.gradient(broken, variables, x)
    assert "x[None]" not in str(err.value)


# --- 11: compilations are reused for equal-looking callables ---------------------------------------

TRACES: list[int] = []  # a global, not a capture: a captured list that grows would be a new key each time


def test_new_lambda_per_call_reuses_the_compilation(mlp):
    model, variables, x = mlp

    def make_fn():
        def fn(v, z):
            TRACES.append(1)
            return model.apply(v, z)

        return fn

    for _ in range(3):
        xj.gradient(make_fn(), variables, x, 1)
    first = len(TRACES)
    for _ in range(3):
        xj.gradient(make_fn(), variables, x, 1)
    assert len(TRACES) == first  # the later calls trace nothing: same code, same captures
    for _ in range(2):
        xj.gradient(model, variables, x, lambda o: o[:, 0])  # a new target lambda each time: one compilation


def test_warns_once_when_captures_keep_changing(mlp):
    model, variables, x = mlp

    def make_fn(scale):
        return lambda v, z: model.apply(v, z) * scale

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k in range(12):
            xj.gradient(make_fn(jnp.float32(k + 1)), variables, x, 1)  # an array captured: a new key each time
    assert sum(issubclass(w.category, RecompilationWarning) for w in caught) == 1


# --- smaller unclear errors --------------------------------------------------------------------------


def test_smaller_errors(cnn):
    model, variables, x = cnn
    with pytest.raises(xj.InputError, match="batch_size must be a positive integer"):
        xj.score_cam(model, variables, x, layer="conv", batch_size=0)
    with pytest.raises(xj.InputError, match="window must be an integer or a tuple of integers; got 4.5"):
        xj.occlusion(model, variables, x, window=4.5)
    # an int window on an NHWC image covers all channels (it used to be (4, 4, 4) here)
    np.testing.assert_allclose(
        xj.occlusion(model, variables, x, window=2), xj.occlusion(model, variables, x, window=(2, 2))
    )
    with pytest.raises(xj.InputError, match=r"baseline of shape \(5,\) does not broadcast"):
        xj.occlusion(model, variables, x, window=2, baseline=np.zeros(5, np.float32))
    with pytest.raises(xj.InputError, match="batch of"):
        xj.smoothgrad(model, variables, x, key=jax.random.split(jax.random.key(0), 3))
    with pytest.raises(xj.InputError, match="not an int"):
        xj.smoothgrad(model, variables, x, key=0)
    legacy = jax.random.PRNGKey(3)  # a raw uint32 key of the default implementation is accepted
    np.testing.assert_allclose(
        xj.smoothgrad(model, variables, x, key=legacy, samples=2),
        xj.smoothgrad(model, variables, x, key=jax.random.wrap_key_data(legacy), samples=2),
    )
    with pytest.raises(xj.UnknownNameError, match="Did you mean: 'steps'"):
        xj.integrated_gradients(model, variables, x, step=4)
    with pytest.raises(xj.InputError, match="quadrature"):
        xj.integrated_gradients(model, variables, x, method="simpson")


def test_rbg_legacy_keys_are_accepted(cnn):
    model, variables, x = cnn
    key = jax.random.key_data(jax.random.key(0, impl="rbg"))  # uint32[4]
    with jax.default_prng_impl("rbg"):
        out = xj.smoothgrad(model, variables, x, key=key, samples=2)
    assert out.shape == x.shape
    with pytest.raises(xj.InputError, match="default PRNG implementation uses uint32"):
        xj.smoothgrad(model, variables, x, key=key, samples=2)  # threefry expects uint32[2]


# --- method values -----------------------------------------------------------------------------------


def test_method_values(cnn):
    model, variables, x = cnn
    ig = functools.partial(xj.integrated_gradients, steps=6, method="riemann_middle")
    key = jax.random.key(0)
    by_partial = xj.smoothgrad(model, variables, x, 1, key=key, samples=2, stdev=0.0, method=ig)
    np.testing.assert_allclose(by_partial, ig(model, variables, x, 1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        xj.smoothgrad(
            model,
            variables,
            x,
            1,
            key=key,
            samples=2,
            stdev=0.0,
            method=xj.integrated_gradients.bind(steps=6, method="riemann_middle"),
        ),
        by_partial,
    )
    with pytest.raises(xj.UnknownNameError, match="option of 'integrated_gradients'"):
        xj.smoothgrad(model, variables, x, key=key, method=functools.partial(xj.integrated_gradients, stepz=3))
    with pytest.raises(xj.InputError, match="fix options only"):
        xj.smoothgrad(model, variables, x, key=key, method=functools.partial(xj.gradient, model))

    # any callable with the calling convention is a method value too
    def doubled(model, variables, x, target, model_kwargs=None):
        return 2 * xj.gradient(model, variables, x, target, model_kwargs=model_kwargs)

    np.testing.assert_allclose(
        xj.smoothgrad(model, variables, x, 1, key=key, samples=2, stdev=0.0, method=doubled),
        2 * xj.gradient(model, variables, x, 1),
        rtol=1e-5,
        atol=1e-7,
    )
    explained = xj.uncertainty.explain_random_baselines(ig, model, variables, x, 1, samples=2, key=key)
    assert explained.mean.shape == x.shape


def test_a_new_method_in_one_declaration(cnn):
    """The extension point: a method declared once is callable, checked, registered and wrappable."""
    model, variables, x = cnn

    @xj.method("test_scaled_gradient", family="gradient", register=False)
    def scaled(problem, inputs, *, scale: xj.core.PositiveInt = 2):
        """Scaled gradient (for the test)."""
        return scale * xj.attribution.target_gradient(problem, inputs, inputs.x, inputs.indices)

    np.testing.assert_allclose(
        scaled(model, variables, x, 1, scale=3), 3 * xj.gradient(model, variables, x, 1), rtol=1e-6
    )
    with pytest.raises(xj.InputError, match="scale must be a positive integer"):
        scaled(model, variables, x, scale=0)
    sg = xj.smoothgrad(model, variables, x, 1, key=jax.random.key(0), samples=2, stdev=0.0, method=scaled)
    np.testing.assert_allclose(sg, 2 * xj.gradient(model, variables, x, 1), rtol=1e-5, atol=1e-7)


# --- memory ------------------------------------------------------------------------------------------


def test_auto_chunks_bound_memory_and_keep_results(cnn, monkeypatch):
    model, variables, x = cnn
    whole = xj.integrated_gradients(model, variables, x, 1, steps=40, batch_size=None)
    monkeypatch.setenv("XAI_JAX_MEMORY_BUDGET_MB", "0.05")  # tiny budget: forces chunks
    chunked = xj.integrated_gradients(model, variables, x, 1, steps=40)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-7)
    small = xj.integrated_gradients.lower(model, variables, x, 1, steps=40).compile().memory_analysis()
    monkeypatch.delenv("XAI_JAX_MEMORY_BUDGET_MB")
    large = xj.integrated_gradients.lower(model, variables, x, 1, steps=40, batch_size=None).compile().memory_analysis()
    assert small.temp_size_in_bytes < large.temp_size_in_bytes / 2


def test_out_of_memory_says_what_to_set(cnn, monkeypatch):
    model, variables, x = cnn

    def exhausted(*args, **kwargs):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 12.8 GiB")

    monkeypatch.setattr(method_module, "_run_compiled", exhausted)
    with pytest.raises(xj.ResourceExhaustedError, match="batch_size=<smaller int>"):
        xj.integrated_gradients(model, variables, x, steps=1000)
