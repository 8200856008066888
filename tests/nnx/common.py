"""Options that let every registered method run on a small model, for the NNX/Equinox/sharding tests."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

import xai_jax as xj


def options_for(name: str, layer: str | None) -> dict[str, Any]:
    """Options for ``xj.METHODS[name]`` on a small model: the layer it needs, a key, and small
    expansions (IG steps, SmoothGrad samples, occlusion windows) so a call compiles and runs fast."""
    method = xj.METHODS[name]
    options: dict[str, Any] = {}
    for option, spec in method.options.items():
        if spec.needs == "layer":
            options[option] = layer
        elif spec.needs == "key":
            options[option] = jax.random.key(1)
    if name == "integrated_gradients":
        options["steps"] = 8
        options["batch_size"] = 2  # a chunked expansion: 4 chunks of 2 path points
    if name == "smoothgrad":
        options["samples"] = 4
    if name == "occlusion":
        options["window"] = (4, 4)
        options["strides"] = (4, 4)
    for option, value in SMALL.get(name, {}).items():
        if option in method.options:
            options[option] = value
    return options


#: Small sample counts and optimisation steps, so a call of each of these methods compiles and runs fast
#: (an option a method does not have is left out).
SMALL: dict[str, dict[str, Any]] = {
    "extremal_perturbation": {"steps": 4},
    "meaningful_perturbation": {"steps": 4},
    "kernel_shap": {"samples": 128},  # more coalitions than the 64 features of a 16x16 input
    "lime": {"samples": 32},
    "rise": {"samples": 32},
    "prediction_difference": {"samples": 2},
    "shapley_value_sampling": {"samples": 2},
    "gradient_shap": {"samples": 2},
    "blur_ig": {"steps": 8},
    "guided_ig": {"steps": 8},
    "xrai": {"steps": 8},
}


def max_relative_difference(a: Any, b: Any) -> float:
    """``max |a - b| / max |a|`` over every leaf (0 when both are zero)."""
    worst = 0.0
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        scale = float(np.max(np.abs(x))) if x.size else 0.0
        diff = float(np.max(np.abs(x - y))) if x.size else 0.0
        worst = max(worst, diff / scale if scale > 0 else diff)
    return worst


def run(name: str, model: Any, variables: Any, x: Any, target: Any, layer: str | None) -> Any:
    """``xj.METHODS[name](model, variables, x, target, **options)``, or the error it raised (an
    ``XaiJaxError``: the method does not apply to this model)."""
    try:
        return xj.METHODS[name](model, variables, x, target, **options_for(name, layer))
    except xj.XaiJaxError as err:
        return err
