"""Path-integral variants and completeness decompositions: GradientSHAP and DeepLiftSHAP (expectations
over a baseline distribution), Guided IG, Blur IG, XRAI and FullGrad (see ``docs/perturbation.md``)."""

from .baseline_shap import GradientShapDraws, deeplift_shap, gradient_shap, gradient_shap_draws
from .blur_ig import blur_ig
from .fullgrad import fullgrad
from .guided_ig import guided_ig
from .xrai import Regions, felzenszwalb_regions, xrai

__all__ = [
    "GradientShapDraws",
    "Regions",
    "blur_ig",
    "deeplift_shap",
    "felzenszwalb_regions",
    "fullgrad",
    "gradient_shap",
    "gradient_shap_draws",
    "guided_ig",
    "xrai",
]
