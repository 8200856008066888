"""Attribution methods: gradient, path, noise, perturbation and CAM families."""

from ..core.resize import upsample
from ..trace.gradients import layer_activation_and_gradient, target_gradient
from .attention import attention_rollout, chefer_attention
from .backprop import deconvnet, deconvnet_per_filter, guided_backprop, modified_relu_gradient
from .cam import (
    WEIGHTINGS,
    cam,
    cam_method,
    grad_cam,
    grad_cam_plus_plus,
    gradient_cam,
    guided_grad_cam,
    layer_cam,
    score_cam,
    xgrad_cam,
)
from .gradient import gradient, input_x_gradient, saliency
from .integrated_gradients import QUADRATURES, integrated_gradients, quadrature
from .occlusion import occlusion
from .smoothgrad import smoothgrad

__all__ = [
    "QUADRATURES",
    "WEIGHTINGS",
    "attention_rollout",
    "cam",
    "cam_method",
    "chefer_attention",
    "deconvnet",
    "deconvnet_per_filter",
    "grad_cam",
    "grad_cam_plus_plus",
    "gradient",
    "gradient_cam",
    "guided_backprop",
    "guided_grad_cam",
    "input_x_gradient",
    "integrated_gradients",
    "layer_activation_and_gradient",
    "layer_cam",
    "modified_relu_gradient",
    "occlusion",
    "quadrature",
    "saliency",
    "score_cam",
    "smoothgrad",
    "target_gradient",
    "upsample",
    "xgrad_cam",
]
