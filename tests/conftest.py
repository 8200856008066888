"""Test configuration.  The XLA flag must be set before the first JAX array exists: jaxlib 0.10's
default CPU backend returns wrong numbers otherwise (see xai_jax/core/numerics.py)."""

import os

_FLAG = "--xla_cpu_experimental_ynn_fusion_type="
if "xla_cpu_experimental_ynn_fusion_type" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
MNIST_NPZ = REPO.parent / "shared" / "data" / "mnist.npz"


@pytest.fixture(scope="session")
def mnist_npz() -> pathlib.Path:
    """The full MNIST file beside the repo (CI has it); tests that need real digits skip without it."""
    if not MNIST_NPZ.exists():
        pytest.skip(f"{MNIST_NPZ} not present")
    return MNIST_NPZ
