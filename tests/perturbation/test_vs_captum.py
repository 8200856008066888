"""LIME, KernelSHAP, exact and sampled Shapley values against Captum on PyTorch twins with identical
weights, given the same coalitions / orderings (injected on both sides).  Criterion: max |ours - ref|
<= 1e-4 * max |ref|."""

import jax
import numpy as np
import pytest

import xai_jax as xj
from tests import twins
from tests.perturbation.helpers import assert_matches, band_labels, kernel_coalitions, per_feature

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.torch

TARGETS = np.array([3, 1, 7])


@pytest.fixture(scope="module", params=["NCHWFlattenNet", pytest.param("TinyCNN", marks=pytest.mark.slow)])
def twin(request):
    model, variables, tmodel = twins.make(request.param, seed=1)
    x = twins.random_input(model, batch=3, seed=2)
    return model, variables, tmodel, x


def torch_mask(labels: np.ndarray):
    """(H, W) labels -> Captum's feature mask (1, 1, H, W), broadcast over channels."""
    return torch.as_tensor(labels[None, None].astype(np.int64))


def injected(rows: np.ndarray, prefix=()):
    """A Captum perturbation generator that yields ``prefix`` then the rows of ``rows`` (1, M)."""

    def generator(original_input, **kwargs):
        for row in (*prefix, *rows):
            yield torch.as_tensor(np.asarray(row)[None].astype(np.int64))

    return generator


def test_kernel_shap_equals_captum_on_the_same_coalitions(twin):
    model, variables, tmodel, x = twin
    labels = band_labels(x.shape[1:3], rows=3, cols=3)
    m = int(labels.max()) + 1
    coalitions = kernel_coalitions(np.random.default_rng(0), m, 40)
    ours = xj.kernel_shap(
        model,
        variables,
        x,
        TARGETS,
        key=jax.random.key(1),
        features=labels,
        baseline=0.25,
        coalitions=coalitions,
        constraint="captum",
    )
    ks = captum_attr.KernelShap(tmodel)
    ks.perturb_func = injected(
        coalitions, prefix=(np.ones(m), np.zeros(m))
    )  # Captum's sampler starts with the endpoints
    reference = ks.attribute(
        twins.to_torch(x),
        baselines=0.25,
        target=torch.as_tensor(TARGETS),
        feature_mask=torch_mask(labels),
        n_samples=len(coalitions) + 2,
        perturbations_per_eval=64,
    )
    assert_matches(ours, twins.to_numpy_nhwc(reference))


def test_lime_equals_captum_on_the_same_coalitions(twin):
    from captum._utils.models.linear_model import SkLearnLasso

    model, variables, tmodel, x = twin
    labels = band_labels(x.shape[1:3], rows=3, cols=2)
    m = int(labels.max()) + 1
    coalitions = np.random.default_rng(0).integers(0, 2, (60, m))
    ours = xj.lime(
        model, variables, x, TARGETS, key=jax.random.key(0), features=labels, preset="captum", coalitions=coalitions
    )
    # the same lasso, solved to a tight tolerance (scikit-learn's default 1e-4 stops early)
    lime = captum_attr.Lime(
        tmodel,
        interpretable_model=SkLearnLasso(alpha=0.01, tol=1e-7, max_iter=100_000),
        perturb_func=injected(coalitions),
    )
    reference = lime.attribute(
        twins.to_torch(x),
        target=torch.as_tensor(TARGETS),
        feature_mask=torch_mask(labels),
        n_samples=len(coalitions),
        perturbations_per_eval=64,
    )
    reference = twins.to_numpy_nhwc(reference)
    assert np.abs(per_feature(reference, labels)).max() > 0, "the lasso zeroed every coefficient: vacuous"
    assert_matches(ours, reference, rel=1e-3)


def test_exact_shapley_equals_captum_shapley_values(twin):
    model, variables, tmodel, x = twin
    labels = band_labels(x.shape[1:3], rows=2, cols=2)  # Captum enumerates all 4! orderings
    ours = xj.shapley_values(model, variables, x, TARGETS, features=labels, baseline=-0.3)
    reference = captum_attr.ShapleyValues(tmodel).attribute(
        twins.to_torch(x),
        baselines=-0.3,
        target=torch.as_tensor(TARGETS),
        feature_mask=torch_mask(labels),
        perturbations_per_eval=64,
    )
    assert_matches(ours, twins.to_numpy_nhwc(reference))


def test_shapley_value_sampling_equals_captum_on_the_same_orderings(twin):
    model, variables, tmodel, x = twin
    labels = band_labels(x.shape[1:3], rows=2, cols=3)
    m = int(labels.max()) + 1
    orderings = np.stack([np.random.default_rng(s).permutation(m) for s in range(5)])
    ours = xj.shapley_value_sampling(
        model, variables, x, TARGETS, key=jax.random.key(0), features=labels, baseline=0.1, permutations=orderings
    )
    svs = captum_attr.ShapleyValueSampling(tmodel)
    svs.permutation_generator = lambda num_features, num_samples: iter(orderings.tolist())
    reference = svs.attribute(
        twins.to_torch(x),
        baselines=0.1,
        target=torch.as_tensor(TARGETS),
        feature_mask=torch_mask(labels),
        n_samples=len(orderings),
        perturbations_per_eval=64,
    )
    assert_matches(ours, twins.to_numpy_nhwc(reference))
