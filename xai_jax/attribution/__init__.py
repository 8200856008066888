"""Attribution methods: gradient, path, noise, perturbation and CAM families."""

from .backprop import deconvnet, guided_backprop, modified_relu_gradient
from .gradient import gradient, input_x_gradient, saliency, target_gradient
from .integrated_gradients import QUADRATURES, integrated_gradients, quadrature

__all__ = ["QUADRATURES", "deconvnet", "guided_backprop", "modified_relu_gradient", "gradient", "input_x_gradient", "integrated_gradients", "quadrature", "saliency", "target_gradient"]
