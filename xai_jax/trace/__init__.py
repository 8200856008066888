"""The trace engine: layer access by module path and rewriting of traced models.

One walker (:mod:`.walker`) reads a traced model as a flat graph, one detector (:mod:`.activations`)
marks its activations; the gradient interpreter (:mod:`.interpreter`), the relevance propagation
graph (:mod:`.graph`) and the layer listing (:mod:`.layers`) all read models through them.  The
XLA:CPU gradient rules are in :mod:`.xla_cpu`.
"""

from .activations import Activation
from .interpreter import evaluate, rewrite
from .layers import LayerInfo, LayerList, capture, layer_gradient, layer_info, layers, list_layers, probed_forward
from .xla_cpu import FAST_GRADIENT_RULES, max_pool_first_max_gradient

__all__ = [
    "FAST_GRADIENT_RULES",
    "Activation",
    "LayerInfo",
    "LayerList",
    "capture",
    "evaluate",
    "layer_gradient",
    "layer_info",
    "layers",
    "list_layers",
    "max_pool_first_max_gradient",
    "probed_forward",
    "rewrite",
]
