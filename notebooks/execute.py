"""Rebuild every notebook from its ``make_*_notebook.py`` and execute it in place, so the stored
notebooks carry their outputs (pictures included) for anyone reading them on a repository page.

    python notebooks/execute.py            # full settings, as a reader would run them
    python notebooks/execute.py uncertainty

The test suite executes the same notebooks with the small settings (``XAI_JAX_NOTEBOOK_QUICK=1``)
without writing them back.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent
#: notebook -> the script that writes its source
NOTEBOOKS = {
    "attribution": "make_attribution_notebook.py",
    "propagation": "make_propagation_notebook.py",
    "feature_visualization": "make_featureviz_notebook.py",
    "uncertainty": "make_uncertainty_notebook.py",
}


def main(names: list[str]) -> None:
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")
    os.environ.pop("XAI_JAX_NOTEBOOK_QUICK", None)
    unknown = set(names) - set(NOTEBOOKS)
    if unknown:
        raise SystemExit(f"unknown notebook(s) {sorted(unknown)}; known: {sorted(NOTEBOOKS)}")
    for name, maker in NOTEBOOKS.items():
        if names and name not in names:
            continue
        runpy.run_path(str(HERE / maker), run_name="__main__")
        path = HERE / f"{name}.ipynb"
        notebook = nbformat.read(path, as_version=4)
        nbclient.NotebookClient(
            notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(HERE.parent)}}
        ).execute()
        nbformat.write(notebook, path)
        print(f"executed {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main(sys.argv[1:])
