"""Relevance propagation: LRP rules and composites, LRP through transposed layers,
simple and deep Taylor decomposition, DeepLIFT.

All of them run on the trace engine's propagation graph (:mod:`xai_jax.trace.graph`): layers are
found in the model's jaxpr (no change to the model), and each layer's backward pass is replaced by
a ``jax.custom_vjp`` whose forward is the layer's own computation.
"""

from . import composites, rules
from .composites import (
    COMPOSITES,
    CPLRP,
    AttnLRP,
    Composite,
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    LayerContext,
    MapComposite,
    PositionMix,
)
from .deeplift import deeplift
from .lrp import lrp, propagation_plan
from .rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Gradient,
    HoldGates,
    Norm,
    Pass,
    Rule,
    SoftmaxGradient,
    Stabilizer,
    Uniform,
    WSquare,
    ZBox,
    ZPlus,
)
from .taylor import deep_taylor, simple_taylor
from .transpose import lrp_transpose

__all__ = [
    "COMPOSITES",
    "CPLRP",
    "AlphaBeta",
    "AttnLRP",
    "Composite",
    "Epsilon",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha2Beta1Flat",
    "EpsilonGammaBox",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "Flat",
    "Gamma",
    "Gradient",
    "HoldGates",
    "LayerContext",
    "MapComposite",
    "Norm",
    "Pass",
    "PositionMix",
    "Rule",
    "SoftmaxGradient",
    "Stabilizer",
    "Uniform",
    "WSquare",
    "ZBox",
    "ZPlus",
    "composites",
    "deep_taylor",
    "deeplift",
    "lrp",
    "lrp_transpose",
    "propagation_plan",
    "rules",
    "simple_taylor",
]
