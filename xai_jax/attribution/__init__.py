"""Attribution methods: gradient, path, noise, perturbation and CAM families."""

from ..core.resize import upsample
from .backprop import deconvnet, deconvnet_per_filter, guided_backprop, modified_relu_gradient
from .cam import cam, grad_cam, grad_cam_plus_plus, guided_grad_cam, layer_cam, score_cam, xgrad_cam
from .gradient import gradient, input_x_gradient, saliency, target_gradient
from .integrated_gradients import QUADRATURES, integrated_gradients, quadrature
from .occlusion import occlusion
from .smoothgrad import smoothgrad

__all__ = [
    "QUADRATURES", "cam", "deconvnet", "deconvnet_per_filter", "grad_cam", "grad_cam_plus_plus", "gradient", "guided_backprop",
    "guided_grad_cam", "input_x_gradient", "integrated_gradients", "layer_cam", "modified_relu_gradient",
    "occlusion", "quadrature", "saliency", "score_cam", "smoothgrad", "target_gradient", "upsample", "xgrad_cam",
]
