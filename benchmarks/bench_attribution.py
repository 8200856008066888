"""Attribution speed: xai_jax vs Captum on the same weights, and vs the floor of plain jax.grad.

Run:  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python benchmarks/bench_attribution.py
(`--quick` for a smoke run with tiny settings.)  Prints a markdown table; the README records it.

Methods (batch 32 of the shipped MNIST CNN): IG 50 steps (Gauss-Legendre), SmoothGrad 50 samples,
occlusion 4x4 stride 2, Grad-CAM at conv4.  The floor is what the method cannot avoid: one plain
jitted ``jax.grad`` over the whole expanded batch (steps x B for IG, samples x B for SmoothGrad, B
for Grad-CAM) or, for occlusion, the plain jitted forward passes of every occluded copy.  The guard
rows compare IG with the XLA:CPU guard on and off (a subprocess, since the flag is read when the
backend starts) and with XLA's own max-pool gradient instead of the trace engine's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from common import REPO, shipped_cnn_and_batch, table, timeit


def ig_only(batch: int, steps: int, repeats: int) -> float:
    import jax.numpy as jnp

    import xai_jax as xj

    model, variables, x, _ = shipped_cnn_and_batch(batch)
    return timeit(lambda: xj.integrated_gradients(model, variables, jnp.asarray(x), 0, steps=steps), repeats)[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ig-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch, steps, samples, repeats = (4, 4, 4, 1) if args.quick else (32, 50, 50, 5)
    if args.ig_only:
        print(json.dumps({"ms": ig_only(batch, steps, repeats)}))
        return

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    import xai_jax as xj
    from tests import twins
    from xai_jax.attribution.gradient import target_gradient
    from xai_jax.core.problem import prepare

    torch.set_num_threads(os.cpu_count() or 1)
    model, variables, x_np, origin = shipped_cnn_and_batch(batch)
    x = jnp.asarray(x_np)
    tmodel = twins.mnist_cnn_torch(variables)
    tx = twins.to_torch(x_np)
    targets = np.asarray(jnp.argmax(model.apply(variables, x), -1))
    tt = torch.as_tensor(targets.copy())
    from captum.attr import IntegratedGradients, LayerGradCam, NoiseTunnel, Occlusion, Saliency

    logits = lambda z: model.apply(variables, z)
    plain_grad = jax.jit(lambda z, t: jax.grad(lambda u: jnp.sum(logits(u)[jnp.arange(u.shape[0]), t]))(z))
    plain_forward = jax.jit(lambda z: logits(z))
    windows = 13 * 13
    rows = []

    def add(name, ours, captum, floor):
        o, c, f = timeit(ours, repeats)[1], timeit(captum, repeats)[1], timeit(floor, repeats)[1]
        rows.append((name, f"{o:.0f}", f"{c:.0f}", f"{f:.0f}", f"{c / o:.2f}x", f"{o / f:.2f}"))

    tile = lambda n: (jnp.tile(x, (n, 1, 1, 1)), jnp.tile(jnp.asarray(targets), n))
    ig_x, ig_t = tile(steps)
    add(
        f"IG, {steps} steps",
        lambda: xj.integrated_gradients(model, variables, x, targets, steps=steps),
        lambda: IntegratedGradients(tmodel).attribute(tx, target=tt, n_steps=steps, method="gausslegendre"),
        lambda: plain_grad(ig_x, ig_t),
    )
    sg_x, sg_t = tile(samples)
    add(
        f"SmoothGrad, {samples} samples",
        lambda: xj.smoothgrad(model, variables, x, targets, key=jax.random.key(0), samples=samples, stdev=0.1),
        lambda: NoiseTunnel(Saliency(tmodel)).attribute(
            tx, nt_type="smoothgrad", nt_samples=samples, stdevs=0.1, target=tt, abs=False
        ),
        lambda: plain_grad(sg_x, sg_t),
    )
    oc_x = jnp.tile(x, (windows, 1, 1, 1))
    add(
        "Occlusion 4x4, stride 2",
        lambda: xj.occlusion(model, variables, x, targets, window=(4, 4), strides=(2, 2)),
        lambda: Occlusion(tmodel).attribute(
            tx, sliding_window_shapes=(1, 4, 4), strides=(1, 2, 2), target=tt, perturbations_per_eval=64
        ),
        lambda: plain_forward(oc_x),
    )
    add(
        "Grad-CAM (conv4)",
        lambda: xj.grad_cam(model, variables, x, targets, layer="conv4"),
        lambda: LayerGradCam(tmodel, tmodel.conv4).attribute(tx, target=tt, relu_attributions=True),
        lambda: plain_grad(x, jnp.asarray(targets)),
    )
    print(
        f"# Attribution benchmark ({origin}), batch {batch}, {jax.devices()[0].platform}, {os.cpu_count()} cores; "
        f"median of {repeats}\n"
    )
    print(table(rows, ("method", "xai_jax ms", "Captum ms", "floor ms", "speed-up vs Captum", "xai_jax / floor")))

    # The XLA:CPU guard and the max-pool gradient, measured on IG in the same run.
    problem, inputs = prepare(model, variables, ig_x, jnp.asarray(ig_t))
    # Inputs go in as arguments: closed-over arrays would be constants that XLA tries to fold.
    fast_fn = jax.jit(lambda i: target_gradient(problem, i, i.x, i.indices))
    xla_pool_fn = jax.jit(lambda i: target_gradient(problem, i, i.x, i.indices, rules={}))
    fast, xla_pool = (lambda: fast_fn(inputs)), (lambda: xla_pool_fn(inputs))
    guarded = timeit(lambda: xj.integrated_gradients(model, variables, x, 0, steps=steps), repeats)[1]
    env = {**os.environ, "XAI_JAX_DISABLE_CPU_GUARD": "1"}
    env.pop("XLA_FLAGS", None)
    run = subprocess.run(
        [sys.executable, __file__, "--ig-only"] + (["--quick"] if args.quick else []),
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO / "benchmarks",
    )
    if run.returncode:
        raise RuntimeError(run.stderr[-2000:])
    unguarded = json.loads(run.stdout.strip().splitlines()[-1])["ms"]
    rows2 = [
        ("IG, guard on (XLA flag set)", f"{guarded:.0f}"),
        ("IG, guard off (default XLA:CPU flags; wrong numbers possible)", f"{unguarded:.0f}"),
        (f"gradient of {steps}x{batch} inputs, fast max-pool gradient", f"{timeit(fast, repeats)[1]:.0f}"),
        (
            f"gradient of {steps}x{batch} inputs, XLA's select_and_scatter gradient",
            f"{timeit(xla_pool, repeats)[1]:.0f}",
        ),
    ]
    print("\n" + table(rows2, ("variant", "ms")))


if __name__ == "__main__":
    main()
