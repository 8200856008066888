"""Which integrated-gradients quadrature: completeness error against steps, on the shipped ReLU CNN.

Run:  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python benchmarks/ig_quadrature.py [--quick]

For 64 sample digits (target: the predicted class, baseline 0) prints the median and the 90th
percentile over images of |Σ IG − (f(x) − f(0))| / |f(x) − f(0)|, in %, for every quadrature and
step count.  Accuracy, not speed: the numbers do not depend on the machine's load.
"""

from __future__ import annotations

import argparse

from common import shipped_cnn_and_batch, table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count, step_counts = (8, (8, 16)) if args.quick else (64, (8, 16, 32, 64, 128))

    import jax.numpy as jnp
    import numpy as np

    import xai_jax as xj

    model, variables, x_np, origin = shipped_cnn_and_batch(count)
    x = jnp.asarray(x_np)
    logits = model.apply(variables, x)
    target = jnp.argmax(logits, -1)
    delta = np.abs(
        np.asarray(
            logits[jnp.arange(count), target] - model.apply(variables, jnp.zeros_like(x))[jnp.arange(count), target]
        )
    )
    rows = []
    for quadrature in xj.attribution.QUADRATURES:
        cells = [quadrature]
        for steps in step_counts:
            _, error = xj.integrated_gradients(
                model, variables, x, target, steps=steps, method=quadrature, return_error=True
            )
            relative = 100 * np.abs(np.asarray(error)) / delta
            cells.append(f"{np.median(relative):.2f} / {np.percentile(relative, 90):.2f}")
        rows.append(tuple(cells))
    print(f"completeness error, % of |f(x) - f(0)|, median / 90th percentile over {count} digits ({origin})")
    print(table(rows, ("quadrature", *[f"{s} steps" for s in step_counts])))


if __name__ == "__main__":
    main()
