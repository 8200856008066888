"""Methods × metrics over a dataset: one table (CSV + Markdown) and the pictures (curves, MPRT cascade).

    report = xe.evaluate(model, variables, images, labels, methods=["gradient", "integrated_gradients"],
                         metrics=["pixel_flipping", "road", "max_sensitivity", "mprt"], key=jax.random.key(0),
                         preset="quantus", out_dir="evaluation")

Images are processed in batches of ``batch_size`` with a progress bar; each method's attributions are
computed once per batch and shared by every metric.  Every method sees the same random draws of a
metric (common random numbers: differences between methods are not noise of the metric).  With
``mesh``, each batch is sharded over the mesh's first axis (data parallel); the numbers do not change.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import InputError, XaiJaxError
from ..viz.output import Layout, check_folder
from .faithfulness import Curve
from .presets import preset as preset_options
from .randomisation import MPRTResult
from .registry import METRICS, MetricInfo

#: What an evaluation owns in its output folder (see :mod:`xai_jax.viz.output`).
LAYOUT = Layout(
    format="xai_jax-evaluation/1",
    entries=("manifest.json", "results.csv", "results.md", "plots"),
    folders=("plots",),
    what="evaluation",
)

#: Metrics whose result is a :class:`Curve` worth plotting.
CURVE_METRICS = ("pixel_flipping", "deletion", "insertion", "region_perturbation", "road")


@dataclasses.dataclass
class EvaluationReport:
    """Per-sample summaries ``scores[(method, metric)] (N,)``, curves ``curves[metric][method]``, MPRT
    cascades ``cascades[metric][method]``, and ``skipped[(method, metric)]`` = the reason."""

    methods: list[str]
    metrics: list[str]
    scores: dict[tuple[str, str], np.ndarray] = dataclasses.field(default_factory=dict)
    curves: dict[str, dict[str, Curve]] = dataclasses.field(default_factory=dict)
    cascades: dict[str, dict[str, MPRTResult]] = dataclasses.field(default_factory=dict)
    skipped: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One row per (method, metric): mean, standard error, count, direction."""
        out = []
        for method in self.methods:
            for metric in self.metrics:
                info = METRICS[metric]
                values = self.scores.get((method, metric))
                if values is None:
                    continue
                v = np.asarray(values, np.float64)
                sem = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
                out.append(
                    {
                        "method": method,
                        "metric": metric,
                        "summary": info.summary_name,
                        "mean": float(v.mean()),
                        "sem": sem,
                        "n": len(v),
                        "better": "higher" if info.higher_is_better else "lower",
                    }
                )
        return out

    def to_markdown(self) -> str:
        """Methods × metrics table of ``mean ± standard error`` (↑: higher is better, ↓: lower)."""
        rows = {(r["method"], r["metric"]): r for r in self.rows()}
        metrics = [m for m in self.metrics if any((meth, m) in rows for meth in self.methods)]
        head = "| method | " + " | ".join(f"{m} {'↑' if METRICS[m].higher_is_better else '↓'}" for m in metrics) + " |"
        lines = [head, "|---" * (len(metrics) + 1) + "|"]
        for method in self.methods:
            cells = []
            for m in metrics:
                r = rows.get((method, m))
                cells.append("—" if r is None else f"{r['mean']:.4g} ± {r['sem']:.2g}")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        notes = [f"- {meth} / {met}: skipped ({why})" for (meth, met), why in self.skipped.items()]
        legend = "\n".join(f"- {m}: {METRICS[m].summary_name} per sample" for m in metrics)
        return (
            "\n".join(lines) + ("\n\n" + legend if legend else "") + ("\n\n" + "\n".join(notes) if notes else "") + "\n"
        )

    def write(self, out_dir: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
        """``results.csv``, ``results.md`` and the plots (``plots/curves_<metric>.png``,
        ``plots/<metric>_cascade.png``, ``plots/<metric>_maps.png``) in ``out_dir``; returns their paths.

        ``out_dir`` must be new, empty or an earlier evaluation, which is replaced as a whole; other
        content raises :class:`~xai_jax.core.errors.OutputError` before anything is written, unless
        ``overwrite=True`` (written beside it, kept).  See :mod:`xai_jax.viz.output`."""
        from ..viz.output import write_folder

        names: dict[str, str] = {"csv": "results.csv", "markdown": "results.md"}

        def write(folder: Path) -> dict[str, Any]:
            with (folder / names["csv"]).open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["method", "metric", "summary", "mean", "sem", "n", "better"])
                writer.writeheader()
                writer.writerows(self.rows())
            (folder / names["markdown"]).write_text(self.to_markdown())
            names.update(self._write_plots(folder / "plots"))
            return {"methods": self.methods, "metrics": self.metrics}

        write_folder(out_dir, LAYOUT, write, overwrite=overwrite)
        return {what: Path(out_dir) / rel for what, rel in names.items()}

    def _write_plots(self, folder: Path) -> dict[str, str]:
        from . import plots

        written: dict[str, str] = {}
        if any(self.curves.values()) or any(self.cascades.values()):
            folder.mkdir()
        for metric, curves in self.curves.items():
            if curves:
                written[f"curves_{metric}"] = f"plots/curves_{metric}.png"
                label = "fraction of features replaced" if metric != "road" else "fraction of pixels removed"
                plots.plot_curves(curves, title=metric, xlabel=label, path=folder / f"curves_{metric}.png")
        for metric, results in self.cascades.items():
            if results:
                written[f"{metric}_cascade"] = f"plots/{metric}_cascade.png"
                plots.plot_mprt_cascade(
                    results,
                    title=f"{metric}: similarity as layers are randomised",
                    path=folder / f"{metric}_cascade.png",
                )
                with_maps = {k: r for k, r in results.items() if r.explanations is not None}
                if with_maps:
                    written[f"{metric}_maps"] = f"plots/{metric}_maps.png"
                    plots.plot_mprt_maps(with_maps, path=folder / f"{metric}_maps.png")
        return written


def _resolve_methods(
    methods: Mapping[str, Any] | Sequence[str], key: jax.Array
) -> tuple[dict[str, Callable[..., Any]], dict[str, str]]:
    """Names or ``{name: callable}`` -> callables; registered methods that need a layer are skipped
    (metrics need input-resolution maps), ones that need a key get a fixed one."""
    if isinstance(methods, Mapping):
        return dict(methods), {}
    from ..core import METHODS

    resolved: dict[str, Callable[..., Any]] = {}
    skipped: dict[str, str] = {}
    for name in methods:
        info = METHODS[name]
        if info.resolution != "input" or "layer" in info.needs:
            skipped[name] = "needs a layer; pass it as {name: functools.partial(...)} with an input-resolution map"
            continue
        extra: dict[str, Any] = {"key": jax.random.fold_in(key, 7919)} if "key" in info.needs else {}
        resolved[name] = functools.partial(info, **extra) if extra else info
    return resolved, skipped


def _shard(mesh: Any, *arrays: Any) -> tuple[Any, ...]:
    if mesh is None:
        return arrays
    from jax.sharding import NamedSharding, PartitionSpec

    axis = mesh.axis_names[0]
    out = []
    for a in arrays:
        if a is None or not hasattr(a, "shape") or a.shape[0] % mesh.shape[axis]:
            out.append(a)
        else:
            out.append(jax.device_put(a, NamedSharding(mesh, PartitionSpec(axis))))
    return tuple(out)


def _concat_curves(parts: list[Curve]) -> Curve:
    return Curve(parts[0].fractions, jnp.concatenate([p.scores for p in parts], axis=0))


def _concat_mprt(parts: list[MPRTResult]) -> MPRTResult:
    return MPRTResult(
        parts[0].layers,
        jnp.concatenate([p.scores for p in parts], axis=1),
        jnp.concatenate([p.original for p in parts]),
        parts[0].explanations,
    )


def evaluate(
    model: Any,
    variables: Any,
    images: Any,
    targets: Any = None,
    *,
    methods: Mapping[str, Any] | Sequence[str],
    metrics: Sequence[str],
    key: jax.Array,
    preset: str = "xai_jax",
    options: Mapping[str, Mapping[str, Any]] | None = None,
    masks: Any = None,
    batch_size: int = 32,
    mesh: Any = None,
    progress: bool = True,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    maps_to_keep: int = 4,
) -> EvaluationReport:
    """Run every method × metric over ``images`` (``targets``: class per image, or ``None`` for the
    predicted class) and summarise each metric per sample (:attr:`MetricInfo.summary`).

    ``preset``: the options of ``"xai_jax"`` (the functions' defaults), ``"quantus"`` or ``"captum"``
    (where it has the metric); ``options[metric]`` overrides them.  ``masks``: ground truth for the
    localisation metrics (skipped without).  Writes the table and plots to ``out_dir`` when given
    (checked first: new, empty or an earlier evaluation, unless ``overwrite``; see
    :meth:`EvaluationReport.write`)."""
    from tqdm.auto import tqdm

    if out_dir is not None:
        check_folder(out_dir, LAYOUT, overwrite=overwrite)
    images = np.asarray(images, np.float32)
    n = images.shape[0]
    if n == 0:
        raise InputError("no images to evaluate.")
    if targets is not None and len(targets) != n:
        raise InputError(f"targets hold {len(targets)} entries for {n} images.")
    infos: list[MetricInfo] = [METRICS[m] for m in metrics]
    callables, skipped_methods = _resolve_methods(methods, key)
    report = EvaluationReport(list(callables), [i.name for i in infos])
    for name, why in skipped_methods.items():
        report.skipped[(name, "*")] = why
    opts = {}
    for info in infos:
        try:
            base = preset_options(preset, info.name) if preset != "xai_jax" else {}
        except XaiJaxError:
            base = {}  # the preset does not have this metric: its own defaults
        opts[info.name] = {**base, **dict((options or {}).get(info.name, {}))}
        info.check_options(opts[info.name])
    for name in options or {}:
        if name not in opts:
            raise InputError(
                f"options for metric {name!r}, which is not among the metrics evaluated ({', '.join(opts)})."
            )
    pieces: dict[tuple[str, str], list[Any]] = {}
    starts = list(range(0, n, batch_size))
    bar = tqdm(total=len(starts) * max(len(callables), 1), disable=not progress, desc="evaluate", unit="method·batch")
    for b, start in enumerate(starts):
        xb = jnp.asarray(images[start : start + batch_size])
        tb = None if targets is None else jnp.asarray(np.asarray(targets[start : start + batch_size]), jnp.int32)
        mb = None if masks is None else jnp.asarray(np.asarray(masks[start : start + batch_size]))
        xb, tb, mb = _shard(mesh, xb, tb, mb)
        for method_name, method in callables.items():
            attributions = jnp.asarray(method(model, variables, xb, tb), jnp.float32)
            for m_index, info in enumerate(infos):
                if info.takes == "masks" and mb is None:
                    report.skipped[(method_name, info.name)] = "no masks given"
                    continue
                bar.set_postfix_str(f"{method_name} · {info.name}")
                extra = dict(opts[info.name])
                if info.name in ("mprt",) and b == 0:
                    extra["keep_explanations"] = True
                try:
                    result = info(
                        model,
                        variables,
                        xb,
                        tb,
                        attributions=attributions,
                        method=method,
                        masks=mb,
                        key=jax.random.fold_in(jax.random.fold_in(key, b), m_index),
                        **extra,
                    )
                except XaiJaxError as err:
                    report.skipped[(method_name, info.name)] = str(err).splitlines()[0]
                    continue
                if isinstance(result, MPRTResult) and result.explanations is not None:
                    result = result._replace(explanations=result.explanations[:, :maps_to_keep])
                pieces.setdefault((method_name, info.name), []).append(result)
            bar.update(1)
    bar.close()
    for (method_name, metric), parts in pieces.items():
        info = METRICS[metric]
        report.scores[(method_name, metric)] = np.concatenate([np.asarray(info.summary(p)) for p in parts])
        if isinstance(parts[0], Curve) and metric in CURVE_METRICS:
            report.curves.setdefault(metric, {})[method_name] = _concat_curves(parts)
        if isinstance(parts[0], MPRTResult):
            report.cascades.setdefault(metric, {})[method_name] = _concat_mprt(parts)
    if out_dir is not None:
        report.write(out_dir, overwrite=overwrite)
    return report
