"""Presets: the options that reproduce a reference library's defaults, by name.

    xe.max_sensitivity(model, variables, x, y, xj.gradient, key=key, **xe.preset("captum", "max_sensitivity"))

``"xai_jax"`` is this package's own defaults (the functions' signatures; listed for the side-by-side
table in docs/evaluation.md).  ``"quantus"`` is Quantus 0.6's constructor and ``__call__`` defaults
(the softmax flag becomes ``score``), with two systematic differences that no option can undo here:
normalisation is per sample (Quantus divides a whole batch by one maximum), and where Quantus does
not compute what its paper defines (Infidelity, Continuity's t = 0 step, Random Logit's 1-D SSIM,
IROF's drifting batch mean, Completeness' float equality) the preset keeps Quantus' parameters with
the paper's computation (docs/evaluation.md, "Where we differ").  ``"captum"`` covers the two
metrics Captum has, ``infidelity`` and ``sensitivity_max``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.errors import UnknownNameError, unknown_name_message

QUANTUS: dict[str, dict[str, Any]] = {
    "pixel_flipping": {"order": "morf", "features_per_step": 1, "baseline": "black", "score": "probability"},
    "region_perturbation": {
        "patch_size": 8,
        "regions": 100,
        "order": "morf",
        "baseline": "black",
        "score": "probability",
    },
    "faithfulness_correlation": {"runs": 100, "subset_size": 224, "baseline": "black", "score": "logit"},
    "infidelity": {
        "perturbation": "square",
        "patch_size": 4,
        "baseline": "black",
        "samples": 10,
        "normalize": False,
        "score": "logit",
    },
    "road": {"percentages": tuple(range(1, 100, 2)), "order": "morf", "noise": 0.01, "score": "accuracy"},
    "irof": {"segmentation": "slic", "baseline": "mean", "score": "probability"},
    "sufficiency": {"threshold": 0.6, "absolute": True, "normalise": None},
    "completeness": {"baseline": "black", "score": "logit"},
    "max_sensitivity": {
        "samples": 200,
        "radius": 0.2,
        "norm": "fro",
        "relative": True,
        "normalise": None,
        "absolute": False,
    },
    "avg_sensitivity": {
        "samples": 200,
        "radius": 0.2,
        "norm": "fro",
        "relative": True,
        "normalise": None,
        "absolute": False,
    },
    "local_lipschitz_estimate": {"samples": 200, "std": 0.1, "normalise": "max", "absolute": False},
    "continuity": {"steps": 28, "baseline": "black", "normalise": "max", "absolute": True},
    "mprt": {"order": "top_down", "similarity": "spearman", "absolute": True, "normalise": "max", "init": "torch"},
    "smooth_mprt": {
        "samples": 50,
        "noise_magnitude": 0.1,
        "order": "bottom_up",
        "similarity": "spearman",
        "absolute": True,
        "normalise": "second_moment",
        "init": "torch",
    },
    "efficient_mprt": {"bins": 100, "absolute": False, "normalise": None, "init": "torch"},
    "random_logit": {"similarity": "ssim", "absolute": False, "normalise": "max"},
    "sparseness": {"absolute": True, "normalise": "max"},
    "complexity": {"absolute": True, "normalise": "max"},
    "effective_complexity": {"eps": 1e-5, "absolute": True, "normalise": "max"},
    "pointing_game": {"absolute": False, "normalise": "max"},
    "relevance_mass_accuracy": {"absolute": False, "normalise": "max"},
    "relevance_rank_accuracy": {"absolute": False, "normalise": "max"},
    "top_k_intersection": {"k": 1000, "concept_influence": False, "absolute": False, "normalise": "max"},
}

CAPTUM: dict[str, dict[str, Any]] = {
    # captum.metrics.infidelity takes the perturbation function from the user; the Gaussian N(0, 0.003²)
    # is the one of Captum's own examples.  normalize=False is its default.
    "infidelity": {"samples": 10, "perturbation": "gaussian", "std": 0.003, "normalize": False, "score": "logit"},
    "max_sensitivity": {
        "samples": 10,
        "radius": 0.02,
        "norm": "fro",
        "relative": True,
        "normalise": None,
        "absolute": False,
    },
}


def _own_defaults() -> dict[str, dict[str, Any]]:
    import inspect

    from .registry import METRICS

    out: dict[str, dict[str, Any]] = {}
    for name, info in METRICS.items():
        params = inspect.signature(info.fn).parameters.values()
        out[name] = {
            p.name: p.default
            for p in params
            if p.kind is p.KEYWORD_ONLY
            and p.name
            not in (
                "key",
                "batch_size",
                "model_kwargs",
                "perturbations",
                "noise_draws",
                "subsets",
                "other_classes",
                "attributions",
                "segments",
                "layers",
                "keep_explanations",
            )
        }
    return out


PRESETS: Mapping[str, Mapping[str, Mapping[str, Any]]] = {"quantus": QUANTUS, "captum": CAPTUM}


def preset(library: str, metric: str) -> dict[str, Any]:
    """The keyword options that make ``metric`` compute what ``library`` (``"quantus"``, ``"captum"``,
    or ``"xai_jax"`` for this package's defaults) computes by default."""
    tables = {"xai_jax": _own_defaults(), **PRESETS}
    if library not in tables:
        raise UnknownNameError(unknown_name_message("preset", library, tables))
    table = tables[library]
    if metric not in table:
        raise UnknownNameError(unknown_name_message(f"metric in the {library!r} preset", metric, table))
    return dict(table[metric])
