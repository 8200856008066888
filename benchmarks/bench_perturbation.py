"""Perturbation speed: KernelSHAP and RISE in xai_jax vs Captum, shap and TorchRay on the same weights.

Run:  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python benchmarks/bench_perturbation.py
(``--quick`` for a smoke run: 2 images, 64 coalitions, 128 masks.)  Prints a markdown table.

Workload (the issue's): the shipped MNIST CNN on 32 sample digits, each explaining its predicted
class.

* KernelSHAP, 2,000 sampled coalitions per image over 7 x 7 grid cells (49 features, baseline 0):
  ``xj.kernel_shap`` (all images and coalitions as chunked vmapped forward passes and 32 regressions
  in one jitted call) vs Captum ``KernelShap`` (``n_samples=2002``: its two endpoints included,
  250 perturbations per forward call) vs ``shap.KernelExplainer`` (one explainer per image over the
  49 binary features, ``nsamples=2002``, ``l1_reg=False``), both on the PyTorch twin.
* RISE, 4,000 masks of 7 x 7 cells: ``xj.rise`` (masks drawn on the device, chunked) vs TorchRay's
  ``rise`` (its own masks, batches of 250), with TorchRay's normalisation and sigmoid score on our side.

* The floor, in the same run: one jitted ``lax.map`` of plain forward passes over the same number of
  masked images (images x coalitions or masks, in chunks of the same size as ours, masks built
  beforehand): what any implementation must spend on the model alone.  ``time / floor`` says how
  much of ours is anything else (sampling, mask upsampling, the regression).

Every number is one timed run after a warm-up call (ours: on the same shapes, so compilation is
excluded and reported separately as the first call; the references: a small call that builds
torch's kernels); torch uses every core.  ``batch_size="auto"`` sizes our chunks
from the memory budget (1 GiB): the chunk and its estimated memory are printed, and the peak memory
of our calls is bounded by it whatever the number of coalitions or masks.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
from common import shipped_cnn_and_batch, table


def timed(fn: Any) -> tuple[float, Any]:
    import jax

    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-references", action="store_true", help="time xai_jax only")
    args = parser.parse_args()
    images, coalitions, masks = (2, 64, 128) if args.quick else (32, 2000, 4000)

    import jax
    import jax.numpy as jnp
    import torch

    import xai_jax as xj
    from tests import twins
    from xai_jax.core.batching import estimate_bytes, memory_budget

    torch.set_num_threads(os.cpu_count() or 1)
    model, variables, x_np, origin = shipped_cnn_and_batch(images)
    x = jnp.asarray(x_np)
    targets = np.asarray(jnp.argmax(model.apply(variables, x), -1))
    tmodel = twins.mnist_cnn_torch(variables)
    tx = twins.to_torch(x_np)
    features = xj.perturbation.Grid(cell=4)
    labels = np.asarray(xj.perturbation.feature_mask(x_np, features).labels[0, ..., 0])
    m = int(labels.max()) + 1
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []

    def chunk_note(name: str, element: Any, count: int) -> int:
        per_element = estimate_bytes(element, *[np.zeros((), np.float32)])
        chunk = max(1, min(count, memory_budget() // max(per_element, 1)))
        notes.append(
            f"{name}: {count} elements, ~{per_element / 2**20:.1f} MiB each -> chunks of {chunk} "
            f"(~{chunk * per_element / 2**20:.0f} MiB) under the {memory_budget() / 2**20:.0f} MiB budget"
        )
        return chunk

    def floor(count: int, chunk: int) -> float:
        """Seconds for ``count`` masked copies of every image through the plain jitted forward pass."""
        chunks = -(-count // chunk)
        keep = jax.random.bernoulli(jax.random.key(1), 0.5, (chunks, chunk, *x.shape[1:])).astype(x.dtype)

        @jax.jit
        def scores(keep):
            def one_chunk(k):
                logits = model.apply(variables, (k[:, None] * x[None]).reshape(-1, *x.shape[1:]))
                return logits.reshape(chunk, len(x), -1)[:, jnp.arange(len(x)), targets]

            return jax.lax.map(one_chunk, keep)

        jax.block_until_ready(scores(keep))  # compile
        seconds, _ = timed(lambda: scores(keep))
        return seconds

    def floor_row(method: str, count: int, chunk: int, ours: float) -> tuple[str, ...]:
        seconds = floor(count, chunk)
        return (
            method,
            "",
            f"floor: {len(x) * count:,} plain forward passes",
            f"{seconds:.1f}",
            "",
            f"ours / floor {ours / seconds:.2f}",
        )

    # ---- KernelSHAP -------------------------------------------------------------------------------
    def ours_kernel_shap():
        return xj.kernel_shap(
            model, variables, x, targets, key=jax.random.key(0), features=features, samples=coalitions
        )

    first, _ = timed(ours_kernel_shap)
    ours, _attr = timed(ours_kernel_shap)
    forward = jax.jit(lambda z: model.apply(variables, jnp.broadcast_to(z, x.shape)))
    chunk = chunk_note("kernel_shap", lambda s: forward(s * x), coalitions)
    rows.append(
        ("KernelSHAP", f"{images} x {coalitions} coalitions", "xai_jax", f"{ours:.1f}", f"{first:.1f}", "1.00x")
    )
    rows.append(floor_row("KernelSHAP", coalitions, chunk, ours))

    if not args.skip_references:
        from captum.attr import KernelShap

        mask = torch.as_tensor(labels[None, None].astype(np.int64))

        def captum_kernel_shap(count: int, n: int) -> np.ndarray:
            return (
                KernelShap(tmodel)
                .attribute(
                    tx[:count],
                    baselines=0.0,
                    target=torch.as_tensor(targets[:count]),
                    feature_mask=mask,
                    n_samples=n + 2,
                    perturbations_per_eval=250,
                )
                .numpy()
            )

        captum_kernel_shap(1, 16)  # warm-up: torch's first calls build their kernels
        captum_time, _ = timed(lambda: captum_kernel_shap(images, coalitions))
        rows.append(("KernelSHAP", "", "Captum KernelShap", f"{captum_time:.1f}", "", f"{captum_time / ours:.2f}x"))

        import shap

        flat_labels = labels.reshape(-1)

        def shap_one(b: int) -> np.ndarray:
            image = x_np[b]

            def f(z: np.ndarray) -> np.ndarray:
                keep = z[:, flat_labels].reshape(len(z), *image.shape[:2], 1).astype(np.float32)
                with torch.no_grad():
                    out = tmodel(twins.to_torch(keep * image[None]))
                return out[:, int(targets[b])].numpy()

            explainer = shap.KernelExplainer(f, np.zeros((1, m)))
            return explainer.shap_values(np.ones((1, m)), nsamples=coalitions + 2, l1_reg=False, silent=True)

        shap_one(0)  # warm-up
        shap_time, _ = timed(lambda: [shap_one(b) for b in range(images)])
        rows.append(("KernelSHAP", "", "shap KernelExplainer", f"{shap_time:.1f}", "", f"{shap_time / ours:.2f}x"))

    # ---- RISE -------------------------------------------------------------------------------------
    def ours_rise():
        return xj.rise(
            model,
            variables,
            x,
            targets,
            key=jax.random.key(0),
            samples=masks,
            cells=7,
            normalization="torchray",
            score="sigmoid",
        )

    first, _ = timed(ours_rise)
    ours, _ = timed(ours_rise)
    chunk = chunk_note("rise", lambda s: forward(s * x), masks)
    rows.append(("RISE", f"{images} x {masks} masks", "xai_jax", f"{ours:.1f}", f"{first:.1f}", "1.00x"))
    rows.append(floor_row("RISE", masks, chunk, ours))
    if not args.skip_references:
        try:
            from torchray.attribution.rise import rise as torchray_rise
        except ImportError:
            notes.append("TorchRay is not installed (pip install torchray): no RISE reference")
        else:
            torchray_rise(tmodel, tx[:1], num_masks=16, num_cells=7, batch_size=16)  # warm-up
            torchray_time, _ = timed(
                lambda: torchray_rise(tmodel, tx, num_masks=masks, num_cells=7, batch_size=250).numpy()
            )
            rows.append(("RISE", "", "TorchRay rise", f"{torchray_time:.1f}", "", f"{torchray_time / ours:.2f}x"))

    print(
        f"model: {origin}; {images} images; CPU threads: {os.cpu_count()}; jax {jax.__version__}, torch "
        f"{torch.__version__}"
    )
    print(table(rows, ("method", "work", "implementation", "seconds", "first call (s)", "time / xai_jax")))
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
