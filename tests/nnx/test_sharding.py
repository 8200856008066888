"""A batch sharded over a mesh of 8 (simulated CPU) devices gives the same maps as one device and
keeps its sharding, for every family of the registry.

The device count is fixed when the backend starts, so the check runs in a subprocess
(:mod:`tests.nnx.sharding_check`) with ``--xla_force_host_platform_device_count=8``.

What is asserted, per method:

* the result keeps the batch sharding;
* deterministic methods: each device explains its own examples (``shard_map`` over the batch axis):
  the same numbers as one device given those examples (``<= 1e-6``; measured: identical) and no
  collective in the compiled program, so an expansion (IG steps, occlusion windows) is split along the
  batch, never along the chunk;
* against one device given the *whole* batch, ``<= 1e-5``: XLA:CPU picks batch-size-dependent kernels,
  so float32 results differ in the last bits between a batch of 8 and a batch of 1 with no sharding at
  all (measured 4.3e-6 for occlusion on TinyCNN, whose map is a difference of logits), and these tests
  must not depend on kernel choice;
* SmoothGrad draws its noise for the whole batch: it runs as one sharded program and matches one
  device on the whole batch (``<= 1e-6``; measured 1.1e-7), with collectives allowed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import xai_jax as xj

ROOT = Path(__file__).resolve().parents[2]
#: one method of each family (and one NNX model)
FAMILIES = ["gradient", "grad_cam", "integrated_gradients", "occlusion", "smoothgrad", "lrp", "gradient@nnx"]
#: the fast tier: a chunked expansion (IG, chunks of 2 steps) on an NNX model; the rest is ``slow``
FAST = ["integrated_gradients@nnx"]


def _check(methods: list[str]) -> list[dict]:
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type= --xla_force_host_platform_device_count=8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "tests.nnx.sharding_check", *methods],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["method"] + ("@nnx" if r["nnx"] else "@vit" if r.get("vit") else "") for r in rows] == methods
    return rows


LEAST_SQUARES = {"kernel_shap", "lime"}


def _assert_row(row: dict) -> None:
    assert row["devices"] == 8
    assert row["kept_sharding"], row
    if "key" in xj.METHODS[row["method"]].needs.values():
        # The perturbation family works on differences of perturbed scores (measured 6.4e-6 for PDA's
        # log-odds) and surrogate fits (KernelSHAP, LIME) on a weighted least-squares problem over them,
        # which amplify the sharded program's different rounding of the scores (measured 1.4e-4 for
        # kernel_shap; 2.7e-6 from a different chunk size alone on one device).
        family = xj.METHODS[row["method"]].family
        tolerance = 1e-3 if row["method"] in LEAST_SQUARES else 1e-4 if family == "perturbation" else 1e-6
        assert row["vs_whole_batch"] <= tolerance, row
    else:
        assert row["vs_per_device_slices"] <= 1e-6, row
        assert row["collectives"] == [], row
        assert row["vs_whole_batch"] <= 1e-5, row


def test_a_chunked_expansion_on_an_nnx_model_on_a_sharded_batch():
    for row in _check(FAST):
        _assert_row(row)


#: The twin is a CNN: the attention family (attention rollout, Chefer) does not apply to it and is
#: checked on a small ViT instead (``@vit``).
NOT_ON_A_CNN = {"attention"}
ATTENTION = ["attention_rollout@vit", "chefer_attention@vit"]


def test_the_attention_family_on_a_sharded_batch():
    rows = _check(ATTENTION)
    assert {xj.METHODS[r["method"]].family for r in rows} == NOT_ON_A_CNN
    for row in rows:
        _assert_row(row)


@pytest.mark.slow
def test_one_method_of_each_family_on_a_sharded_batch():
    families = {m.family for m in xj.METHODS.values()} - NOT_ON_A_CNN
    assert {xj.METHODS[m.removesuffix("@nnx")].family for m in FAMILIES} == families
    for row in _check(FAMILIES):
        _assert_row(row)


@pytest.mark.slow
def test_every_method_on_a_sharded_batch():
    for row in _check(sorted(name for name, m in xj.METHODS.items() if m.family not in NOT_ON_A_CNN)):
        _assert_row(row)
