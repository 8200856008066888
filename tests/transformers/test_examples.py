"""The composites' docstring examples run (on MNIST-shaped images, with a tiny random ViT)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests.test_docs import _run_examples


@pytest.mark.parametrize("name", ["AttnLRP", pytest.param("CPLRP", marks=pytest.mark.slow)])
def test_composite_example_runs(name: str) -> None:
    x = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
    _run_examples(getattr(xj.composites, name), name, {"xj": xj, "jax": jax, "jnp": jnp, "np": np, "x": x})
