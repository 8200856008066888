"""``xai-jax``: the command line.  The only module that wires every part of the package together.

xai-jax explain            # offline report: shipped MNIST CNN, bundled sample, every method
xai-jax explain --model cam_cnn --methods gradient,integrated_gradients --count 4 --out report
xai-jax train mnist_cnn    # train a zoo model on ../shared/data/mnist.npz into ./xai_jax_checkpoints
xai-jax layers --model mnist_cnn
xai-jax methods
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# ------------------------------------------------------------------------------ argument types
# argparse reports a bad value as "xai-jax explain: error: argument --count: ..." with exit code 2,
# before anything is loaded.


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _seed(text: str) -> int:
    value = _int(text)
    if not 0 <= value < 2**32:  # jax.random.key wraps larger seeds (2**32 gives seed 0's numbers)
        raise argparse.ArgumentTypeError(f"must be an integer in 0..{2**32 - 1}, got {text!r}")
    return value


def _mc_samples(text: str) -> int:
    value = _int(text)
    if value < 0 or value == 1:  # one mask gives a std of exactly 0: a map that says nothing
        raise argparse.ArgumentTypeError(f"must be 0 (off) or at least 2 dropout masks, got {text!r}")
    return value


def _target(text: str) -> str | int:
    if text in ("pred", "label"):
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'pred', 'label' or a class index, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a class index is 0 or more, got {text!r}")
    return value  # its upper bound is the model's: checked once the model is loaded


# ------------------------------------------------------------------------------------ input data


def _read_images(spec: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(images, labels or None, where)`` as stored, unchecked."""
    from . import data
    from .core.errors import DataError

    if spec in {"sample", "test", "validation", "train"}:
        images, labels = data.mnist(spec)
        return images, labels, f"MNIST {spec!r}"
    path = Path(spec)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise DataError(f"--images {spec!r} {what}: give 'sample', 'test', 'validation', 'train', or a .npz/.npy file.")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded, None, str(path)
        with loaded as archive:
            key = next((k for k in ("images", "x", "x_test") if k in archive.files), None)
            if key is None:
                raise DataError(f"{path} has no 'images', 'x' or 'x_test' array (found {sorted(archive.files)}).")
            label_key = next((k for k in ("labels", "y", "y_test") if k in archive.files), None)
            return archive[key], None if label_key is None else archive[label_key], str(path)
    except DataError:
        raise
    except Exception as err:  # numpy raises several unrelated types on foreign, pickled or corrupt files
        raise DataError(f"--images {path}: not a readable .npy/.npz array file ({type(err).__name__}: {err}).") from err


def _shape_hint(shape: tuple[int, ...], expected: tuple[int, ...]) -> str:
    """Why a batch of ``shape`` does not fit a model taking ``(N, *expected)`` images, and the fix."""
    h, w, c = expected if len(expected) == 3 else (None, None, None)
    if shape == expected or (c == 1 and shape == expected[:2]):
        return " It looks like one image without a batch axis: save x[None]."
    if len(shape) == 4 and shape[1:] == (c, h, w):
        return " It looks like NCHW (channels first); the model takes NHWC: save x.transpose(0, 2, 3, 1)."
    if len(shape) == 4 and shape[1:3] == (h, w):
        fix = " (RGB to grayscale: x.mean(-1, keepdims=True))" if (shape[3], c) == (3, 1) else ""
        return f" It has {shape[3]} channels, the model takes {c}{fix}."
    return ""


def _checked_images(
    images: Any,
    labels: Any,
    where: str,
    start: int,
    count: int,
    expected: tuple[int, ...],
    num_classes: int,
    quiet: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The selected images as float32 ``(N, *expected)`` in [0, 1] and their labels, checked like
    :func:`xai_jax.data.mnist` checks a file: a report on wrongly scaled, NaN or mislabelled images
    would look plausible and mean nothing."""
    from .core.errors import DataError

    images = np.asarray(images)
    if images.dtype.kind not in "uif":
        raise DataError(f"{where}: images have dtype {images.dtype}; expected uint8 0..255 or floats in [0, 1].")
    if images.ndim == len(expected) and expected[-1] == 1 and images.shape[1:] == expected[:-1]:
        images = images[..., None]  # grayscale stored without its channel axis
    if images.ndim != len(expected) + 1 or images.shape[1:] != expected:
        takes = ", ".join(map(str, expected))
        raise DataError(
            f"{where}: images have shape {images.shape}; the model takes (N, {takes})."
            + _shape_hint(images.shape, expected)
        )
    total = len(images)
    if total == 0:
        raise DataError(f"{where}: no images.")
    if start >= total:
        raise DataError(f"--start {start} is past the last image: {where} holds {total} (indices 0..{total - 1}).")
    selected = images[start : start + count]
    if len(selected) < count and not quiet:
        print(f"note: {where} holds {total} images; explaining the {len(selected)} from index {start}.")
    if images.dtype.kind in "ui":
        if selected.min() < 0 or selected.max() > 255:
            raise DataError(f"{where}: integer pixels outside 0..255 (found {selected.min()}..{selected.max()}).")
        selected = selected.astype(np.float32) / np.float32(255)
    else:
        selected = selected.astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(selected).reshape(len(selected), -1).all(axis=1))
        if bad.size:
            which = ", ".join(str(start + i) for i in bad[:8])
            raise DataError(f"{where}: image(s) {which} contain NaN or infinite pixels.")
        low, high = float(selected.min()), float(selected.max())
        if low < 0 or high > 1:
            fix = "scale them to [0, 1] (x / 255)" if low >= 0 and high <= 255 else "the model takes pixels in [0, 1]"
            raise DataError(f"{where}: float pixels outside [0, 1] (found {low:g}..{high:g}); {fix}.")
    if labels is None:
        return selected, None
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != total:
        raise DataError(f"{where}: labels have shape {labels.shape}; expected ({total},) class indices (not one-hot).")
    if labels.dtype.kind not in "ui":
        raise DataError(f"{where}: labels have dtype {labels.dtype}; expected integer class indices.")
    chosen = labels[start : start + count]
    if chosen.min() < 0 or chosen.max() >= num_classes:
        raise DataError(
            f"{where}: labels outside 0..{num_classes - 1}, the model's classes (found {chosen.min()}..{chosen.max()})."
        )
    return selected, chosen.astype(np.int32)


def _default_layer(model: Any, variables: Any, x: np.ndarray) -> str | None:
    """The CAM layer: for a vision transformer (attention softmaxes in the trace), the normalisation
    that feeds the last attention (pytorch-grad-cam's ``blocks[-1].norm1``: later token layers reach
    the head through the class token only) when its tokens form a patch grid; otherwise the last
    layer with a spatial (B, h, w, c) output, after its activation when one follows (``conv4+relu``:
    the rectified maps, the usual Grad-CAM choice)."""
    from .attribution.cam import token_grid
    from .core.errors import InputError
    from .trace import layers
    from .trace.layers import SOFTMAX

    listed = list(layers(model, variables, x[:1]))
    softmaxes = [i for i, layer in enumerate(listed) if layer.type == SOFTMAX]
    if softmaxes:
        norms = [
            layer
            for layer in listed[: softmaxes[-1]]
            if layer.type in ("LayerNorm", "RMSNorm") and layer.shape is not None and len(layer.shape) == 3
        ]
        if norms:
            try:
                token_grid(norms[-1].shape[1], tuple(x.shape))  # type: ignore[index]
                return norms[-1].name
            except InputError:
                pass
    spatial = [layer for layer in listed if layer.shape is not None and len(layer.shape) == 4 and layer.type != SOFTMAX]
    return spatial[-1].name if spatial else None


def _method_options(info: Any, layer: str | None, seed: int) -> dict[str, Any]:
    """The options the report runs ``info`` with: its report settings, plus what it needs (a layer,
    a key) supplied from the command line; a need the report cannot supply skips the method."""
    import jax

    from .core.errors import InputError

    options: dict[str, Any] = dict(info.report_options)
    for name, kind in info.needs.items():
        if kind == "layer":
            if layer is None:
                raise InputError(f"{info.name} needs a layer and the model has no spatial layer; pass --layer")
            options[name] = layer
        elif kind == "key":
            options[name] = jax.random.key(seed)
        else:
            raise InputError(f"{info.name} needs {name} ({kind}), which the report cannot supply")
    return options


def _explain_mc(
    args: argparse.Namespace,
    model: Any,
    variables: Any,
    images: np.ndarray,
    target: Any,
    names: list[str],
    layer: str | None,
    maps: dict[str, np.ndarray],
    signed: dict[str, bool],
    skipped: dict[str, str],
) -> None:
    """Mean and std of every method over ``--mc-samples`` dropout masks (the same masks for all)."""
    import jax

    from . import uncertainty
    from .attribution import upsample
    from .core import METHODS

    options = {}
    for name in names:
        try:
            options[name] = _method_options(METHODS[name], layer, args.seed)
            options[name].pop("return_error", None)  # the mean and std of maps only
        except ValueError as err:
            skipped[name] = str(err)
    results, not_applicable = uncertainty.explain_mc_methods(
        list(options),
        model,
        variables,
        images,
        target,
        samples=args.mc_samples,
        key=jax.random.key(args.seed),
        options=options,
    )
    skipped.update(not_applicable)
    for name, result in results.items():
        info = METHODS[name]
        mean, std = result.mean, result.std
        if info.resolution == "layer":
            mean, std = upsample(mean, images.shape), upsample(std, images.shape)
        maps[f"{name} (MC mean)"], signed[f"{name} (MC mean)"] = np.asarray(mean), info.signed
        maps[f"{name} (MC std)"], signed[f"{name} (MC std)"] = np.asarray(std), False


def _method_names(spec: str) -> list[str]:
    from .core import METHODS
    from .core.errors import InputError

    if spec == "all":
        return list(METHODS)
    names = list(dict.fromkeys(m.strip() for m in spec.split(",") if m.strip()))
    if not names:
        raise InputError(
            f"--methods {spec!r} names no method; give comma-separated names (see `xai-jax methods`) or 'all'."
        )
    for name in names:
        METHODS[name]  # an unknown name raises UnknownNameError with the closest names, before any work
    return names


def _classifier(name: str, checkpoint: str | None) -> tuple[Any, Any, tuple[int, ...], int]:
    """``(model, variables, input shape, number of classes)`` of a zoo classifier."""
    import jax

    from . import models
    from .core.errors import InputError
    from .models import zoo
    from .models.mnist import example_input

    entry = zoo.ZOO.get(name)
    if entry is not None and entry.kind != "classifier":
        classifiers = ", ".join(n for n, e in zoo.ZOO.items() if e.kind == "classifier")
        raise InputError(
            f"--model {name} is a {entry.kind} ({entry.description}); the report explains a classifier's "
            f"class scores on images: choose one of {classifiers}."
        )
    model, variables = models.load(name, path=checkpoint)
    example = example_input(model)
    out = jax.eval_shape(model.apply, variables, example)  # shapes only: nothing runs
    if len(example.shape) != 4 or getattr(out, "ndim", 0) != 2:
        raise InputError(
            f"--model {name} maps {tuple(example.shape)} to {getattr(out, 'shape', out)}; "
            "the report needs images (B, H, W, C) in and class scores (B, K) out."
        )
    return model, variables, tuple(example.shape[1:]), int(out.shape[-1])


def _target_for(spec: str | int, labels: np.ndarray | None, num_classes: int) -> Any:
    from .core.errors import TargetError

    if spec == "pred":
        return None
    if spec == "label":
        if labels is None:
            raise TargetError("--target label: these images carry no labels; use --target pred or a class index.")
        return labels
    if not 0 <= int(spec) < num_classes:
        raise TargetError(
            f"--target {spec} is out of range: the model has {num_classes} classes (0..{num_classes - 1})."
        )
    return int(spec)


def _check_layer(layer: str | None, model: Any, variables: Any, images: np.ndarray) -> None:
    from .core.errors import LayerNotFoundError, unknown_name_message
    from .trace import layers

    if layer is not None:
        listed = layers(model, variables, images[:1])
        if layer not in listed.names():
            raise LayerNotFoundError(unknown_name_message("layer", layer, listed.names()))


def explain(args: argparse.Namespace) -> Path:
    import jax
    import jax.numpy as jnp
    from tqdm import tqdm

    from . import uncertainty, viz
    from .attribution import upsample
    from .core import METHODS
    from .core.errors import InputError, UnsupportedError

    # Every check that can fail runs before the first method: a bad option must not cost a minute of compute.
    viz.check_report_dir(args.out, overwrite=args.overwrite)
    names = _method_names(args.methods)
    model, variables, input_shape, num_classes = _classifier(args.model, args.checkpoint)
    raw_images, raw_labels, where = _read_images(args.images)
    images, labels = _checked_images(
        raw_images, raw_labels, where, args.start, args.count, input_shape, num_classes, args.quiet
    )
    target = _target_for(args.target, labels, num_classes)
    _check_layer(args.layer, model, variables, images)

    logits = model.apply(variables, jnp.asarray(images))
    probabilities = np.asarray(jax.nn.softmax(logits, axis=-1))
    predictions = probabilities.argmax(-1)
    layer = args.layer or _default_layer(model, variables, images)
    maps: dict[str, np.ndarray] = {}
    signed: dict[str, bool] = {}
    timings: dict[str, str] = {}
    skipped: dict[str, str] = {}
    notes: dict[str, str] = {}
    if args.mc_samples > 0:
        _explain_mc(args, model, variables, images, target, names, layer, maps, signed, skipped)
        probabilities = np.asarray(
            uncertainty.mc_dropout(
                model, variables, jnp.asarray(images), samples=args.mc_samples, key=jax.random.key(args.seed)
            ).mean
        )
        predictions = probabilities.argmax(-1)
        names = []  # every map came from the Monte-Carlo run
    for name in tqdm(names, desc="methods", unit="method", disable=args.quiet):
        info = METHODS[name]
        start = time.perf_counter()
        try:
            options = _method_options(info, layer, args.seed)
            result = info(model, variables, images, target, **options)
        except (InputError, UnsupportedError) as err:  # does not apply to this model (e.g. CAM without GAP)
            skipped[name] = str(err)
            continue
        if isinstance(result, tuple):  # (map, completeness error per image), e.g. integrated gradients
            result, error = result
            errors = np.asarray(error)
            notes[f"{name}: completeness error per image"] = ", ".join(f"{e:+.3g}" for e in errors)
        if info.resolution == "layer":
            result = upsample(result, images.shape)
        maps[name] = np.asarray(jax.block_until_ready(result))
        signed[name] = info.signed
        timings[name] = f"{(time.perf_counter() - start) * 1e3:.0f} ms (incl. compilation)"
    if not maps:  # a report of nothing but "skipped" lines must not pass for a successful run
        reasons = "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
        raise UnsupportedError(f"no method produced a map, so no report was written. {reasons}")
    index = viz.write_report(
        args.out,
        images=images,
        labels=labels if labels is not None else np.full(len(images), -1),
        predictions=predictions,
        probabilities=probabilities[np.arange(len(images)), predictions],
        maps=maps,
        signed=signed,
        title=f"xai_jax report: {args.model} on {args.images}",
        extra={
            "model": args.model,
            "target": str(args.target),
            "layer (CAM family)": str(layer),
            **{f"time {k}": v for k, v in timings.items()},
            **notes,
            **{f"skipped {k}": v for k, v in skipped.items()},
        },
        overwrite=args.overwrite,
    )
    if not args.quiet:
        for name, reason in skipped.items():
            print(f"skipped {name}: {reason}")
        print(f"wrote {index}")
    return index


def evaluate(args: argparse.Namespace) -> Path:
    """``xai-jax evaluate``: methods × metrics (:func:`xai_jax.evaluation.evaluate`), table and plots."""
    import jax

    from .evaluation import METRICS
    from .evaluation import evaluate as run_evaluation
    from .evaluation.cli import QUICK_OPTIONS, parse_settings
    from .evaluation.runner import LAYOUT
    from .viz.output import check_folder

    # As for explain: everything that can be refused is refused before the first method runs.
    check_folder(args.out, LAYOUT, overwrite=args.overwrite)
    names = _method_names(args.methods)
    metrics = (
        list(METRICS)
        if args.metrics == "all"
        else list(dict.fromkeys(m.strip() for m in args.metrics.split(",") if m.strip()))
    )
    for metric in metrics:
        METRICS[metric]  # an unknown name raises UnknownNameError with the closest names
    options = {} if args.full else {k: dict(v) for k, v in QUICK_OPTIONS.items() if k in metrics}
    for metric, values in parse_settings(args.set).items():
        options.setdefault(metric, {}).update(values)
    model, variables, input_shape, num_classes = _classifier(args.model, args.checkpoint)
    raw_images, raw_labels, where = _read_images(args.images)
    images, labels = _checked_images(
        raw_images, raw_labels, where, args.start, args.count, input_shape, num_classes, args.quiet
    )
    target = _target_for(args.target, labels, num_classes)
    targets = None if target is None else np.broadcast_to(np.asarray(target, np.int32), (len(images),))
    report = run_evaluation(
        model,
        variables,
        images,
        targets,
        methods=names,
        metrics=metrics,
        key=jax.random.key(args.seed),
        preset=args.preset,
        options=options,
        batch_size=args.batch_size,
        progress=not args.quiet,
        out_dir=args.out,
        overwrite=args.overwrite,
    )
    if not args.quiet:
        print(report.to_markdown())
        print(f"wrote {args.out}/results.csv, results.md and plots/")
    return Path(args.out)


def train(args: argparse.Namespace) -> None:
    from .models import zoo
    from .models.checkpoint import read_manifest
    from .models.train import SETTINGS, output_dir
    from .models.train import train as train_model

    out = output_dir(args.out, replace_shipped=args.replace_shipped)
    entry = train_model(
        args.model,
        data_path=args.data,
        epochs=args.epochs,
        seed=args.seed,
        out_dir=out,
        replace_shipped=args.replace_shipped,
    )
    score = f", test accuracy {100 * entry['test_accuracy']:.2f} %" if "test_accuracy" in entry else ""
    written = read_manifest(out)["models"]
    for name in SETTINGS[args.model].pair or (args.model,):  # a GAN trains and writes both halves
        path = out.absolute() / written[name]["file"]
        print(f"wrote {path} (entry {name!r} in {path.parent / 'manifest.json'}){score if name == args.model else ''}")
        if args.replace_shipped:
            continue
        if zoo.ZOO[name].kind == "classifier":
            print(f"  explain it: xai-jax explain --model {name} --checkpoint {path}")
        print(f"  load it: xj.models.load({name!r}, path={str(path)!r})")


def list_layers(args: argparse.Namespace) -> None:
    from . import models
    from .trace import layers

    model, variables = models.load(args.model, path=args.checkpoint)
    x = np.zeros((1, *getattr(model, "input_shape", (28, 28, 1))), np.float32)
    print(layers(model, variables, x))


def list_models(args: argparse.Namespace) -> None:
    from .models import zoo

    shipped = zoo.available()
    for name in zoo.names():
        if name in shipped:
            entry = zoo.info(name)
            accuracy = entry.get("test_accuracy")
            shown = f"test accuracy {100 * accuracy:.2f} %" if isinstance(accuracy, (int, float)) else "shipped"
        else:
            shown = f"no checkpoint (train it: xai-jax train {name})"
        print(f"{name:<26} {zoo.ZOO[name].cls.__name__:<22} {shown}")


def list_methods(args: argparse.Namespace) -> None:
    from .core import METHODS

    for name, info in METHODS.items():
        print(f"{name:<28} {info.family:<14} {'signed' if info.signed else 'magnitude':<10} {info.summary}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xai-jax", description="Interpretability for JAX/Flax models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("explain", help="compute every registered method on a few images and write an HTML report")
    p.add_argument("--model", default="mnist_cnn", help="zoo model name (see `xai-jax models`)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint file for --model (default: the shipped one)")
    p.add_argument("--images", default="sample", help="'sample' (bundled), 'test' (full MNIST), or a .npz/.npy file")
    p.add_argument("--count", type=_positive_int, default=8, help="number of images")
    p.add_argument("--start", type=_non_negative_int, default=0, help="index of the first image")
    p.add_argument("--methods", default="all", help="comma-separated method names, or 'all'")
    p.add_argument("--target", type=_target, default="pred", help="'pred' (predicted class), 'label', or a class index")
    p.add_argument(
        "--layer",
        default=None,
        help="layer for layer-resolution methods, e.g. conv4 or conv4+relu "
        "(default: the last spatial layer, after its activation)",
    )
    p.add_argument("--seed", type=_seed, default=0, help="seed for stochastic methods")
    p.add_argument(
        "--mc-samples",
        type=_mc_samples,
        default=0,
        help="N >= 2: explain under N Monte-Carlo dropout masks and show mean and std maps "
        "(needs a model with dropout, e.g. mc_dropout_cnn)",
    )
    p.add_argument(
        "--out",
        default="xai_jax_report",
        help="output folder: new, empty, or an earlier report (replaced as a whole); anything else is refused",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="also write into a folder holding other files; they are kept "
        "(files named like the report's own are still refused)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=explain)

    from .evaluation.cli import DEFAULT_METHODS, DEFAULT_METRICS

    p = sub.add_parser(
        "evaluate",
        help="score explanation methods with faithfulness, robustness, randomisation and "
        "complexity metrics; writes a table (CSV + Markdown) and plots",
    )
    p.add_argument("--model", default="mnist_cnn", help="zoo model name (see `xai-jax models`)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint file for --model (default: the shipped one)")
    p.add_argument("--images", default="sample", help="'sample' (bundled), 'test' (full MNIST), or a .npz/.npy file")
    p.add_argument("--count", type=_positive_int, default=64, help="number of images")
    p.add_argument("--start", type=_non_negative_int, default=0, help="index of the first image")
    p.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated method names, or 'all'")
    p.add_argument("--metrics", default=DEFAULT_METRICS, help="comma-separated metric names, or 'all'")
    p.add_argument(
        "--preset",
        default="xai_jax",
        choices=("xai_jax", "quantus", "captum"),
        help="metric options: this package's defaults, Quantus 0.6's or Captum's",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="the preset as is, without the quick settings (every pixel, 200 sensitivity samples...)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="METRIC.OPTION=VALUE",
        help="override one metric option (a Python literal), e.g. --set road.noise=0.05",
    )
    p.add_argument("--target", type=_target, default="label", help="'label', 'pred' (predicted class) or a class index")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--seed", type=_seed, default=0, help="seed for the metrics' random draws")
    p.add_argument(
        "--out",
        default="xai_jax_evaluation",
        help="output folder: new, empty, or an earlier evaluation (replaced as a whole)",
    )
    p.add_argument("--overwrite", action="store_true", help="also write into a folder holding other files (kept)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no table on stdout")
    p.set_defaults(func=evaluate)

    p = sub.add_parser("train", help="train a zoo model on MNIST and write its checkpoint")
    p.add_argument("model")
    p.add_argument("--data", default=None, help="MNIST .npz or IDX folder (default: ../shared/data/mnist.npz)")
    p.add_argument("--epochs", type=_positive_int, default=None)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--out", default=None, help="output folder (default: ./xai_jax_checkpoints)")
    p.add_argument(
        "--replace-shipped",
        action="store_true",
        help="replace the shipped checkpoint that `xj.models.load(NAME)` reads; "
        "the old file and manifest entry are kept in checkpoints/backups/",
    )
    p.set_defaults(func=train)

    p = sub.add_parser("layers", help="list a zoo model's layers with their output shapes")
    p.add_argument("--model", default="mnist_cnn")
    p.add_argument("--checkpoint", default=None)
    p.set_defaults(func=list_layers)

    p = sub.add_parser("models", help="list the zoo models and which have a shipped checkpoint")
    p.set_defaults(func=list_models)

    p = sub.add_parser("methods", help="list the registered methods")
    p.set_defaults(func=list_methods)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import xai_jax  # installs the XLA:CPU guard before any array exists

    xai_jax.tune_cpu_malloc()  # our own process: reuse XLA:CPU's scratch memory between calls
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage error (or --help): return its code, as below
        return exit_.code if isinstance(exit_.code, int) else 2
    from .core.errors import XaiJaxError

    try:
        args.func(args)
    except XaiJaxError as err:
        print(f"xai-jax: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
