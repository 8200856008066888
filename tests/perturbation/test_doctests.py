"""The perturbation family's public helpers' ``Example:`` run as doctests (the registered methods'
examples run in tests/test_docs.py, with the same fixture: the shipped ``mnist_cnn`` and 4 sample
digits as ``model, variables, x``; ``xj``, ``jax``, ``jnp``, ``np`` in scope)."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj

METHODS = [
    "lime",
    "kernel_shap",
    "shapley_values",
    "shapley_value_sampling",
    "rise",
    "extremal_perturbation",
    "meaningful_perturbation",
    "prediction_difference",
    "gradient_shap",
    "deeplift_shap",
    "guided_ig",
    "blur_ig",
    "xrai",
    "fullgrad",
]
HELPERS = [xj.perturbation.feature_mask]


@pytest.fixture(scope="module")
def globs():
    model, variables = xj.models.load("mnist_cnn")
    images, _ = xj.data.mnist("sample")
    return {
        "xj": xj,
        "jax": jax,
        "jnp": jnp,
        "np": np,
        "model": model,
        "variables": variables,
        "x": jnp.asarray(images[:4]),
    }


def run_examples(obj, name, globs):
    tests = doctest.DocTestFinder(recurse=False).find(obj, name, globs=dict(globs))
    examples = sum(len(t.examples) for t in tests)
    assert examples > 0, f"{name} has no Example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} failing example(s) in {name}"


def test_helper_examples_run(globs):
    for helper in HELPERS:
        run_examples(helper, helper.__name__, globs)


def test_every_method_is_registered_with_an_example():
    for name in METHODS:
        method = xj.METHODS[name]
        assert "Example:" in method.__doc__ and ">>>" in method.__doc__, name
        assert getattr(xj, name) is method
