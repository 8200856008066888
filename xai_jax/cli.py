"""``xai-jax``: the command line.  The only module that wires every part of the package together.

    xai-jax explain            # offline report: shipped MNIST CNN, bundled sample, every method
    xai-jax explain --model cam_cnn --methods gradient,integrated_gradients --count 4 --out report
    xai-jax train mnist_cnn    # train a zoo model on ../shared/data/mnist.npz (or --data PATH)
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


def _load_images(spec: str, count: int, start: int) -> tuple[np.ndarray, np.ndarray | None]:
    from . import data
    from .core.errors import DataError

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
                key = next((k for k in ("images", "x", "x_test") if k in archive), None)
                if key is None:
                    raise DataError(f"{path} has no 'images', 'x' or 'x_test' array (found {sorted(archive.files)}).")
                images = archive[key]
                labels = next((archive[k] for k in ("labels", "y", "y_test") if k in archive), None)
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        if images.ndim == 3:
            images = images[..., None]
    images = images[start : start + count].astype(np.float32)
    labels = None if labels is None else np.asarray(labels[start : start + count]).astype(np.int32)
    if len(images) == 0:
        raise DataError(f"no images selected (start={start}, count={count}).")
    return images, labels


def _default_layer(model: Any, variables: Any, x: np.ndarray) -> str | None:
    """The last layer with a spatial (B, h, w, c) output, after its activation when one follows
    (``conv4+relu``: the rectified maps, the usual Grad-CAM choice)."""
    from .trace import layers

    spatial = [layer for layer in layers(model, variables, x[:1]) if layer.shape is not None and len(layer.shape) == 4]
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


def _explain_mc(args: argparse.Namespace, model: Any, variables: Any, images: np.ndarray, target: Any, names: list[str],
                layer: str | None, maps: dict[str, np.ndarray], signed: dict[str, bool], skipped: dict[str, str]) -> None:
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
        list(options), model, variables, images, target, samples=args.mc_samples, key=jax.random.key(args.seed), options=options)
    skipped.update(not_applicable)
    for name, result in results.items():
        info = METHODS[name]
        mean, std = result.mean, result.std
        if info.resolution == "layer":
            mean, std = upsample(mean, images.shape), upsample(std, images.shape)
        maps[f"{name} (MC mean)"], signed[f"{name} (MC mean)"] = np.asarray(mean), info.signed
        maps[f"{name} (MC std)"], signed[f"{name} (MC std)"] = np.asarray(std), False


def explain(args: argparse.Namespace) -> Path:
    import jax
    import jax.numpy as jnp
    from tqdm import tqdm

    from . import models, uncertainty, viz
    from .attribution import upsample
    from .core import METHODS
    from .core.errors import InputError, UnsupportedError

    model, variables = models.load(args.model, path=args.checkpoint)
    images, labels = _load_images(args.images, args.count, args.start)
    logits = model.apply(variables, jnp.asarray(images))
    probabilities = np.asarray(jax.nn.softmax(logits, axis=-1))
    predictions = probabilities.argmax(-1)
    if args.target == "pred":
        target: Any = None
    elif args.target == "label":
        if labels is None:
            raise SystemExit("--target label: these images carry no labels")
        target = labels
    else:
        target = int(args.target)
    names = list(METHODS) if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    layer = args.layer or _default_layer(model, variables, images)
    maps: dict[str, np.ndarray] = {}
    signed: dict[str, bool] = {}
    timings: dict[str, str] = {}
    skipped: dict[str, str] = {}
    notes: dict[str, str] = {}
    if args.mc_samples > 0:
        _explain_mc(args, model, variables, images, target, names, layer, maps, signed, skipped)
        probabilities = np.asarray(uncertainty.mc_dropout(model, variables, jnp.asarray(images), samples=args.mc_samples, key=jax.random.key(args.seed)).mean)
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
    out = Path(args.out)
    index = viz.write_report(
        out,
        images=images,
        labels=labels if labels is not None else np.full(len(images), -1),
        predictions=predictions,
        probabilities=probabilities[np.arange(len(images)), predictions],
        maps=maps,
        signed=signed,
        title=f"xai_jax report: {args.model} on {args.images}",
        extra={"model": args.model, "target": args.target, "layer (CAM family)": str(layer), **{f"time {k}": v for k, v in timings.items()}, **notes,
               **{f"skipped {k}": v for k, v in skipped.items()}},
    )
    if not args.quiet:
        for name, reason in skipped.items():
            print(f"skipped {name}: {reason}")
        print(f"wrote {index}")
    return index


def train(args: argparse.Namespace) -> None:
    from .models.train import train as train_model

    entry = train_model(args.model, data_path=args.data, epochs=args.epochs, seed=args.seed, out_dir=args.out)
    print(entry)


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
    p.add_argument("--count", type=int, default=8, help="number of images")
    p.add_argument("--start", type=int, default=0, help="index of the first image")
    p.add_argument("--methods", default="all", help="comma-separated method names, or 'all'")
    p.add_argument("--target", default="pred", help="'pred' (predicted class), 'label', or a class index")
    p.add_argument("--layer", default=None, help="layer for layer-resolution methods, e.g. conv4 or conv4+relu (default: the last spatial layer, after its activation)")
    p.add_argument("--seed", type=int, default=0, help="seed for stochastic methods")
    p.add_argument("--mc-samples", type=int, default=0,
                   help="N > 0: explain under N Monte-Carlo dropout masks and show mean and std maps (needs a model with dropout, e.g. mc_dropout_cnn)")
    p.add_argument("--out", default="xai_jax_report", help="output folder")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=explain)

    p = sub.add_parser("train", help="train a zoo model on MNIST and write its checkpoint")
    p.add_argument("model")
    p.add_argument("--data", default=None, help="MNIST .npz or IDX folder (default: ../shared/data/mnist.npz)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default: the repo's checkpoints/)")
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
    import xai_jax  # noqa: F401  - installs the XLA:CPU guard before any array exists

    args = build_parser().parse_args(argv)
    from .core.errors import XaiJaxError

    try:
        args.func(args)
    except XaiJaxError as err:
        print(f"xai-jax: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
