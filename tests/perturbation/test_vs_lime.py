"""LIME's ``preset="lime"`` against the ``lime`` package's ``LimeImageExplainer`` on the same model,
segments and coalitions: mean-colour fill, cosine kernel of width 0.25 in interpretable space,
``Ridge(alpha=1)`` (coefficients and the first, unperturbed sample)."""

import jax
import numpy as np
import pytest

import xai_jax as xj
from tests import twins
from tests.perturbation.helpers import assert_matches, band_labels, per_feature

lime_image = pytest.importorskip("lime.lime_image")


class QueuedRandomState(np.random.RandomState):
    """A RandomState whose next ``randint(0, 2, size)`` returns the given coalitions (how the lime
    package draws its neighbourhood), so both sides see the same samples."""

    def __init__(self, coalitions: np.ndarray):
        super().__init__(0)
        self.coalitions = coalitions

    def randint(self, low, high=None, size=None, dtype=int):
        if size is not None and size == self.coalitions.size:
            return self.coalitions.reshape(-1).copy()
        return super().randint(low, high, size, dtype)


def test_lime_preset_equals_the_lime_package():
    model, variables, _ = twins.make("NCHWFlattenNet", seed=3)
    x = np.random.default_rng(4).uniform(size=(2, *model.INPUT_SHAPE)).astype(np.float32)
    labels = band_labels(x.shape[1:3], rows=3, cols=3)
    m = int(labels.max()) + 1
    coalitions = np.random.default_rng(5).integers(0, 2, (80, m))
    coalitions[0] = 1  # lime_image always sets the first sample to the unperturbed image
    targets = np.array([2, 5])
    ours = xj.lime(model, variables, x, targets, key=jax.random.key(0), features=labels, coalitions=coalitions)

    classify = lambda images: np.asarray(model.apply(variables, np.asarray(images, np.float32)))
    for b in range(len(x)):
        explainer = lime_image.LimeImageExplainer(kernel_width=0.25, random_state=QueuedRandomState(coalitions))
        explanation = explainer.explain_instance(
            x[b],
            classify,
            labels=(int(targets[b]),),
            hide_color=None,
            top_labels=None,
            num_samples=len(coalitions),
            batch_size=len(coalitions),
            segmentation_fn=lambda image: labels,
            random_seed=0,
        )
        reference = np.zeros(m)
        for feature, coefficient in explanation.local_exp[int(targets[b])]:
            reference[feature] = coefficient
        assert_matches(per_feature(ours, labels)[b], reference)


@pytest.mark.parametrize("preset", ["lime", pytest.param("captum", marks=pytest.mark.slow)])
def test_lime_recovers_a_linear_model(preset):
    """For f(x) = w·x + c and singleton features, f(x_z) = c' + Σ z_i w_i (x_i - b_i) exactly, so an
    unregularised fit (alpha=0) returns w ⊙ (x - b) under either preset's kernel."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(10, 2)).astype(np.float32)

    def linear(params, x):
        return x @ params["w"] + params["c"]

    params = {"w": w, "c": np.array([0.3, -0.2], np.float32)}
    x = rng.normal(size=(3, 10)).astype(np.float32)
    attr = xj.lime(linear, params, x, 1, key=jax.random.key(1), samples=200, preset=preset, baseline=0.5, alpha=0.0)
    np.testing.assert_allclose(attr, w[:, 1] * (x - 0.5), atol=2e-5)
