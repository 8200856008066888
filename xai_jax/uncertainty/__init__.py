"""Uncertainty: MC dropout, evidential deep learning, calibration, and uncertainty of explanations.

* :func:`mc_dropout` -- predictive mean (of probabilities), predictive and expected entropy, mutual
  information (BALD), per-class std from ``T`` dropout passes in one jitted, vmapped call
  (Gal & Ghahramani 2016; Houlsby et al. 2011).
* :func:`explain_mc` -- any registered attribution method over MC-dropout networks: mean and std
  maps; :func:`explain_random_baselines` -- DeepLIFT / IG over random-noise references;
  :func:`explain_mc_methods` -- several methods with the same masks (``xai-jax explain --mc-samples``).
* :func:`evidential` -- Dirichlet ``α``, expected probabilities and ``u = K / S`` of an evidential
  classifier, with the losses of Sensoy et al. (2018) (from :mod:`xai_jax.models.losses`).
* Calibration (Guo et al. 2017): :func:`expected_calibration_error`, :func:`maximum_calibration_error`,
  :func:`reliability_bins`, :func:`negative_log_likelihood`, :func:`fit_temperature`,
  :func:`temperature_scale`, :func:`predict_logits`; pictures: :func:`reliability_diagram`,
  :func:`uncertainty_histogram`.
* Shifted inputs for experiments: :func:`rotate`, :func:`noise_images`.

This family imports the core and reaches attribution methods through ``xj.METHODS`` only.
"""

from ._common import product_dropout
from .calibration import (
    ReliabilityBins,
    TemperatureFit,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    negative_log_likelihood,
    predict_logits,
    reliability_bins,
    temperature_scale,
)
from .evidential import (
    EVIDENCE,
    EvidentialOutput,
    annealing_weight,
    dirichlet_from_logits,
    dirichlet_kl_to_uniform,
    evidential,
    evidential_digamma_loss,
    evidential_log_loss,
    evidential_mse_loss,
)
from .explain import MCExplanation, explain_mc, explain_mc_methods, explain_random_baselines, noise_baseline
from .mc_dropout import MCDropoutResult, mc_dropout, predictive_statistics
from .plots import reliability_diagram, uncertainty_histogram
from .shift import noise_images, rotate

__all__ = [
    "EVIDENCE",
    "EvidentialOutput",
    "MCDropoutResult",
    "MCExplanation",
    "ReliabilityBins",
    "TemperatureFit",
    "annealing_weight",
    "dirichlet_from_logits",
    "dirichlet_kl_to_uniform",
    "evidential",
    "evidential_digamma_loss",
    "evidential_log_loss",
    "evidential_mse_loss",
    "expected_calibration_error",
    "explain_mc",
    "explain_mc_methods",
    "explain_random_baselines",
    "fit_temperature",
    "maximum_calibration_error",
    "mc_dropout",
    "negative_log_likelihood",
    "noise_baseline",
    "noise_images",
    "predict_logits",
    "predictive_statistics",
    "product_dropout",
    "reliability_bins",
    "reliability_diagram",
    "rotate",
    "temperature_scale",
    "uncertainty_histogram",
]
