"""Evaluating explanations: jitted, batched metrics with Quantus and Captum parity.

    import xai_jax as xj
    from xai_jax import evaluation as xe

    a = xj.gradient(model, variables, x, y)
    curve = xe.pixel_flipping(model, variables, x, y, a)                 # Curve (B, steps + 1)
    xe.auc(curve)                                                        # (B,)
    xe.road(model, variables, x, y, a, key=key)                          # noisy linear imputation
    xe.max_sensitivity(model, variables, x, y, xj.gradient, key=key)     # recomputes explanations
    xe.mprt(model, variables, x, y, xj.gradient, key=key)                # cascading randomisation
    xe.sparseness(a)                                                     # functions of the map alone
    xe.max_sensitivity(..., **xe.preset("captum", "max_sensitivity"))    # a reference's defaults

Metrics over a given explanation take ``(model, variables, x, target, attributions, *, options)``;
metrics that recompute explanations take a method value in place of ``attributions``; complexity
and localisation metrics take the attributions (and masks) alone.  Every metric validates eagerly,
runs jitted and batched (perturbed copies in chunks of ``batch_size``), draws randomness only from an
explicit ``key`` (or takes the draws themselves), and returns one value per sample.  Conventions for
ties, constant maps and normalisation: :mod:`xai_jax.evaluation._common`; the metric table, presets
side by side and where we differ from Quantus and Captum: ``docs/evaluation.md``.
"""

from .complexity import complexity, effective_complexity, sparseness
from .faithfulness import (
    Curve,
    IROFResult,
    aopc,
    area_between,
    auc,
    completeness,
    deletion,
    faithfulness_correlation,
    infidelity,
    insertion,
    irof,
    pixel_flipping,
    region_perturbation,
    road,
    square_perturbations,
    sufficiency,
)
from .imputation import gaussian_blur, linear_imputation, noisy_linear_imputation, superpixels, translate_horizontally
from .localisation import pointing_game, relevance_mass_accuracy, relevance_rank_accuracy, top_k_intersection
from .plots import plot_curves, plot_mprt_cascade, plot_mprt_maps
from .presets import CAPTUM, PRESETS, QUANTUS, preset
from .randomisation import (
    MPRTResult,
    efficient_mprt,
    fresh_parameters,
    histogram_entropy,
    mprt,
    parameter_layers,
    random_logit,
    randomise_layers,
    smooth_mprt,
)
from .registry import METRICS, MetricInfo, area_between_curves
from .robustness import avg_sensitivity, continuity, local_lipschitz_estimate, max_sensitivity
from .runner import EvaluationReport, evaluate
from .similarity import pearson, spearman, ssim

__all__ = [
    "CAPTUM",
    "METRICS",
    "PRESETS",
    "QUANTUS",
    "Curve",
    "EvaluationReport",
    "IROFResult",
    "MPRTResult",
    "MetricInfo",
    "aopc",
    "area_between",
    "area_between_curves",
    "auc",
    "avg_sensitivity",
    "completeness",
    "complexity",
    "continuity",
    "deletion",
    "effective_complexity",
    "efficient_mprt",
    "evaluate",
    "faithfulness_correlation",
    "fresh_parameters",
    "gaussian_blur",
    "histogram_entropy",
    "infidelity",
    "insertion",
    "irof",
    "linear_imputation",
    "local_lipschitz_estimate",
    "max_sensitivity",
    "mprt",
    "noisy_linear_imputation",
    "parameter_layers",
    "pearson",
    "pixel_flipping",
    "plot_curves",
    "plot_mprt_cascade",
    "plot_mprt_maps",
    "pointing_game",
    "preset",
    "random_logit",
    "randomise_layers",
    "region_perturbation",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "road",
    "smooth_mprt",
    "sparseness",
    "spearman",
    "square_perturbations",
    "ssim",
    "sufficiency",
    "superpixels",
    "top_k_intersection",
    "translate_horizontally",
]
