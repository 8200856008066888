"""Model-agnostic perturbation methods: LIME, KernelSHAP, Shapley values, RISE, extremal and
meaningful perturbations, prediction difference analysis (see ``docs/perturbation.md``).

Every method is declared once with :func:`xai_jax.method`, so it is registered in ``xj.METHODS``.
Feature masks (superpixels, grids, user masks) live in :mod:`.features`; the surrogate regressions
in :mod:`.surrogate`; coalition sampling and scoring in :mod:`.coalitions`.
"""

from .extremal import extremal_perturbation, meaningful_perturbation
from .features import ALGORITHMS, FeatureMask, Grid, Superpixels, feature_mask
from .kernel_shap import kernel_shap
from .lime import lime
from .prediction_difference import prediction_difference
from .rise import NORMALIZATIONS, rise, rise_masks
from .shapley import shapley_value_sampling, shapley_values

__all__ = [
    "ALGORITHMS",
    "NORMALIZATIONS",
    "FeatureMask",
    "Grid",
    "Superpixels",
    "extremal_perturbation",
    "feature_mask",
    "kernel_shap",
    "lime",
    "meaningful_perturbation",
    "prediction_difference",
    "rise",
    "rise_masks",
    "shapley_value_sampling",
    "shapley_values",
]
