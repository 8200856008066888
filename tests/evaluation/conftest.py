"""Fixtures of the metric tests: the TinyCNN twin (Flax + PyTorch, identical weights), a few images
with their predicted classes, and continuous random attributions (no ties, so that NumPy's unstable
argsort in Quantus and our stable order pick the same features)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pytest

from tests import twins


class Case(NamedTuple):
    model: Any
    variables: Any
    torch_model: Any
    x: np.ndarray  # (B, 28, 28, 1) in [0, 1]
    y: np.ndarray  # predicted classes
    a: np.ndarray  # random attributions with x's shape


@pytest.fixture(scope="session")
def tiny() -> Case:
    pytest.importorskip("torch")
    model, variables, torch_model = twins.make_tiny_cnn(seed=0)
    rng = np.random.default_rng(11)
    x = rng.random((3, 28, 28, 1)).astype(np.float32)
    y = np.asarray(model.apply(variables, x)).argmax(axis=1).astype(np.int64)
    a = rng.standard_normal(x.shape).astype(np.float32)
    return Case(model, variables, torch_model, x, y, a)
