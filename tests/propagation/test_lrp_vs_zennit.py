"""LRP rules and composites against Zennit 0.5 on PyTorch twins with identical weights.

Criterion: max |ours − Zennit| ≤ 1e-4 · max |Zennit| on a batch of 8 with several targets, with
Zennit's ``attr_output = one_hot(target) × logits``.  Each rule alone is compared as a composite
mapping every conv/dense layer to it (plus Zennit's base map: activations Pass, sums and average
pooling Norm); each composite as is, with Zennit's BatchNorm canonizer on the residual+BN twin.
"""

import numpy as np
import pytest

from tests import twins
from tests.propagation.references import assert_matches, exact_merge_batch_norm, zennit_relevance
from xai_jax import propagation as P

torch = pytest.importorskip("torch")
zennit = pytest.importorskip("zennit")
from zennit import canonizers as zcan  # noqa: E402
from zennit import composites as zc  # noqa: E402
from zennit import rules as zr  # noqa: E402
from zennit.types import Linear as ZLinear  # noqa: E402

pytestmark = pytest.mark.torch
TARGETS = np.array([0, 3, 6, 9, 2, 5, 8, 1])

RULES = {
    "Epsilon": (P.Epsilon(1e-3), lambda: zr.Epsilon(1e-3)),
    "Epsilon0": (P.Epsilon(0.0), lambda: zr.Epsilon(0.0)),
    "ZPlus": (P.ZPlus(), lambda: zr.ZPlus()),
    "AlphaBeta21": (P.AlphaBeta(2.0, 1.0), lambda: zr.AlphaBeta(2.0, 1.0)),
    "AlphaBeta10": (P.AlphaBeta(1.0, 0.0), lambda: zr.AlphaBeta(1.0, 0.0)),
    "Gamma": (P.Gamma(0.25), lambda: zr.Gamma(0.25)),
    "Flat": (P.Flat(), lambda: zr.Flat()),
    "WSquare": (P.WSquare(), lambda: zr.WSquare()),
    "ZBox": (P.ZBox(-1.0, 1.0), lambda: zr.ZBox(-1.0, 1.0)),
    "EpsilonZeroBias": (P.Epsilon(1e-3, zero_params="bias"), lambda: zr.Epsilon(1e-3, zero_params=["bias"])),
}

COMPOSITES = {
    "EpsilonPlus": (lambda: P.EpsilonPlus(), lambda c: zc.EpsilonPlus(canonizers=c)),
    "EpsilonPlusFlat": (lambda: P.EpsilonPlusFlat(), lambda c: zc.EpsilonPlusFlat(canonizers=c)),
    "EpsilonAlpha2Beta1": (lambda: P.EpsilonAlpha2Beta1(), lambda c: zc.EpsilonAlpha2Beta1(canonizers=c)),
    "EpsilonAlpha2Beta1Flat": (lambda: P.EpsilonAlpha2Beta1Flat(), lambda c: zc.EpsilonAlpha2Beta1Flat(canonizers=c)),
    "EpsilonGammaBox": (lambda: P.EpsilonGammaBox(-2.0, 2.0), lambda c: zc.EpsilonGammaBox(-2.0, 2.0, canonizers=c)),
}


def single_rule_composites(ours, theirs, canonizers=None):
    return P.MapComposite(types={"linear": ours}), zc.LayerMapComposite(
        [*zc.layer_map_base(), (ZLinear, theirs)], canonizers=canonizers
    )


@pytest.fixture(scope="module")
def tiny():
    model, variables, tmodel = twins.make_tiny_cnn(seed=1)
    return model, variables, tmodel, twins.random_input(model, 8, seed=2)


@pytest.mark.parametrize("name", list(RULES))
def test_each_rule_alone_tiny_cnn(tiny, name):
    model, variables, tmodel, x = tiny
    ours, theirs = single_rule_composites(RULES[name][0], RULES[name][1]())
    assert_matches(
        P.lrp(model, variables, x, TARGETS, composite=ours), zennit_relevance(tmodel, x, TARGETS, theirs), what=name
    )


@pytest.mark.parametrize("name", ["ZPlus", "Gamma", "WSquare", "ZBox"])
def test_rules_nchw_flatten_net(name):
    """Strided convolution, non-square input and a torch-style NCHW flatten."""
    model, variables, tmodel = twins.make_nchw_flatten_net(seed=3)
    x = twins.random_input(model, 8, seed=4)
    ours, theirs = single_rule_composites(RULES[name][0], RULES[name][1]())
    assert_matches(
        P.lrp(model, variables, x, TARGETS, composite=ours), zennit_relevance(tmodel, x, TARGETS, theirs), what=name
    )


@pytest.fixture(scope="module")
def resbn():
    model, variables, tmodel = twins.make_res_bn_net(seed=1)
    return model, variables, tmodel, twins.random_input(model, 8, seed=2)


@pytest.mark.parametrize("name", list(COMPOSITES))
def test_composites_residual_batchnorm_net(resbn, name):
    """BatchNorm merged (Zennit: canonizer with the identity BN made exact), residual Sum → Norm,
    global average pooling → Norm: agreement to 1e-5."""
    model, variables, tmodel, x = resbn
    ours, theirs = COMPOSITES[name]
    assert_matches(
        P.lrp(model, variables, x, TARGETS, composite=ours()),
        zennit_relevance(tmodel, x, TARGETS, theirs([exact_merge_batch_norm()])),
        rel=1e-5,
        what=name,
    )


@pytest.mark.parametrize("name", ["Epsilon", "ZPlus", "Flat"])
def test_rules_residual_batchnorm_net_stock_canonizer(resbn, name):
    """With Zennit's own SequentialMergeBatchNorm (whose leftover BN scales by 1/sqrt(1+eps)):
    still within 1e-4."""
    model, variables, tmodel, x = resbn
    ours, theirs = single_rule_composites(RULES[name][0], RULES[name][1](), [zcan.SequentialMergeBatchNorm()])
    assert_matches(
        P.lrp(model, variables, x, TARGETS, composite=ours), zennit_relevance(tmodel, x, TARGETS, theirs), what=name
    )


@pytest.mark.slow  # 10 compilations, ~35 s on 2 cores
@pytest.mark.parametrize("twin_name", ["TinyCNN", "VGGLikeAvgPool"])
@pytest.mark.parametrize("name", list(COMPOSITES))
def test_composites_pooling_nets(twin_name, name):
    """Max pooling (gradient) and average pooling (Norm).  Flat/WSquare on *every* layer of the
    average-pooling net is not compared: relevance then reaches windows whose pooled value is ~1e-7,
    where Norm divides by it and float32 rounding of the forward pass (torch vs XLA, both ~3e-7
    absolute) decides the result -- both differ from a float64 Zennit by 5e-5..2e-4."""
    model, variables, tmodel = twins.make(twin_name, seed=5)
    x = twins.random_input(model, 8, seed=6)
    ours, theirs = COMPOSITES[name]
    assert_matches(
        P.lrp(model, variables, x, TARGETS, composite=ours()),
        zennit_relevance(tmodel, x, TARGETS, theirs(None)),
        what=name,
    )


def test_relevance_at_intermediate_layers(tiny):
    """``layer=`` returns the relevance arriving at a layer's output, as Zennit's gradient there."""
    model, variables, tmodel, x = tiny
    ours_comp, theirs_comp = P.EpsilonPlusFlat(), zc.EpsilonPlusFlat()
    _, at = zennit_relevance(tmodel, x, TARGETS, theirs_comp, layers=("conv2", "fc1"))
    for layer in ("conv2", "fc1"):
        assert_matches(P.lrp(model, variables, x, TARGETS, composite=ours_comp, layer=layer), at[layer], what=layer)


def test_predicted_class_and_int_target(tiny):
    model, variables, tmodel, x = tiny
    ours, theirs = single_rule_composites(P.Epsilon(1e-3), zr.Epsilon(1e-3))
    predicted = tmodel(twins.to_torch(x)).argmax(-1).numpy()
    assert_matches(P.lrp(model, variables, x, composite=ours), zennit_relevance(tmodel, x, predicted, theirs))
    assert_matches(P.lrp(model, variables, x, 7, composite=ours), zennit_relevance(tmodel, x, 7, theirs))


@pytest.mark.parametrize("first", ["zbox", None])
def test_position_mix_tiny_cnn(tiny, first):
    """The seed's position-based mix, reproduced in Zennit with a name map.  TinyCNN has 4 linear
    layers, so bounds (0.3, 0.6) give layer 0 -> αβ (or z^B when ``first`` is set), layer 1 -> ε with
    the RMS-scaled stabilizer, layers 2, 3 -> LRP-0 (ε = 1e-9); the two cases use all four rules."""
    from zennit.core import Stabilizer as ZStabilizer

    model, variables, tmodel, x = tiny
    ours = P.PositionMix(first=P.ZBox(-4.0, 4.0) if first else None)
    layer0 = zr.ZBox(-4.0, 4.0) if first else zr.AlphaBeta(2.0, 1.0)
    theirs = zc.MixedComposite(
        [
            zc.NameMapComposite(
                [
                    (("conv1",), layer0),
                    (("conv2",), zr.Epsilon(ZStabilizer(0.1, norm_scale=True))),
                    (("fc1", "fc2"), zr.Epsilon(1e-9)),
                ]
            ),
            zc.LayerMapComposite(zc.layer_map_base()),
        ]
    )
    assert_matches(
        P.lrp(model, variables, x, TARGETS, composite=ours),
        zennit_relevance(tmodel, x, TARGETS, theirs),
        what=f"PositionMix first={first}",
    )
