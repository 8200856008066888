"""Bounded memory at what cost: integrated gradients whole vs in chunks, and the automatic chunk.

Run:  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python benchmarks/bench_memory.py [--quick]

IG on 32 shipped-MNIST-CNN digits with ``batch_size=None`` (every path point in one vmapped pass),
``batch_size=k`` (chunks of k path points in a ``lax.scan`` with the loop-friendly convolution
gradient) and ``"auto"`` (the chunk chosen from the memory budget).  Memory is XLA's own account of
the compiled computation (``compiled.memory_analysis()``: temporaries plus outputs), so it is exact
for the program, not a sampled process peak.
"""

from __future__ import annotations

import argparse

from common import shipped_cnn_and_batch, table, timeit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    batch, steps, repeats = (4, 8, 1) if args.quick else (32, 50, 5)

    import jax.numpy as jnp

    import xai_jax as xj
    from xai_jax.core.batching import memory_budget

    model, variables, x_np, origin = shipped_cnn_and_batch(batch)
    x = jnp.asarray(x_np)
    rows = []
    base = None
    for label, size in [("all at once (None)", None), ("chunks of 10", 10), ("chunks of 25", 25), ("auto", "auto")]:

        def run(size=size):
            return xj.integrated_gradients(model, variables, x, 0, steps=steps, batch_size=size)

        lowered = xj.integrated_gradients.lower(model, variables, x, 0, steps=steps, batch_size=size)
        stats = lowered.compile().memory_analysis()
        megabytes = (stats.temp_size_in_bytes + stats.output_size_in_bytes) / 2**20
        ms = timeit(run, repeats)[1]
        base = base or ms
        rows.append((label, f"{ms:.0f}", f"{ms / base:.2f}", f"{megabytes:.0f}"))
    print(f"IG, {steps} steps, batch {batch} ({origin}); memory budget {memory_budget() / 2**20:.0f} MiB")
    print(table(rows, ("batch_size", "ms (median)", "time / all-at-once", "XLA memory MiB")))


if __name__ == "__main__":
    main()
