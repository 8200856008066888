"""Every registered method gives the same numbers on an NNX twin as on its Linen namesake (same
weights): the loop is over ``xj.METHODS``, so a method added to the registry is covered here without
editing this file.

ResBNNet (BatchNorm in inference mode, a residual block, global average pooling, so every method of
the registry applies, CAM included) runs in the fast tier; the other twins are ``slow``.  On a twin
where a method does not apply (CAM needs a global-average-pooled layer feeding the dense head) both
sides must refuse it with the same message.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import xai_jax as xj
from tests import twins
from tests.nnx import nnx_twins
from tests.nnx.common import max_relative_difference, run

#: CAM's layer: the one global average pooling feeds to the dense head (only ResBNNet has one).
CAM_LAYER = {"ResBNNet": "block"}
TOLERANCE = 1e-6

_PAIRS: dict[str, nnx_twins.Pair] = {}


def _pair(name: str) -> nnx_twins.Pair:
    if name not in _PAIRS:
        _PAIRS[name] = nnx_twins.make(name)
    return _PAIRS[name]


def _layer(twin: str, method: str) -> str:
    return CAM_LAYER.get(twin, nnx_twins.SPATIAL_LAYER[twin]) if method == "cam" else nnx_twins.SPATIAL_LAYER[twin]


def _check(twin: str, method: str, *, must_apply: bool) -> None:
    pair = _pair(twin)
    x = twins.random_input(pair.linen, batch=2, seed=3)
    target = np.array([1, 3])
    layer = _layer(twin, method)
    linen = run(method, pair.linen, pair.variables, x, target, layer)
    nnx = run(method, pair.nnx_model, None, x, target, layer)
    if isinstance(linen, Exception) or isinstance(nnx, Exception):
        assert not must_apply, (method, linen, nnx)
        assert type(linen) is type(nnx) and str(linen) == str(nnx), (method, linen, nnx)
        return
    assert all(np.all(np.isfinite(np.asarray(leaf, np.float64))) for leaf in jax.tree_util.tree_leaves(linen))
    assert max_relative_difference(linen, nnx) <= TOLERANCE, (method, max_relative_difference(linen, nnx))


@pytest.mark.parametrize("method", sorted(xj.METHODS))
def test_every_method_matches_linen_on_res_bn_net(method):
    # the attention family needs a transformer: on this CNN both APIs must refuse it the same way
    _check("ResBNNet", method, must_apply=xj.METHODS[method].family != "attention")


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(xj.METHODS))
@pytest.mark.parametrize("twin", ["TinyCNN", "NCHWFlattenNet", "VGGLikeAvgPool"])
def test_every_method_matches_linen_on_the_other_twins(twin, method):
    _check(twin, method, must_apply=method != "cam" and xj.METHODS[method].family != "attention")
