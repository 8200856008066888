"""``xai-jax evaluate``: methods × metrics over MNIST (or any images), table + plots.

    xai-jax evaluate                                   # shipped CNN, 64 bundled digits, a quick set of metrics
    xai-jax evaluate --images test --count 1000 --preset quantus --metrics pixel_flipping,road,max_sensitivity
    xai-jax evaluate --set pixel_flipping.features_per_step=16 --set max_sensitivity.samples=50

Wired by ``xai_jax/cli.py`` through :func:`add_parser` (which registers :func:`run`).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_METHODS = "gradient,saliency,input_x_gradient,integrated_gradients,guided_backprop"
DEFAULT_METRICS = ("pixel_flipping,area_between_curves,road,faithfulness_correlation,max_sensitivity,mprt,efficient_mprt,"
                   "random_logit,sparseness,complexity")
#: Settings that keep the default run to about a minute per method on a 2-core CPU (override with --set).
QUICK_OPTIONS = {
    "pixel_flipping": {"features_per_step": 16},
    "area_between_curves": {"features_per_step": 16},
    "road": {"percentages": (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)},
    "faithfulness_correlation": {"runs": 50},
    "max_sensitivity": {"samples": 20},
    "avg_sensitivity": {"samples": 20},
    "local_lipschitz_estimate": {"samples": 20},
    "smooth_mprt": {"samples": 10},
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``evaluate`` command on an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser("evaluate", help="score explanation methods with faithfulness, robustness, randomisation, "
                                               "complexity metrics; writes a table (CSV + Markdown) and plots")
    p.add_argument("--model", default="mnist_cnn", help="zoo model name (see `xai-jax models`)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint file for --model (default: the shipped one)")
    p.add_argument("--images", default="sample", help="'sample' (bundled), 'test' (MNIST test split), or a .npz/.npy file")
    p.add_argument("--count", type=int, default=64, help="number of images")
    p.add_argument("--start", type=int, default=0, help="index of the first image")
    p.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated registered method names")
    p.add_argument("--metrics", default=DEFAULT_METRICS, help="comma-separated metric names, or 'all'")
    p.add_argument("--preset", default="xai_jax", choices=("xai_jax", "quantus", "captum"),
                   help="metric options: this package's defaults, Quantus 0.6's or Captum's")
    p.add_argument("--full", action="store_true", help="use the preset as is (without the quick settings: every pixel, "
                                                       "200 sensitivity samples...)")
    p.add_argument("--set", action="append", default=[], metavar="METRIC.OPTION=VALUE",
                   help="override one metric option (a Python literal), e.g. --set road.noise=0.05")
    p.add_argument("--target", default="label", help="'label' (the images' labels), 'pred' (predicted class) or a class index")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="xai_jax_evaluation", help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _images(spec: str, count: int, start: int) -> tuple[np.ndarray, np.ndarray | None]:
    from .. import data
    from ..core.errors import DataError

    if spec in {"sample", "test", "validation", "train"}:
        images, labels = data.mnist(spec)
    else:
        path = Path(spec)
        if not path.exists():
            raise DataError(f"--images {spec!r}: no such file (give 'sample', 'test', or a .npz/.npy path).")
        if path.suffix == ".npy":
            images, labels = np.load(path), None
        else:
            with np.load(path) as archive:
                name = next((k for k in ("images", "x", "x_test") if k in archive), None)
                if name is None:
                    raise DataError(f"{path} has no 'images', 'x' or 'x_test' array (found {sorted(archive.files)}).")
                images = archive[name]
                labels = next((archive[k] for k in ("labels", "y", "y_test") if k in archive), None)
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        if images.ndim == 3:
            images = images[..., None]
    images = np.asarray(images[start : start + count], np.float32)
    labels = None if labels is None else np.asarray(labels[start : start + count], np.int32)
    if len(images) == 0:
        raise DataError(f"no images selected (start={start}, count={count}).")
    return images, labels


def _overrides(settings: list[str]) -> dict[str, dict[str, Any]]:
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


def run(args: argparse.Namespace) -> int:
    """Execute ``xai-jax evaluate``; prints the Markdown table and where the files went."""
    import jax

    from .. import models
    from ..core.errors import InputError
    from .registry import METRICS
    from .runner import evaluate

    model, variables = models.load(args.model, args.checkpoint) if args.checkpoint else models.load(args.model)
    images, labels = _images(args.images, args.count, args.start)
    if args.target == "label":
        if labels is None:
            raise InputError("--target label: the images have no labels; use --target pred.")
        targets = labels
    elif args.target == "pred":
        targets = None
    elif args.target.lstrip("-").isdigit():
        targets = np.full(len(images), int(args.target), np.int32)
    else:
        raise InputError(f"--target {args.target!r}: give 'label', 'pred' or a class index.")
    metrics = list(METRICS) if args.metrics == "all" else [m.strip() for m in args.metrics.split(",") if m.strip()]
    options = {} if args.full else {k: dict(v) for k, v in QUICK_OPTIONS.items()}
    for metric, values in _overrides(args.set).items():
        options.setdefault(metric, {}).update(values)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    report = evaluate(model, variables, images, targets, methods=methods, metrics=metrics, key=jax.random.key(args.seed),
                      preset=args.preset, options=options, batch_size=args.batch_size, progress=not args.quiet,
                      out_dir=args.out)
    print(report.to_markdown())
    print(f"wrote {args.out}/results.csv, results.md and plots")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m xai_jax.evaluation.cli``) until the main CLI wires it."""
    import xai_jax  # noqa: F401  - installs the XLA:CPU guard before any array exists

    from ..core.errors import XaiJaxError

    parser = argparse.ArgumentParser(prog="xai-jax")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except XaiJaxError as err:
        print(f"xai-jax: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
