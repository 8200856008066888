"""Feature-visualization speed: all classes at once vs one at a time vs the seed's PyTorch loop.

Run:  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python benchmarks/bench_featureviz.py
(`--quick` for a smoke run; `--steps N`.)  Prints a markdown table; the README records it.

Task: pixel-space activation maximisation of the 10 classes of the shipped MNIST CNN, ``steps``
Adam updates (lr 0.05) of log p(c | x), clipped to [0, 1] after each update, no early stop (every
run does the same number of updates), the same initial noise everywhere.

Rows:
* xai_jax, 10 classes at once: one call, one jitted ``lax.scan`` vmapped over the targets;
* xai_jax, one class at a time: 10 calls (compiled once, for one target);
* xai_jax without the loop-friendly conv gradient (``fast_gradients=False``): JAX's own conv
  transpose inside the scan (XLA:CPU's slow path, see ``xai_jax/trace/xla_cpu.py``);
* PyTorch, the seed's approach: a Python loop with ``torch.optim.Adam`` per class, batch of one, on
  the PyTorch twin of the same weights; and the same loop with the 10 classes in one batch.
The final images of JAX (all at once) and of the PyTorch loop are compared: same model, same
optimiser, same initial images, so they must agree (up to float32 rounding amplified by the steps).
"""

from __future__ import annotations

import argparse
import os
import time

from common import shipped_cnn_and_batch, table, timeit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    steps = args.steps or (5 if args.quick else 100)
    repeats = 1 if args.quick else 3

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from tests import twins
    from xai_jax import featureviz as fv
    from xai_jax.featureviz import engine
    from xai_jax.featureviz.activation_maximization import pixel_problem

    model, variables, _, origin = shipped_cnn_and_batch(1)
    classes = list(range(10))
    lr = 0.05
    init = np.asarray(jax.random.normal(jax.random.key(0), (10, 28, 28, 1)) * 0.1, np.float32)
    optimizer = engine.default_optimizer(lr)
    options = dict(steps=steps, optimizer=optimizer, regularizers=[fv.Clip(0.0, 1.0)])

    def jax_all():
        return fv.activation_maximization(model, variables, classes, init=init, **options).images

    def jax_one_by_one():
        return [
            fv.activation_maximization(model, variables, [c], init=init[c : c + 1], **options).images for c in classes
        ]

    spec, data, params = pixel_problem(
        model,
        variables,
        classes,
        shape=None,
        layer=None,
        learning_rate=lr,
        init=init,
        init_scale=0.1,
        threshold=None,
        class_score="log_softmax",
        num_images=1,
        key=None,
        chunk=None,
        progress=False,
        model_kwargs=None,
        **options,
    )
    import dataclasses

    slow_spec = dataclasses.replace(spec, fast_gradients=False)

    def jax_slow_conv():
        return engine.optimize(slow_spec, data, params, steps).images

    tmodel = twins.mnist_cnn_torch(variables).eval()
    for p in tmodel.parameters():
        p.requires_grad_(False)
    tinit = twins.to_torch(init).clamp(0.0, 1.0)  # xai_jax projects the initial images too

    def torch_loop(batched: bool):
        groups = [list(range(10))] if batched else [[c] for c in classes]
        out = []
        for group in groups:
            x = tinit[group].clone().requires_grad_(True)
            target = torch.as_tensor(group)
            opt = torch.optim.Adam([x], lr=lr)
            for _ in range(steps):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(tmodel(x), target, reduction="sum")
                loss.backward()
                opt.step()
                with torch.no_grad():
                    x.clamp_(0.0, 1.0)
            out.append(x.detach())
        return torch.cat(out)

    jax_images = np.asarray(jax_all())
    torch_images = twins.to_numpy_nhwc(torch_loop(False))
    difference = float(np.abs(jax_images - torch_images).max())
    probabilities = np.asarray(
        jax.nn.softmax(model.apply(variables, jnp.asarray(jax_images)))[np.arange(10), np.arange(10)]
    )

    def torch_timed(batched):
        """Torch on its best thread count (1 or all cores, picked on a 5-step probe): on a shared
        machine torch's spinning threads can lose 5x when oversubscribed, a fault of the machine,
        not of the seed's approach.  One timed run (it is the slow one)."""
        nonlocal steps
        full, steps = steps, 5
        probes = {}
        for threads in sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(threads)
            start = time.perf_counter()
            torch_loop(batched)
            probes[threads] = time.perf_counter() - start
        steps = full
        threads = min(probes, key=probes.get)
        torch.set_num_threads(threads)
        start = time.perf_counter()
        torch_loop(batched)
        return (time.perf_counter() - start) * 1e3, threads

    rows = []
    t_all = timeit(jax_all, repeats)[1]
    rows.append(("xai_jax, 10 classes at once (one scan)", f"{t_all:.0f}", "1.00x"))
    t_seq = timeit(jax_one_by_one, repeats)[1]
    rows.append(("xai_jax, one class at a time (10 calls)", f"{t_seq:.0f}", f"{t_seq / t_all:.2f}x"))
    t_slow = timeit(jax_slow_conv, 1)[1]
    rows.append(("xai_jax, 10 at once, JAX's own conv gradient in the scan", f"{t_slow:.0f}", f"{t_slow / t_all:.2f}x"))
    t_torch, threads = torch_timed(False)
    rows.append(
        (
            f"PyTorch loop + torch.optim.Adam, one class at a time (the seed; {threads} thread(s))",
            f"{t_torch:.0f}",
            f"{t_torch / t_all:.2f}x",
        )
    )
    t_torch_b, threads = torch_timed(True)
    rows.append(
        (
            f"PyTorch loop + torch.optim.Adam, 10 classes in one batch ({threads} thread(s))",
            f"{t_torch_b:.0f}",
            f"{t_torch_b / t_all:.2f}x",
        )
    )
    print(
        f"Pixel-space AM, 10 MNIST classes, {steps} Adam steps, clip [0, 1], {origin}; "
        f"jax {jax.__version__}, torch {torch.__version__}, {os.cpu_count()} CPU cores; median of {repeats}"
    )
    print(table(rows, ("run", "ms (total)", "relative to 10 at once")))
    print(
        f"\nmax |JAX − PyTorch| over the final images: {difference:.2e}; "
        f"p(class) after {steps} steps: min {probabilities.min():.4f}"
    )


if __name__ == "__main__":
    main()
