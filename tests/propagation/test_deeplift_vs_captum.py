"""DeepLIFT (rescale) against Captum's ``DeepLift(multiply_by_inputs=True)`` on the twins, and
summation-to-delta for both rules.

The max-pooling twin puts a ``Clone`` module between ReLU and MaxPool (DESIGN §7: otherwise Captum
silently drops its max-pool rule).  Non-zero baselines on the max-pooling net are random arrays: a
*constant* baseline makes the reference's pooled windows exact ties (``conv(const) + b`` is constant
over the interior), and which tied element is "the" maximum then depends on the last bit of each
library's convolution -- both results still satisfy summation-to-delta (tested below).
"""

import numpy as np
import pytest

from tests import twins
from tests.propagation.references import assert_matches, captum_deeplift
from xai_jax import propagation as P

torch = pytest.importorskip("torch")
pytest.importorskip("captum")
pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning")]
TARGETS = np.array([0, 3, 6, 9, 2, 5, 8, 1])


def baselines(model, twin_name):
    shape = (8, *model.INPUT_SHAPE)
    noise = np.random.default_rng(11).standard_normal(shape).astype(np.float32) * 0.5
    yield "zero", 0.0
    yield "random", noise
    if twin_name != "TinyCNN":
        yield "constant", 0.3


@pytest.mark.parametrize("twin_name", ["TinyCNN", "ResBNNet", "VGGLikeAvgPool", "NCHWFlattenNet"])
def test_rescale_equals_captum(twin_name):
    model, variables, tmodel = twins.make(twin_name, seed=7)
    x = twins.random_input(model, 8, seed=8)
    for name, base in baselines(model, twin_name):
        assert_matches(
            P.deeplift(model, variables, x, TARGETS, baseline=base),
            captum_deeplift(tmodel, x, base, TARGETS),
            what=name,
        )


@pytest.mark.parametrize("twin_name", ["TinyCNN", "ResBNNet", "VGGLikeAvgPool", "NCHWFlattenNet"])
@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel"])
def test_summation_to_delta(twin_name, rule):
    model, variables, _ = twins.make(twin_name, seed=7)
    x = twins.random_input(model, 8, seed=8)
    for base in (0.0, 0.3):
        attr = np.asarray(P.deeplift(model, variables, x, TARGETS, baseline=base, rule=rule))
        f = np.asarray(model.apply(variables, x))[np.arange(8), TARGETS]
        f0 = np.asarray(model.apply(variables, np.full_like(x, base)))[np.arange(8), TARGETS]
        np.testing.assert_allclose(attr.reshape(8, -1).sum(1), f - f0, atol=2e-6 * max(1.0, np.abs(f - f0).max()))
