"""Documentation that runs: every registered method's docstring example executes as a doctest, and
every citation key used in a docstring is in docs/references.md."""

from __future__ import annotations

import doctest
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj

REPO = pathlib.Path(__file__).resolve().parents[1]
CITATION = re.compile(r"\[([a-z]+\d{4}[a-z]?)\]_")


def _listed_keys() -> set[str]:
    text = (REPO / "docs" / "references.md").read_text()
    return set(re.findall(r"^\| ([a-z]+\d{4}[a-z]?) \|", text, flags=re.MULTILINE))


def test_every_cited_key_is_in_the_bibliography():
    listed = _listed_keys()
    cited = {}
    for path in (REPO / "xai_jax").rglob("*.py"):
        for key in CITATION.findall(path.read_text()):
            cited.setdefault(key, path.relative_to(REPO))
    missing = {key: str(path) for key, path in cited.items() if key not in listed}
    assert not missing, f"cited but not in docs/references.md: {missing}"
    assert cited, "no citation keys found: the pattern is wrong"


@pytest.fixture(scope="module")
def doctest_globals():
    model, variables = xj.models.load("mnist_cnn")
    images, labels = xj.data.mnist("sample")
    return {
        "xj": xj,
        "jax": jax,
        "jnp": jnp,
        "np": np,
        "model": model,
        "variables": variables,
        "x": jnp.asarray(images[:4]),
        "labels": labels[:4],
    }


def _run_examples(obj, name, globs):
    examples = doctest.DocTestParser().get_doctest(obj.__doc__ or "", dict(globs), name, None, 0)
    assert examples.examples, f"{name} has no runnable example in its docstring"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(examples)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} example lines failed"


@pytest.mark.parametrize("name", sorted(xj.METHODS))
def test_method_example_runs(name, doctest_globals):
    _run_examples(xj.METHODS[name], name, doctest_globals)


@pytest.mark.parametrize("name", ["gradient_cam", "tune_cpu_malloc"])
def test_other_public_examples_run(name, doctest_globals):
    _run_examples(getattr(xj, name), name, doctest_globals)
