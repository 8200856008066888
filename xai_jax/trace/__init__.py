"""The trace engine: layer access by module path and rewriting of traced models."""

from .interpreter import evaluate, rewrite
from .layers import LayerInfo, LayerList, capture, layer_gradient, layer_info, layers, probed_forward
from .pooling import FAST_GRADIENT_RULES, max_pool_first_max_gradient

__all__ = [
    "FAST_GRADIENT_RULES", "LayerInfo", "LayerList", "capture", "evaluate", "layer_gradient", "layer_info", "layers",
    "max_pool_first_max_gradient", "probed_forward", "rewrite",
]
