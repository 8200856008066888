"""Test configuration.

``import xai_jax`` comes first, before any test creates a JAX array: its guard appends
``--xla_cpu_experimental_ynn_fusion_type=`` to XLA_FLAGS when the installed jaxlib accepts it
(probed once per jaxlib and cached), because jaxlib's default CPU backend returns wrong numbers
otherwise (see xai_jax/core/numerics.py).  .ci/run exports the flag itself; the guard then keeps it.
"""

import pathlib

import pytest

import xai_jax  # noqa: F401  (the guard runs at import; see above)

REPO = pathlib.Path(__file__).resolve().parents[1]
MNIST_NPZ = REPO.parent / "shared" / "data" / "mnist.npz"

#: Test folders marked "engine": the calling convention and guard, the trace and propagation
#: engine, the attribution methods.  CI's newest end runs these plus the "torch" cross-checks
#: (.ci/run); a folder added here is covered there without touching CI.
ENGINE_FOLDERS = frozenset({"core", "trace", "propagation", "attribution"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.resolve().relative_to(REPO / "tests").parts
        if len(parts) > 1 and parts[0] in ENGINE_FOLDERS:
            item.add_marker(pytest.mark.engine)


@pytest.fixture(scope="session")
def mnist_npz() -> pathlib.Path:
    """The full MNIST file beside the repo (CI has it); tests that need real digits skip without it."""
    if not MNIST_NPZ.exists():
        pytest.skip(f"{MNIST_NPZ} not present")
    return MNIST_NPZ
