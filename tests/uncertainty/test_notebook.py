"""notebooks/uncertainty.ipynb runs top to bottom with the small settings (XAI_JAX_NOTEBOOK_QUICK=1)."""

import os
import time

import pytest

from tests.conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = REPO / "notebooks" / "uncertainty.ipynb"


def test_uncertainty_notebook_runs(monkeypatch):
    monkeypatch.setenv("XAI_JAX_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type="))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    ).execute()
    elapsed = time.perf_counter() - start
    errors = [
        o
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    images = sum(
        1
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if "image/png" in o.get("data", {})
    )
    print(f"uncertainty notebook: {elapsed:.1f} s, {images} figures")
    assert images >= 6
