"""notebooks/feature_visualization.ipynb runs top to bottom with the small settings.

``XAI_JAX_NOTEBOOK_QUICK=1`` selects few steps (and fewer octaves and layers), so the whole notebook
runs in well under a minute; the full settings are the notebook's defaults.  (tests/notebooks also
runs every notebook; this test additionally checks what the feature-visualization notebook prints.)
"""

import os
import re

import pytest

from tests.conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = REPO / "notebooks" / "feature_visualization.ipynb"


def test_feature_visualization_notebook_runs(monkeypatch):
    monkeypatch.setenv("XAI_JAX_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type="))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    # the plain setting stops every class at p >= 0.99; both generators stay in [0, 1]
    plain = re.search(r"plain\s+p\(class\) min ([0-9.]+)", text)
    assert plain and float(plain.group(1)) >= 0.99
    assert len(re.findall(r"image range \[0\.\d\d, [01]\.\d\d\]", text)) == 2
    assert "conv1  correlation" in text and "classes at once" in text
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 5  # pixel, code space, channels, DeepDream octaves, inversion
