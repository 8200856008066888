"""Throughput of attribution on a batch sharded over 1, 2, 4 and 8 (simulated) devices.

Run:  python benchmarks/bench_sharding.py  (``--quick`` for a smoke run).  Each device count runs in its
own process, because XLA fixes the number of CPU devices when the backend starts
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``).  Model: the shipped MNIST CNN; methods:
gradient, integrated gradients (32 steps, chunks of 8), SmoothGrad (16 samples), occlusion (7x7
windows, stride 7), on a batch of 32 sharded with ``NamedSharding(Mesh(devices, ("batch",)), P("batch"))``.
Prints a markdown table of images per second (median of the timed repeats) and whether the maps equal
the one-device maps.

What a CPU can and cannot show: simulated CPU devices are partitions of one process on the same
cores.  This machine has 2 cores, so at best 2 devices can run at once; 4 and 8 devices can only add
partitioning overhead.  The table shows that sharded runs give the same maps, keep the sharding, and
what the overhead of partitioning is -- not the speed-up of real accelerators, where each device
brings its own compute and memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

METHODS = {
    "gradient": {},
    "integrated_gradients": {"steps": 32, "batch_size": 8},
    "smoothgrad": {"samples": 16, "key": "key"},
    "occlusion": {"window": (7, 7), "strides": (7, 7)},
}


def child(batch: int, repeats: int) -> None:
    import statistics
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    import xai_jax as xj

    model, variables = xj.models.load("mnist_cnn")
    images, labels = xj.data.mnist("sample")
    x, y = jnp.asarray(images[:batch]), jnp.asarray(labels[:batch])
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("batch",)), PartitionSpec("batch"))
    xs = jax.device_put(x, sharding)
    rows = {}
    for name, options in METHODS.items():
        options = {k: jax.random.key(0) if v == "key" else v for k, v in options.items()}
        method = xj.METHODS[name]
        out = jax.block_until_ready(method(model, variables, xs, y, **options))  # compile
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(method(model, variables, xs, y, **options))
            times.append(time.perf_counter() - start)
        rows[name] = {
            "images_per_s": batch / statistics.median(times),
            "map": np.asarray(out).tolist(),
            "kept": out.sharding.is_equivalent_to(sharding, out.ndim),
        }
    print(json.dumps({"devices": len(jax.devices()), "rows": rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 8, 1 repeat, 1 and 2 devices")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.child is not None:
        child(args.batch, args.repeats)
        return
    import numpy as np

    counts = (1, 2) if args.quick else (1, 2, 4, 8)
    batch, repeats = (8, 1) if args.quick else (args.batch, args.repeats)
    results = {}
    for n in counts:
        env = dict(
            os.environ, XLA_FLAGS=f"--xla_cpu_experimental_ynn_fusion_type= --xla_force_host_platform_device_count={n}"
        )
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(n), "--batch", str(batch), "--repeats", str(repeats)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        results[n] = json.loads(done.stdout.strip().splitlines()[-1])["rows"]
    print(f"batch {batch}, shipped mnist_cnn, images/s (median of {repeats}); max |map - 1-device map| / max |map|\n")
    print(
        "| method | "
        + " | ".join(f"{n} device{'s' * (n > 1)}" for n in counts)
        + " | max rel. diff vs 1 device | sharding kept |"
    )
    print("|---|" + "---|" * (len(counts) + 2))
    for name in METHODS:
        one = np.asarray(results[counts[0]][name]["map"])
        diff = max(
            float(np.max(np.abs(np.asarray(results[n][name]["map"]) - one)) / float(np.max(np.abs(one))))
            for n in counts
        )
        kept = all(results[n][name]["kept"] for n in counts if n > 1)
        print(
            f"| {name} | "
            + " | ".join(f"{results[n][name]['images_per_s']:.1f}" for n in counts)
            + f" | {diff:.1e} | {'yes' if kept else 'NO'} |"
        )


if __name__ == "__main__":
    main()
