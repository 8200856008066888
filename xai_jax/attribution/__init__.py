"""Attribution methods: gradient, path, noise, perturbation and CAM families."""

from .gradient import gradient, input_x_gradient, saliency, target_gradient

__all__ = ["gradient", "input_x_gradient", "saliency", "target_gradient"]
