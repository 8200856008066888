"""Fuzzing every registered method: random shapes, dtypes, options and targets.

Each call must either return finite values of the documented shape (``x``'s shape for input
resolution, ``(B, h, w)`` for layer maps; a tuple whose first element is the map for methods that
also return an error) or raise an :class:`xai_jax.XaiJaxError`.  Anything else -- a raw
``TypeError`` from deep inside JAX, a NaN map, a wrong shape -- fails the test.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SIDE = 8


class TinyCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), name="conv")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(3, name="head")(x)


MODEL = TinyCNN()
VARIABLES = MODEL.init(jax.random.key(0), jnp.zeros((1, SIDE, SIDE, 1)))
LAYER = "conv+relu"

#: values every option may receive, valid or not
ANY_VALUE = st.sampled_from(
    [
        None,
        0,
        1,
        2,
        3,
        -1,
        2.5,
        math.nan,
        math.inf,
        -math.inf,
        0.1,
        "auto",
        "nonsense",
        True,
        (2, 2),
        (1, 1, 1),
        "conv",
        LAYER,
        "head",
        np.zeros(3, np.float32),
        np.full((SIDE, SIDE, 1), np.nan, np.float32),
    ]
)


def _valid_value(method, name):
    """A value the option accepts on the tiny model (so that most examples reach the computation)."""
    spec = method.options[name]
    if spec.needs == "layer":
        return LAYER
    if spec.needs == "key" or name == "key":
        return jax.random.key(1)
    if name in method.report_options:
        return method.report_options[name]
    if name in ("window",):
        return (2, 2)
    if name in ("steps", "samples"):
        return 3
    return spec.default


@st.composite
def calls(draw, name):
    method = xj.METHODS[name]
    batch = draw(st.integers(0, 3))
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float32, np.float16, np.int32]))
    shape = draw(
        st.sampled_from([(batch, SIDE, SIDE, 1), (batch, SIDE, SIDE, 1), (SIDE, SIDE, 1), (batch, SIDE, SIDE)])
    )
    x = draw(st.sampled_from(["normal", "normal", "nan", "constant"]))
    values = np.random.default_rng(draw(st.integers(0, 2**16))).normal(size=shape)
    if x == "nan" and values.size:
        values.flat[0] = np.nan
    if x == "constant":
        values = np.zeros(shape)
    target = draw(st.sampled_from([None, 0, 2, 3, -1, "list", "callable", 1.5]))
    if target == "list":
        target = list(range(max(batch, 1)))
    elif target == "callable":
        target = lambda outputs: outputs[:, 1]
    options = {}
    for option in method.options:
        choice = draw(st.sampled_from(["valid", "valid", "valid", "any", "omit"]))
        if choice == "valid":
            options[option] = _valid_value(method, option)
        elif choice == "any":
            options[option] = draw(ANY_VALUE)
    if draw(st.booleans()):
        options["not_an_option"] = 1
    return values.astype(dtype), target, options


def _check_result(method, x, result, options):
    if isinstance(result, tuple):
        result = result[0]
    assert isinstance(result, jax.Array), type(result)
    if method.resolution != "input":
        expected = (x.shape[0], SIDE, SIDE)
    elif method.family == "propagation" and options.get("layer") is not None:  # relevance at that layer: its shape
        expected = tuple(xj.capture(MODEL, VARIABLES, x.astype(np.float32), options["layer"])[1].shape)
    else:
        expected = tuple(x.shape)
    assert tuple(result.shape) == expected, (method.name, result.shape, expected)
    assert bool(jnp.all(jnp.isfinite(result))), f"{method.name} returned non-finite values"


def _run(name, data):
    method = xj.METHODS[name]
    x, target, options = data
    try:
        result = method(MODEL, VARIABLES, x, target, **options)
    except xj.XaiJaxError:
        return
    _check_result(method, np.asarray(x), result, options)


FAST = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
THOROUGH = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.mark.parametrize("name", sorted(xj.METHODS))
def test_every_method_returns_finite_maps_or_raises_our_error(name):
    FAST(given(data=calls(name))(lambda data: _run(name, data)))()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(xj.METHODS))
def test_every_method_thoroughly(name):
    THOROUGH(given(data=calls(name))(lambda data: _run(name, data)))()
