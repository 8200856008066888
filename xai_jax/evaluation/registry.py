"""The metric registry: names -> metrics with what a generic caller must know (what the metric takes,
which direction is better, how to reduce its result to one number per sample), so the runner and
the CLI loop over metrics without special cases."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..core.errors import UnknownNameError, unknown_name_message
from . import faithfulness, localisation, randomisation, robustness

# By name, not as ``from . import complexity``: the package re-exports the *function* complexity.
from .complexity import complexity as complexity_metric
from .complexity import effective_complexity, sparseness

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    """A registered metric.

    ``takes``: ``"attributions"`` (model, variables, x, target, attributions), ``"method"`` (model,
    variables, x, target, method), ``"map"`` (attributions only) or ``"masks"`` (attributions and
    masks).  ``higher_is_better``: the direction of :meth:`summary`.  ``stochastic``: needs a ``key``.
    ``summary(result) -> (B,)``: one number per sample (e.g. the area under a curve)."""

    name: str
    fn: Callable[..., Any]
    category: str
    takes: str
    higher_is_better: bool
    stochastic: bool
    summary: Callable[[Any], Array]
    summary_name: str
    needs_images: bool = False

    @property
    def options(self) -> tuple[str, ...]:
        """The keyword options the metric takes (``key`` is passed by the caller of a stochastic metric)."""
        params = inspect.signature(self.fn).parameters.values()
        return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "key")

    def check_options(self, options: Mapping[str, Any]) -> None:
        """:class:`~xai_jax.core.errors.UnknownNameError` for an option the metric does not take, with the
        closest names, before anything runs (a typo must not cost a long evaluation)."""
        for name in options:
            if name not in self.options:
                raise UnknownNameError(
                    unknown_name_message("option", name, self.options, of=f"of metric {self.name!r}")
                )

    def __call__(
        self,
        model: Any,
        variables: Any,
        x: Any,
        target: Any,
        *,
        attributions: Any = None,
        method: Any = None,
        masks: Any = None,
        key: Any = None,
        **options: Any,
    ) -> Any:
        """Run the metric with the uniform calling convention (unused arguments are ignored)."""
        if self.stochastic:
            options["key"] = key
        if self.takes == "attributions":
            return self.fn(model, variables, x, target, attributions, **options)
        if self.takes == "method":
            return self.fn(model, variables, x, target, method, **options)
        if self.takes == "masks":
            return self.fn(attributions, masks, **options)
        return self.fn(attributions, **options)


def _identity(result: Array) -> Array:
    return result


def _last_stage(result: randomisation.MPRTResult) -> Array:
    return result.scores[-1]


def _mean_curve(curve: faithfulness.Curve) -> Array:
    return jnp.mean(curve.scores, axis=1)


def _abs(result: Array) -> Array:
    return jnp.abs(result)


def area_between_curves(model: Any, variables: Any, x: Any, target: Any, attributions: Any, **options: Any) -> Array:
    """:func:`~xai_jax.evaluation.area_between` of the LeRF and MoRF pixel-flipping curves (same
    options as :func:`~xai_jax.evaluation.pixel_flipping`, without ``order``)."""
    morf = faithfulness.pixel_flipping(model, variables, x, target, attributions, order="morf", **options)
    lerf = faithfulness.pixel_flipping(model, variables, x, target, attributions, order="lerf", **options)
    return faithfulness.area_between(morf, lerf)


# Its options are pixel flipping's without ``order``: say so in its signature (help(), option checks).
_flipping = inspect.signature(faithfulness.pixel_flipping)
area_between_curves.__signature__ = _flipping.replace(  # type: ignore[attr-defined]
    parameters=[p for p in _flipping.parameters.values() if p.name != "order"], return_annotation=Array
)


class MetricRegistry(Mapping[str, MetricInfo]):
    """A read-only mapping of metric names (:data:`METRICS`)."""

    def __init__(self, entries: list[MetricInfo]) -> None:
        self._entries = {e.name: e for e in entries}

    def __getitem__(self, name: str) -> MetricInfo:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message("metric", name, self._entries)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _m(
    name: str,
    fn: Callable[..., Any],
    category: str,
    takes: str,
    higher: bool,
    stochastic: bool,
    summary: Callable[[Any], Array] = _identity,
    summary_name: str = "score",
    images: bool = False,
) -> MetricInfo:
    return MetricInfo(name, fn, category, takes, higher, stochastic, summary, summary_name, images)


METRICS = MetricRegistry(
    [
        _m(
            "pixel_flipping",
            faithfulness.pixel_flipping,
            "faithfulness",
            "attributions",
            False,
            False,
            faithfulness.auc,
            "AUC (MoRF)",
        ),
        _m(
            "area_between_curves",
            area_between_curves,
            "faithfulness",
            "attributions",
            True,
            False,
            _identity,
            "AUC(LeRF) − AUC(MoRF)",
        ),
        _m("deletion", faithfulness.deletion, "faithfulness", "attributions", False, False, faithfulness.auc, "AUC"),
        _m(
            "insertion",
            faithfulness.insertion,
            "faithfulness",
            "attributions",
            True,
            False,
            faithfulness.auc,
            "AUC",
            images=True,
        ),
        _m(
            "region_perturbation",
            faithfulness.region_perturbation,
            "faithfulness",
            "attributions",
            True,
            False,
            faithfulness.aopc,
            "AOPC",
            images=True,
        ),
        _m(
            "irof",
            faithfulness.irof,
            "faithfulness",
            "attributions",
            True,
            False,
            lambda r: r.score,
            "area over curve",
            images=True,
        ),
        _m(
            "faithfulness_correlation",
            faithfulness.faithfulness_correlation,
            "faithfulness",
            "attributions",
            True,
            True,
        ),
        _m("infidelity", faithfulness.infidelity, "faithfulness", "attributions", False, True),
        _m(
            "road",
            faithfulness.road,
            "faithfulness",
            "attributions",
            False,
            True,
            _mean_curve,
            "mean accuracy (MoRF)",
            images=True,
        ),
        _m("sufficiency", faithfulness.sufficiency, "faithfulness", "attributions", True, False),
        _m("completeness", faithfulness.completeness, "faithfulness", "attributions", False, False, _abs, "|gap|"),
        _m("max_sensitivity", robustness.max_sensitivity, "robustness", "method", False, True),
        _m("avg_sensitivity", robustness.avg_sensitivity, "robustness", "method", False, True),
        _m("local_lipschitz_estimate", robustness.local_lipschitz_estimate, "robustness", "method", False, True),
        _m("continuity", robustness.continuity, "robustness", "method", False, False, images=True),
        _m("mprt", randomisation.mprt, "randomisation", "method", False, True, _last_stage, "last-stage similarity"),
        _m(
            "smooth_mprt",
            randomisation.smooth_mprt,
            "randomisation",
            "method",
            False,
            True,
            _last_stage,
            "last-stage similarity",
        ),
        _m("efficient_mprt", randomisation.efficient_mprt, "randomisation", "method", True, True),
        _m("random_logit", randomisation.random_logit, "randomisation", "method", False, True),
        _m("sparseness", sparseness, "complexity", "map", True, False),
        _m("complexity", complexity_metric, "complexity", "map", False, False),
        _m("effective_complexity", effective_complexity, "complexity", "map", False, False),
        _m("pointing_game", localisation.pointing_game, "localisation", "masks", True, False),
        _m("relevance_mass_accuracy", localisation.relevance_mass_accuracy, "localisation", "masks", True, False),
        _m("relevance_rank_accuracy", localisation.relevance_rank_accuracy, "localisation", "masks", True, False),
        _m("top_k_intersection", localisation.top_k_intersection, "localisation", "masks", True, False),
    ]
)
