"""Metric speed: xai_jax.evaluation vs Quantus 0.6 on the same PyTorch twin, same images, same attributions.

Run:  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python benchmarks/bench_evaluation.py
      (``--quick``: 32 images, 2 methods, 20 sensitivity samples: a smoke run of a few minutes)

Pixel flipping (one pixel per step, Quantus' default: 784 forward passes per image), ROAD (50
percentages, noisy linear imputation) and max-sensitivity (200 uniform draws, each explained again)
on ``--images`` MNIST test digits for 5 methods, with Quantus' defaults on both sides
(``xe.preset("quantus", ...)``).  Model: ``--model tiny`` (default: the TinyCNN twin of tests/twins.py)
or ``mnist_cnn`` (the shipped CNN and its twin; ~30× the compute per forward pass).  The
attributions for pixel flipping and ROAD are computed once by xai_jax and handed to both sides;
for max-sensitivity each side explains with its own library (xai_jax methods vs the same methods in
Captum, which Quantus calls).  Times are wall-clock of the steady state (xai_jax's compilation is
timed separately on a first batch and reported in its own column); ``--quantus-images N`` runs
Quantus on the first N images only and scales its time to all images (its cost is linear in the
number of images: fixed batches of 64); torch runs on ``--torch-threads``
threads (default 1: on this 2-core machine one thread was faster than two for these batch sizes).

The floor column, in the same run: the model evaluations the metric needs and nothing else, as one
jitted ``lax.map`` of plain JAX over chunks of random images (forward passes for pixel flipping:
784 + 1 per image; ROAD: one per percentage; gradients of the target logit for max-sensitivity:
samples x the method's gradients per map, 16 for integrated gradients, 1 for the others, in chunks
of the size ours uses).  ``xai_jax / floor`` is what ours spends beyond the model.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import warnings

from common import REPO, table  # noqa: F401  (puts the repo on sys.path)

METHODS = ("gradient", "saliency", "input_x_gradient", "integrated_gradients", "guided_backprop")


def images(n: int, data: str | None):
    import numpy as np

    import xai_jax as xj

    try:
        x, y = xj.data.mnist("test", path=data)
        origin = "MNIST test split"
    except Exception:
        x, y = xj.data.mnist("sample")
        origin = "bundled sample (repeated)"
    reps = -(-n // len(x))
    return np.tile(np.asarray(x), (reps, 1, 1, 1))[:n], np.tile(np.asarray(y), reps)[:n].astype(np.int64), origin


def ours_and_captum(name: str, torch_model):
    """The xai_jax method and the same method as a Quantus ``explain_func`` through Captum."""
    import numpy as np
    import torch
    from captum.attr import GuidedBackprop, InputXGradient, IntegratedGradients, Saliency

    import xai_jax as xj

    ours = {
        "gradient": xj.gradient,
        "saliency": xj.saliency,
        "input_x_gradient": xj.input_x_gradient,
        "integrated_gradients": functools.partial(xj.integrated_gradients, steps=16, method="riemann_trapezoid"),
        "guided_backprop": xj.guided_backprop,
    }[name]

    def explain(model, inputs, targets, **_):
        x = torch.tensor(np.asarray(inputs, np.float32), requires_grad=True)
        t = torch.as_tensor(np.asarray(targets))
        if name == "gradient":
            a = Saliency(model).attribute(x, target=t, abs=False)
        elif name == "saliency":
            a = Saliency(model).attribute(x, target=t, abs=True)
        elif name == "input_x_gradient":
            a = InputXGradient(model).attribute(x, target=t)
        elif name == "integrated_gradients":
            a = IntegratedGradients(model).attribute(x, target=t, n_steps=16, method="riemann_trapezoid")
        else:
            a = GuidedBackprop(model).attribute(x, target=t)
        return a.detach().numpy()

    return ours, explain


def run_xai_jax(metric, model, variables, x, y, attributions, method, key, options, s):
    """One batch ``s`` of ``metric`` with xai_jax (the method only for max-sensitivity)."""
    import jax.numpy as jnp

    from xai_jax import evaluation as xe

    xs, ys, a = jnp.asarray(x[s]), jnp.asarray(y[s]), jnp.asarray(attributions[s])
    if metric == "max_sensitivity":
        return xe.max_sensitivity(model, variables, xs, ys, method, key=key, attributions=a, **options)
    return getattr(xe, metric)(model, variables, xs, ys, a, key=key, **options)


def model_floor(metric, name, model, variables, n, options, sens_samples, batch):
    """Seconds of plain jitted JAX for the model evaluations ``metric`` needs on ``n`` images."""
    import jax

    from xai_jax.evaluation._common import PERTURBED_IMAGES_PER_PASS

    if metric == "max_sensitivity":
        per_map = 16 if name == "integrated_gradients" else 1
        count = n * sens_samples * per_map
        chunk = max(1, PERTURBED_IMAGES_PER_PASS // batch) * batch * per_map
    else:
        count = n * (
            784 // options["features_per_step"] + 1 if metric == "pixel_flipping" else len(options["percentages"])
        )
        chunk = PERTURBED_IMAGES_PER_PASS
    chunks = -(-count // chunk)
    xs = jax.random.uniform(jax.random.key(2), (chunks, chunk, 28, 28, 1))

    def target_logit(images):
        return model.apply(variables, images)[:, 3].sum()

    evaluate = jax.grad(target_logit) if metric == "max_sensitivity" else lambda images: model.apply(variables, images)
    run = jax.jit(lambda xs: jax.lax.map(evaluate, xs))
    jax.block_until_ready(run(xs))  # compile
    return timed(lambda: run(xs))


def timed(fn):
    import jax

    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--model", choices=("tiny", "mnist_cnn"), default="tiny")
    parser.add_argument("--methods", default=None, help="comma-separated subset of " + ",".join(METHODS))
    parser.add_argument("--metrics", default="pixel_flipping,road,max_sensitivity")
    parser.add_argument(
        "--quantus-images",
        type=int,
        default=None,
        help="run Quantus on the first N images only and report its time per image (default: all)",
    )
    parser.add_argument("--skip-quantus", action="store_true", help="time xai_jax and the floor only")
    parser.add_argument("--batch", type=int, default=100, help="images per xai_jax call")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--data", default=None, help="MNIST .npz (default: xj.data's search path)")
    args = parser.parse_args()
    n = args.images or (32 if args.quick else 1000)
    methods = args.methods.split(",") if args.methods else (METHODS[:2] if args.quick else METHODS)
    metrics = args.metrics.split(",")
    sens_samples = 20 if args.quick else 200

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    import xai_jax as xj
    from tests import twins
    from xai_jax import evaluation as xe

    warnings.filterwarnings("ignore")
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid
    import quantus

    torch.set_num_threads(args.torch_threads)
    if args.model == "tiny":
        model, variables, torch_model = twins.make_tiny_cnn(0)
    else:
        model, variables = xj.models.load("mnist_cnn")
        torch_model = twins.mnist_cnn_torch(variables)
    x, y, origin = images(n, args.data)
    nq = min(args.quantus_images or n, n)
    nchw = np.ascontiguousarray(x[:nq].transpose(0, 3, 1, 2))
    batches = [slice(s, s + args.batch) for s in range(0, n, args.batch)]
    key = jax.random.key(0)
    print(
        f"{n} images ({origin}; Quantus on the first {nq}, its times scaled to {n}), model {args.model}, methods "
        f"{', '.join(methods)}, jax {jax.__version__}, "
        f"torch {torch.__version__} ({args.torch_threads} thread(s)), quantus {quantus.__version__}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
        flush=True,
    )

    rows, totals = [], {"ours": 0.0, "quantus": 0.0}
    for name in methods:
        ours_method, captum_explain = ours_and_captum(name, torch_model)
        attributions = np.concatenate(
            [np.asarray(ours_method(model, variables, jnp.asarray(x[s]), jnp.asarray(y[s]))) for s in batches]
        )
        a_nchw = np.ascontiguousarray(attributions[:nq].transpose(0, 3, 1, 2))
        for metric in metrics:
            options = xe.preset("quantus", metric)
            if metric == "max_sensitivity":
                options["samples"] = sens_samples
                quantus_metric = quantus.MaxSensitivity(
                    nr_samples=sens_samples, disable_warnings=True, return_aggregate=False
                )
                quantus_kwargs = {"explain_func": captum_explain}
            else:
                cls = quantus.PixelFlipping if metric == "pixel_flipping" else quantus.ROAD
                quantus_metric = cls(
                    disable_warnings=True, **({"return_aggregate": False} if metric == "pixel_flipping" else {})
                )
                quantus_kwargs = {}
            run_ours = functools.partial(
                run_xai_jax, metric, model, variables, x, y, attributions, ours_method, key, options
            )
            run_quantus = functools.partial(
                quantus_metric,
                model=torch_model,
                x_batch=nchw,
                y_batch=y[:nq],
                a_batch=a_nchw,
                device="cpu",
                batch_size=64,
                **quantus_kwargs,
            )
            compile_s = timed(functools.partial(run_ours, batches[0]))  # first call: compilation + one batch
            ours_s = sum(timed(functools.partial(run_ours, s)) for s in batches)
            start = time.perf_counter()
            if not args.skip_quantus:
                run_quantus()
            quantus_s = (time.perf_counter() - start) * n / nq  # per-image time × n when Quantus ran on nq
            floor_s = model_floor(metric, name, model, variables, n, options, sens_samples, args.batch)
            totals["ours"] += ours_s
            totals["quantus"] += quantus_s
            rows.append(
                (
                    name,
                    metric,
                    f"{ours_s:.1f}",
                    f"{1e3 * ours_s / n:.2f}",
                    f"{compile_s:.1f}",
                    *(
                        ("—", "—", "—")
                        if args.skip_quantus
                        else (f"{quantus_s:.1f}", f"{1e3 * quantus_s / n:.2f}", f"{quantus_s / ours_s:.1f}×")
                    ),
                    f"{floor_s:.1f}",
                    f"{ours_s / floor_s:.2f}",
                )
            )
            print(table(rows[-1:], HEADER).splitlines()[-1], flush=True)
    print()
    print(table(rows, HEADER))
    if not args.skip_quantus:
        print(
            f"\nall: xai_jax {totals['ours']:.0f} s, Quantus {totals['quantus']:.0f} s, "
            f"ratio {totals['quantus'] / totals['ours']:.1f}×"
        )


HEADER = (
    "method",
    "metric",
    "xai_jax s",
    "xai_jax ms/image",
    "compile s",
    "Quantus s",
    "Quantus ms/image",
    "speed-up",
    "floor s",
    "xai_jax / floor",
)

if __name__ == "__main__":
    sys.exit(main())
