"""Activations are found by what they are, not by their form (issue 13, item 1).

Flax's and Equinox's LayerNorm / GroupNorm and BatchNorm in training mode clamp their variance with
``jnp.maximum(0., mean(x²) - mean(x)²)`` -- a ``max`` with a literal zero, the same equation as
``jnp.maximum(x, 0)``.  That clamp is a normaliser's statistic, not an activation: guided
backpropagation and DeconvNet must leave it alone, count only the model's real ReLUs, and refuse a
model that has none (a ViT with LayerNorm and GELU).

Reference: the same model written with the modified ReLU as an explicit ``jax.custom_vjp`` in its
definition (everything else, the normalisation's own clamp included, plain JAX autodiff), so the
reference does not depend on any activation detector.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.trace.activations import count_relus

TARGET = np.array([0, 2, 1, 2])


def _modified_relu(backward: Callable[[jax.Array, jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    @jax.custom_vjp
    def relu(x):
        return jnp.maximum(x, 0.0)

    relu.defvjp(lambda x: (jnp.maximum(x, 0.0), x), lambda x, g: (backward(x, g),))
    return relu


#: Springenberg et al. 2015 (guided backprop) and Zeiler & Fergus 2014 (DeconvNet), written by hand.
GUIDED_RELU = _modified_relu(lambda x, g: jnp.where((x > 0) & (g > 0), g, 0.0))
DECONV_RELU = _modified_relu(lambda x, g: jnp.maximum(g, 0.0))
REFERENCE = {"guided_backprop": GUIDED_RELU, "deconvnet": DECONV_RELU}
METHODS = {"guided_backprop": xj.guided_backprop, "deconvnet": xj.deconvnet}
#: The ReLU as a model writes it: nn.relu (a custom_jvp call) or jnp.maximum with a literal zero.
RELU_FORMS = {"nn.relu": nn.relu, "maximum": lambda h: jnp.maximum(h, 0.0)}


class DenseNormNet(nn.Module):
    """Dense - norm - ReLU - Dense - ReLU - Dense on (B, F)."""

    norm: str
    act: Callable[[jax.Array], jax.Array]

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(8, name="d1")(x)
        if self.norm == "layer":
            h = nn.LayerNorm(name="norm")(h)
        else:
            h = nn.RMSNorm(name="norm")(h)
        h = self.act(h)
        h = self.act(nn.Dense(8, name="d2")(h))
        return nn.Dense(3, name="head")(h)


class ConvNormNet(nn.Module):
    """Conv - norm - ReLU - Conv - ReLU - global mean - Dense on (B, H, W, C); the norm is GroupNorm,
    or BatchNorm with batch statistics (training mode)."""

    norm: str
    act: Callable[[jax.Array], jax.Array]

    @nn.compact
    def __call__(self, x):
        h = nn.Conv(8, (3, 3), name="c1")(x)
        if self.norm == "group":
            h = nn.GroupNorm(num_groups=4, name="norm")(h)
        else:
            h = nn.BatchNorm(use_running_average=False, name="norm")(h)
        h = self.act(h)
        h = self.act(nn.Conv(8, (3, 3), name="c2")(h))
        return nn.Dense(3, name="head")(h.mean(axis=(1, 2)))


def _dense_case(norm: str, form: str):
    x = jax.random.normal(jax.random.key(0), (4, 5))
    model = DenseNormNet(norm, RELU_FORMS[form])
    variables = model.init(jax.random.key(1), x)
    return model, variables, x, lambda act: DenseNormNet(norm, act)


def _conv_case(norm: str, form: str):
    x = jax.random.normal(jax.random.key(0), (4, 6, 6, 2))
    model = ConvNormNet(norm, RELU_FORMS[form])
    variables = model.init(jax.random.key(1), x)
    return model, variables, x, lambda act: ConvNormNet(norm, act)


def _as_function(model: nn.Module) -> Callable:
    """``f(variables, x)``; BatchNorm in training mode needs ``mutable`` and returns the updates too."""

    def f(variables, x):
        out = model.apply(variables, x, mutable=["batch_stats"])
        return out[0] if isinstance(out, tuple) else out

    return f


CASES = {
    "layernorm": lambda form: _dense_case("layer", form),
    "rmsnorm": lambda form: _dense_case("rms", form),
    "groupnorm": lambda form: _conv_case("group", form),
    "batchnorm_train": lambda form: _conv_case("batch", form),
}


def _reference_gradient(fn: Callable, variables, x) -> np.ndarray:
    rows = jnp.arange(x.shape[0])
    return np.asarray(jax.grad(lambda z: jnp.sum(fn(variables, z)[rows, TARGET]))(x))


def _assert_close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * float(np.abs(want).max()))


@pytest.mark.parametrize("form", sorted(RELU_FORMS))
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_modified_relu_backward_on_normalised_models_matches_custom_vjp_reference(method, case, form):
    model, variables, x, rebuild = CASES[case](form)
    fn = _as_function(model)
    reference = _reference_gradient(_as_function(rebuild(REFERENCE[method])), variables, x)
    _assert_close(METHODS[method](fn, variables, x, TARGET), reference)
    assert not np.allclose(reference, _reference_gradient(fn, variables, x), rtol=1e-3), "the rule must matter here"


@pytest.mark.parametrize("case", sorted(CASES))
def test_relu_count_ignores_the_variance_clamp(case):
    model, variables, x, _ = CASES[case]("maximum")
    assert count_relus(_as_function(model), variables, x) == 2


class TinyViT(nn.Module):
    """Patch embedding, one pre-norm transformer block (softmax attention, GELU MLP), LayerNorm, mean
    pooling, a linear head: no ReLU anywhere."""

    approximate: bool = True

    @nn.compact
    def __call__(self, x):
        patches = x.reshape(x.shape[0], 4, -1)  # (B, 4 tokens, 8)
        h = nn.Dense(8, name="embed")(patches)
        y = nn.LayerNorm(name="ln1")(h)
        h = h + nn.SelfAttention(num_heads=2, name="attn")(y)
        y = nn.LayerNorm(name="ln2")(h)
        y = nn.Dense(8, name="fc2")(nn.gelu(nn.Dense(16, name="fc1")(y), approximate=self.approximate))
        h = nn.LayerNorm(name="ln_out")(h + y)
        return nn.Dense(3, name="head")(h.mean(axis=1))


@pytest.mark.parametrize("approximate", [True, False])
def test_a_vit_without_relu_is_refused(approximate):
    x = jax.random.normal(jax.random.key(0), (4, 4, 8))
    model = TinyViT(approximate)
    variables = model.init(jax.random.key(1), x)
    assert count_relus(lambda v, z: model.apply(v, z), variables, x) == 0
    for method in METHODS.values():
        with pytest.raises(xj.UnsupportedError, match="no ReLU"):
            method(model, variables, x, TARGET)


def test_real_relus_next_to_reductions_are_still_relus():
    """A ReLU after a reduction (global pooling) and a hinge on a squared norm used additively are
    activations: only a clamp of a mean square that goes on to scale a value is a statistic."""

    class Pooled(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Conv(4, (3, 3), name="c")(x)
            pooled = jnp.maximum(h.mean(axis=(1, 2)), 0.0)  # ReLU of a reduction (not of squares)
            hinge = jnp.maximum(jnp.mean(h**2, axis=(1, 2)) - 1.0, 0.0)  # clamp of a mean square, added
            return nn.Dense(3, name="head")(pooled + hinge)

    x = jax.random.normal(jax.random.key(0), (4, 5, 5, 2))
    variables = Pooled().init(jax.random.key(1), x)
    assert count_relus(lambda v, z: Pooled().apply(v, z), variables, x) == 2


eqx = pytest.importorskip("equinox")


class EqxNet(eqx.Module):
    """Linear - eqx.nn.LayerNorm - ReLU - Linear (one sample; vmapped over the batch)."""

    l1: eqx.nn.Linear
    norm: eqx.nn.LayerNorm
    l2: eqx.nn.Linear
    act: Callable = eqx.field(static=True)

    def __init__(self, key, act):
        k1, k2 = jax.random.split(key)
        self.l1 = eqx.nn.Linear(5, 8, key=k1)
        self.norm = eqx.nn.LayerNorm(8)
        self.l2 = eqx.nn.Linear(8, 3, key=k2)
        self.act = act

    def __call__(self, x):
        return self.l2(self.act(self.norm(self.l1(x))))


@pytest.mark.parametrize("form", sorted(RELU_FORMS))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_equinox_layernorm(method, form):
    # the same weights (same key); the activation is a static field, so each model keeps its own treedef
    params, static = eqx.partition(EqxNet(jax.random.key(2), RELU_FORMS[form]), eqx.is_array)
    params_ref, static_ref = eqx.partition(EqxNet(jax.random.key(2), REFERENCE[method]), eqx.is_array)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(params_ref)):
        np.testing.assert_array_equal(a, b)

    def f(p, x):
        return jax.vmap(eqx.combine(p, static))(x)

    def f_ref(p, x):
        return jax.vmap(eqx.combine(p, static_ref))(x)

    x = jax.random.normal(jax.random.key(3), (4, 5))
    assert count_relus(f, params, x) == 1
    _assert_close(METHODS[method](f, params, x, TARGET), _reference_gradient(f_ref, params_ref, x))
