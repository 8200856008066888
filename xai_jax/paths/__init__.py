"""Path-integral variants and completeness decompositions: GradientSHAP and DeepLiftSHAP (expectations
over a baseline distribution), Guided IG, Blur IG, XRAI and FullGrad (see ``docs/perturbation.md``)."""

from .baseline_shap import GradientShapDraws, deeplift_shap, gradient_shap, gradient_shap_draws

__all__ = ["GradientShapDraws", "deeplift_shap", "gradient_shap", "gradient_shap_draws"]
