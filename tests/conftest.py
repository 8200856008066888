"""Test configuration.

``import xai_jax`` comes first, before any test creates a JAX array: its guard appends
``--xla_cpu_experimental_ynn_fusion_type=`` to XLA_FLAGS when the installed jaxlib accepts it
(probed once per jaxlib and cached), because jaxlib's default CPU backend returns wrong numbers
otherwise (see xai_jax/core/numerics.py).  .ci/run exports the flag itself; the guard then keeps it.
"""

import pathlib

import jax
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


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compilation caches after each test module.

    Every program XLA:CPU compiles keeps about 3.4 memory mappings (its code and data) for as long as
    a cache holds it, and Linux allows a process 65,530 (``vm.max_map_count``).  The whole suite in one
    process compiles more programs than that: CI's run crashed with SIGSEGV inside the compiler at
    93 % of the suite.  Modules share no compiled programs worth keeping, so each starts afresh.
    """
    yield
    jax.clear_caches()
