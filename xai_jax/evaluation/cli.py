"""What ``xai-jax evaluate`` runs by default, and its ``--set METRIC.OPTION=VALUE`` overrides.

    xai-jax evaluate                                   # shipped CNN, 64 bundled digits, a quick set of metrics
    xai-jax evaluate --images test --count 1000 --preset quantus --metrics pixel_flipping,road,max_sensitivity
    xai-jax evaluate --set pixel_flipping.features_per_step=16 --set max_sensitivity.samples=50

The command itself lives in :mod:`xai_jax.cli` beside ``explain``, with the same checks of images,
targets and the output folder.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

DEFAULT_METHODS = "gradient,saliency,input_x_gradient,integrated_gradients,guided_backprop"
DEFAULT_METRICS = (
    "pixel_flipping,area_between_curves,road,faithfulness_correlation,max_sensitivity,mprt,efficient_mprt,"
    "random_logit,sparseness,complexity"
)
#: Settings that keep the default run to about a minute per method on a 2-core CPU (override with --set).
QUICK_OPTIONS: dict[str, dict[str, Any]] = {
    "pixel_flipping": {"features_per_step": 16},
    "area_between_curves": {"features_per_step": 16},
    "road": {"percentages": (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)},
    "faithfulness_correlation": {"runs": 50},
    "max_sensitivity": {"samples": 20},
    "avg_sensitivity": {"samples": 20},
    "local_lipschitz_estimate": {"samples": 20},
    "smooth_mprt": {"samples": 10},
}


def parse_settings(settings: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["road.noise=0.05", ...]`` -> ``{"road": {"noise": 0.05}}``: values are Python literals, a bare
    word is a string."""
    from ..core.errors import InputError

    out: dict[str, dict[str, Any]] = {}
    for item in settings:
        name, _, value = item.partition("=")
        metric, _, option = name.partition(".")
        if not option or not value:
            raise InputError(f"--set {item!r}: expected METRIC.OPTION=VALUE, e.g. road.noise=0.05")
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value  # a bare word: a string option (e.g. baseline=black)
        out.setdefault(metric, {})[option] = parsed
    return out
