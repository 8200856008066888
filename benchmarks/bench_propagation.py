"""Relevance propagation speed: xai_jax vs Zennit (LRP) and Captum (DeepLIFT) on the same weights,
same batch, same run, and vs the floor of one plain jitted ``jax.grad``.

Run:  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python benchmarks/bench_propagation.py
(``--quick`` for a smoke run.)  Prints a markdown table; the README records it.

Models: the shipped MNIST CNN (4 convs, 2 max-pools, 2 dense; PyTorch twin with the same weights),
the TinyCNN twin and the residual+BatchNorm twin of ``tests/twins.py``.  Methods: LRP with Zennit's
``EpsilonPlusFlat`` (BatchNorm merged on both sides), LRP-ε on every layer (the cheapest rule: the
lower bound of any composite), DeepLIFT rescale with a zero baseline (Captum ``DeepLift``).  The
floor is ``jax.grad`` of the summed target logits of the batch, jitted, on the same model.
"""

from __future__ import annotations

import argparse
import os
import warnings

from common import shipped_cnn_and_batch, table


def interleaved(fns, repeats):
    """Median wall time (ms) of each ``fns[name]()``, timed round-robin after one warm-up each."""
    import statistics
    import time

    import jax

    for fn in fns.values():
        jax.block_until_ready(fn())
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    batch, repeats = (4, 1) if args.quick else (64, 15)

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from captum.attr import DeepLift
    from zennit import canonizers as zcan
    from zennit import composites as zc
    from zennit.attribution import Gradient

    import xai_jax.propagation as P
    from tests import twins

    warnings.filterwarnings("ignore")
    torch.set_num_threads(os.cpu_count() or 1)
    model, variables, x_np, origin = shipped_cnn_and_batch(batch)
    cases = [(f"MNIST CNN ({origin})", model, variables, twins.mnist_cnn_torch(variables), x_np, False)]
    for name in ("TinyCNN", "ResBNNet"):
        m, v, t = twins.make(name)
        cases.append((name, m, v, t, twins.random_input(m, batch), name == "ResBNNet"))

    rows = []
    for label, m, v, t, x_np, has_bn in cases:
        x = jnp.asarray(x_np)
        targets = np.asarray(jnp.argmax(m.apply(v, x), -1))
        tt = torch.as_tensor(targets.astype(np.int64))
        tx = twins.to_torch(x_np, requires_grad=True)
        n = x.shape[0]
        floor_fn = jax.jit(lambda z, t, m=m, v=v, n=n: jax.grad(lambda u: jnp.sum(m.apply(v, u)[jnp.arange(n), t]))(z))
        canon = [zcan.SequentialMergeBatchNorm()] if has_bn else None
        one_hot = torch.nn.functional.one_hot(tt, 10).float()
        dl = DeepLift(t, multiply_by_inputs=True)
        baseline = torch.zeros_like(tx)
        eps_composite = P.MapComposite(types={"linear": P.Epsilon()})
        with Gradient(model=t, composite=zc.EpsilonPlusFlat(canonizers=canon)) as attributor:
            # interleaved: every round times each contender once, so load changes hit all alike
            ms = interleaved(
                {
                    "floor": lambda: floor_fn(x, jnp.asarray(targets)),
                    "lrp": lambda: P.lrp(m, v, x, targets, composite=P.EpsilonPlusFlat()),
                    "zennit": lambda: attributor(tx, lambda out: one_hot * out)[1],
                    "lrp_eps": lambda: P.lrp(m, v, x, targets, composite=eps_composite),
                    "deeplift": lambda: P.deeplift(m, v, x, targets),
                    "captum": lambda: dl.attribute(tx, baseline, target=tt),
                },
                repeats,
            )
        floor = ms["floor"]
        rows.append(
            (
                label,
                "LRP EpsilonPlusFlat",
                f"{ms['lrp']:.1f}",
                f"Zennit {ms['zennit']:.1f}",
                f"{floor:.1f}",
                f"{ms['zennit'] / ms['lrp']:.2f}x",
                f"{ms['lrp'] / floor:.2f}",
            )
        )
        rows.append(
            (
                label,
                "LRP-ε (every layer)",
                f"{ms['lrp_eps']:.1f}",
                "",
                f"{floor:.1f}",
                "",
                f"{ms['lrp_eps'] / floor:.2f}",
            )
        )
        rows.append(
            (
                label,
                "DeepLIFT rescale",
                f"{ms['deeplift']:.1f}",
                f"Captum {ms['captum']:.1f}",
                f"{floor:.1f}",
                f"{ms['captum'] / ms['deeplift']:.2f}x",
                f"{ms['deeplift'] / floor:.2f}",
            )
        )

    print(
        f"# Propagation benchmark, batch {batch}, {jax.devices()[0].platform}, {os.cpu_count()} cores; median of "
        f"{repeats} (ms)\n"
    )
    print(
        table(
            rows,
            ("model", "method", "xai_jax", "reference", "jax.grad floor", "speed-up vs reference", "xai_jax / floor"),
        )
    )


if __name__ == "__main__":
    main()
