"""Run in a subprocess by :mod:`tests.nnx.test_sharding` (the device count is fixed when the backend
starts): ``python -m tests.nnx.sharding_check METHOD...`` prints one JSON line per method comparing a
batch sharded over an 8-device mesh with unsharded runs."""

from __future__ import annotations

import json
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import xai_jax as xj
from tests import twins
from tests.nnx import nnx_twins
from tests.nnx.common import max_relative_difference, options_for, run

LAYER = {"cam": "block"}
COLLECTIVE = re.compile(r"= \S+ (all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)\(")


def small_vit(batch: int) -> tuple[object, object, np.ndarray]:
    """A small ViT with random weights (the attention family needs attention) and a random batch."""
    from xai_jax.models.transformers import ViT

    model = ViT(image_size=28, patch=7, dim=32, depth=2, heads=2, mlp_dim=64, num_classes=10)
    x = np.asarray(jax.random.uniform(jax.random.key(3), (batch, 28, 28, 1)))
    return model, model.init(jax.random.key(4), jnp.asarray(x[:1])), x


def main(names: list[str]) -> None:
    pair = nnx_twins.make("ResBNNet")
    devices = jax.devices()
    batch = len(devices)
    target = np.arange(batch) % 10
    sharding = NamedSharding(Mesh(np.array(devices), ("batch",)), PartitionSpec("batch"))
    vit, vit_variables, vit_x = small_vit(batch)
    cnn_x = twins.random_input(pair.linen, batch=batch, seed=3)
    for name in names:
        if name.endswith("@vit"):
            model, variables, x = vit, vit_variables, vit_x
        elif name.endswith("@nnx"):
            model, variables, x = pair.nnx_model, None, cnn_x
        else:
            model, variables, x = pair.linen, pair.variables, cnn_x
        xs = jax.device_put(jnp.asarray(x), sharding)
        name = name.removesuffix("@nnx").removesuffix("@vit")
        layer = LAYER.get(name, "block/bn1+relu")
        sharded = run(name, model, variables, xs, target, layer)
        whole = run(name, model, variables, x, target, layer)
        slices = [run(name, model, variables, x[i : i + 1], target[i : i + 1], layer) for i in range(batch)]
        per_device = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *slices)
        lowered = xj.METHODS[name].lower(model, variables, xs, target, **options_for(name, layer))
        collectives = COLLECTIVE.findall(lowered.compile().as_text())
        leaves = jax.tree_util.tree_leaves(sharded)
        print(
            json.dumps(
                {
                    "method": name,
                    "nnx": model is pair.nnx_model,
                    "vit": model is vit,
                    "devices": batch,
                    "vs_whole_batch": max_relative_difference(whole, sharded),
                    "vs_per_device_slices": max_relative_difference(per_device, sharded),
                    "kept_sharding": all(leaf.sharding.is_equivalent_to(sharding, leaf.ndim) for leaf in leaves),
                    "collectives": collectives,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
