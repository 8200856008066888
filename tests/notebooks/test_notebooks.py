"""Every notebook in notebooks/ runs top to bottom with the small settings (XAI_JAX_NOTEBOOK_QUICK=1)."""

import os

import pytest

from tests.conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

# feature_visualization and uncertainty have their own tests that also check printed numbers.
OWN_TESTS = {"feature_visualization", "uncertainty"}
NOTEBOOKS = sorted(p for p in (REPO / "notebooks").glob("*.ipynb") if p.stem not in OWN_TESTS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("XAI_JAX_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type="))
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    ).execute()
    errors = [
        o
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
