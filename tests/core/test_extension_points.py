"""The three extension points of docs/design.md, each used from this one file as a user would:
a new method, a new LRP rule, a new CAM weighting.  Nothing in the library is edited; each extension
is checked against a computation written out by hand."""

from __future__ import annotations

import dataclasses
import io
from contextlib import redirect_stdout

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.core import Inputs, PositiveInt, Problem, method
from xai_jax.propagation.composites import MapComposite
from xai_jax.propagation.layer import LinearLayer
from xai_jax.propagation.rules import Rule, stabilize
from xai_jax.trace.gradients import target_gradient


class SmallCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), name="conv")(x))
        x = x.mean(axis=(1, 2))
        return nn.Dense(3, name="head")(x)


MODEL = SmallCNN()
X = jax.random.uniform(jax.random.key(0), (2, 6, 6, 1))
VARIABLES = MODEL.init(jax.random.key(1), X)
TARGET = jnp.array([0, 2])


# ------------------------------------------------------------------------------------ a new method


def _scaled_gradient(problem: Problem, inputs: Inputs, *, scale: PositiveInt = 2) -> jax.Array:
    """``scale · ∂f_c/∂x``: the smallest method there is."""
    return scale * target_gradient(problem, inputs, inputs.x, inputs.indices)


@pytest.fixture
def scaled_gradient():
    registered = method("scaled_gradient_for_test", family="gradient", signed=True)(_scaled_gradient)
    yield registered
    xj.METHODS.remove("scaled_gradient_for_test")


def test_a_method_declared_in_one_place_is_checked_registered_and_seen_by_wrappers_and_the_cli(scaled_gradient):
    by_hand = jax.vmap(jax.grad(lambda x, c: MODEL.apply(VARIABLES, x[None])[0, c]))(X, TARGET)
    np.testing.assert_allclose(scaled_gradient(MODEL, VARIABLES, X, TARGET, scale=3), 3 * by_hand, rtol=1e-5, atol=1e-7)
    assert xj.METHODS["scaled_gradient_for_test"] is scaled_gradient
    with pytest.raises(xj.InputError, match="scale"):
        scaled_gradient(MODEL, VARIABLES, X, TARGET, scale=0)  # checked by its annotation
    with pytest.raises(xj.UnknownNameError, match="Did you mean: 'scale'"):
        scaled_gradient(MODEL, VARIABLES, X, TARGET, scael=3)
    # Wrappers take it by name or as a value; the two are one computation.
    key = jax.random.key(2)
    by_name = xj.smoothgrad(MODEL, VARIABLES, X, TARGET, key=key, samples=4, method="scaled_gradient_for_test")
    by_value = xj.smoothgrad(MODEL, VARIABLES, X, TARGET, key=key, samples=4, method=scaled_gradient)
    np.testing.assert_array_equal(by_name, by_value)
    from xai_jax import cli

    listing = io.StringIO()
    with redirect_stdout(listing):
        cli.main(["methods"])
    assert "scaled_gradient_for_test" in listing.getvalue()


def test_the_same_definition_run_again_replaces_itself_and_another_of_the_same_name_is_refused(scaled_gradient):
    again = method("scaled_gradient_for_test", family="gradient", signed=True)(_scaled_gradient)  # a re-run cell
    assert xj.METHODS["scaled_gradient_for_test"] is again

    def other(problem: Problem, inputs: Inputs) -> jax.Array:
        return inputs.x

    with pytest.raises(ValueError, match="registered twice"):
        method("scaled_gradient_for_test", family="gradient")(other)


# --------------------------------------------------------------------------------- a new LRP rule


@dataclasses.dataclass(frozen=True)
class AbsZ(Rule):
    """The |z| rule: ``R_i = Σ_j |x_i w_ij| R_j / Σ_i' |x_i' w_i'j|`` (relevance by contribution size)."""

    def linear(self, layer: LinearLayer, R: jax.Array) -> jax.Array:
        # |x_i w_ij| = |x_i| (w⁺_ij − w⁻_ij): the layer's positive and negative parts applied to |x|.
        x_abs = jnp.abs(layer.x)
        z = layer.forward(x_abs, "pos") - layer.forward(x_abs, "neg")
        s = R / stabilize(z, 1e-9)
        return x_abs * (layer.backward(s, "pos") - layer.backward(s, "neg"))


class Linear(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3, use_bias=False, name="dense")(x)


def test_a_new_rule_in_a_composite_equals_its_equation_written_out():
    model = Linear()
    x = jax.random.normal(jax.random.key(3), (2, 5))
    variables = model.init(jax.random.key(4), x)
    w = variables["params"]["dense"]["kernel"]
    R = xj.lrp(model, variables, x, TARGET, composite=MapComposite(types={"dense": AbsZ()}))
    logit = jnp.take_along_axis(x @ w, TARGET[:, None], axis=1)[:, 0]
    share = jnp.abs(x[:, :, None] * w[None])  # (B, i, j)
    expected = share[jnp.arange(2), :, TARGET] / share.sum(axis=1)[jnp.arange(2), TARGET][:, None] * logit[:, None]
    np.testing.assert_allclose(R, expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- a new CAM weighting


def hires_cam_weights(a: jax.Array, g: jax.Array) -> jax.Array:
    """HiResCAM [draelos2020]: the gradient itself, one weight per location and channel."""
    return g


def test_a_new_cam_weighting_is_a_function_and_gives_its_equation():
    hires_cam = xj.cam_method("hires_cam_for_test", hires_cam_weights, "HiResCAM.", register=False)
    maps = hires_cam(MODEL, VARIABLES, X, TARGET, layer="conv+relu")
    activation, gradient = xj.layer_gradient(MODEL, VARIABLES, X, TARGET, layer="conv+relu")
    expected = jnp.maximum((activation * gradient).sum(-1), 0)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-7)
    once = xj.gradient_cam(MODEL, VARIABLES, X, TARGET, layer="conv+relu", weighting=hires_cam_weights)
    np.testing.assert_allclose(once, maps, rtol=1e-6)
    assert "hires_cam_for_test" not in xj.METHODS
