"""A generator may declare where code-space optimisation starts (``code_init_scale``); the shipped
class-coded GANs declare 0.1, the caller's ``init_scale`` wins, anything else keeps the prior's scale 1."""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests.featureviz.conftest import numpy_init
from xai_jax.featureviz import Optimization
from xai_jax.featureviz.codespace import DEFAULTS, codespace_problem, defaults_for
from xai_jax.models import mnist, nnx_mnist

KEY = jax.random.key(0)


class DeclaringGen(nn.Module):
    code_init_scale: ClassVar[float | None] = 0.25

    @nn.compact
    def __call__(self, z):
        return nn.sigmoid(nn.Dense(64, name="fc")(z)).reshape((z.shape[0], 8, 8, 1))


class PlainGen(DeclaringGen):
    code_init_scale: ClassVar[float | None] = None


def _initial_codes(tiny, generator, **settings):
    model, variables = tiny
    gen_variables = numpy_init(generator, jnp.zeros((1, 4)), seed=1)
    _, _, codes = codespace_problem(
        model,
        variables,
        generator,
        gen_variables,
        lambda logits: logits[:, 0],
        latent_shape=4,
        num_images=2000,
        key=KEY,
        **settings,
    )
    return np.asarray(codes)


def test_the_declared_scale_sets_the_initial_codes(tiny):
    assert 0.24 < _initial_codes(tiny, DeclaringGen()).std() < 0.26
    assert 0.95 < _initial_codes(tiny, PlainGen()).std() < 1.05  # None: the prior N(0, I)


def test_the_callers_init_scale_wins(tiny):
    assert 0.95 < _initial_codes(tiny, DeclaringGen(), init_scale=1.0).std() < 1.05
    record = Optimization(init_scale=0.5)
    assert 0.48 < _initial_codes(tiny, DeclaringGen(), optimization=record).std() < 0.52


@pytest.mark.parametrize("classes, expected", [(10, mnist.CODE_INIT_SCALE), (0, None)])
def test_linen_and_nnx_generators_declare_the_same_start(classes, expected):
    from flax import nnx

    rngs = nnx.Rngs(0)
    for linen in (mnist.GanGenerator(classes=classes), mnist.DCGANGenerator(classes=classes, features=4)):
        assert linen.code_init_scale == expected
        assert defaults_for(linen).init_scale == (DEFAULTS.init_scale if expected is None else expected)
    for twin in (
        nnx_mnist.GanGenerator(classes=classes, rngs=rngs),
        nnx_mnist.DCGANGenerator(classes=classes, features=4, rngs=rngs),
    ):
        assert twin.code_init_scale == expected


def test_the_shipped_generators_declare_it():
    for name in ("mnist_gan_generator", "dcgan_generator"):
        generator, _ = xj.models.load(name)
        assert generator.code_init_scale == mnist.CODE_INIT_SCALE


@pytest.mark.parametrize("bad", [math.nan, -0.1, "small"])
def test_a_bad_declaration_is_refused(tiny, bad):
    class BadGen(DeclaringGen):
        code_init_scale: ClassVar = bad

    with pytest.raises(xj.InputError, match="code_init_scale"):
        _initial_codes(tiny, BadGen())
