"""Bad input is refused with an XaiJaxError that says what to do: feature masks with gaps or of the
wrong shape, more features than samples for KernelSHAP, injected draws of the wrong shape, values
outside their range, non-image inputs for image methods, and a missing scikit-image."""

import builtins
import functools

import jax
import numpy as np
import pytest

import xai_jax as xj


def linear(params, x):
    return x.reshape(x.shape[0], -1) @ params


PARAMS = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
IMAGES = np.random.default_rng(1).uniform(size=(2, 2, 6, 1)).astype(np.float32)  # 12 elements
TABLE = np.random.default_rng(2).normal(size=(2, 12)).astype(np.float32)
KEY = jax.random.key(0)
grid = functools.partial(xj.perturbation.feature_mask, IMAGES)


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.array([[0, 0, 2, 2, 3, 3], [0, 0, 2, 2, 3, 3]]), "gaps"),  # label 1 never used
        (np.arange(12).reshape(3, 4), "does not fit"),
        (np.zeros((2, 2, 6, 2), int), "does not fit"),
        (np.full((2, 6), 0.5), "integer labels"),
        (-np.ones((2, 6), int), ">= 0"),
    ],
)
def test_bad_feature_masks(labels, match):
    with pytest.raises(xj.InputError, match=match):
        grid(labels)
    with pytest.raises(xj.InputError, match=match):
        xj.kernel_shap(linear, PARAMS, IMAGES, 0, key=KEY, features=labels, samples=20)


def test_per_sample_masks_are_checked_sample_by_sample():
    labels = np.stack([np.arange(12).reshape(2, 6) % 4, np.arange(12).reshape(2, 6) % 4 * 2])  # sample 1: 0, 2, 4, 6
    with pytest.raises(xj.InputError, match="sample 1"):
        grid(labels)
    ok = grid(np.stack([np.arange(12).reshape(2, 6) % 4, np.arange(12).reshape(2, 6) % 3]))
    assert ok.num_features == 4 and np.asarray(ok.counts()).tolist() == [4, 3]


def test_more_features_than_samples_for_kernel_shap():
    with pytest.raises(xj.InputError, match="more features than samples"):
        xj.kernel_shap(linear, PARAMS, TABLE, 0, key=KEY, samples=5)  # 12 features
    with pytest.raises(xj.InputError, match="more features than samples"):
        xj.kernel_shap(linear, PARAMS, TABLE, 0, key=KEY, coalitions=np.ones((4, 12)))


def test_too_many_features_for_exact_shapley():
    with pytest.raises(xj.InputError, match="too many"):
        xj.shapley_values(
            lambda params, x: x[:, :3], None, np.ones((1, 21), np.float32), 0
        )  # 21 single-element features


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: xj.kernel_shap(linear, PARAMS, TABLE, 0, key=KEY, coalitions=np.ones((20, 5))), "columns"),
        (lambda: xj.kernel_shap(linear, PARAMS, TABLE, 0, key=KEY, coalitions=np.full((20, 12), 0.5)), "0/1"),
        (
            lambda: xj.shapley_value_sampling(linear, PARAMS, TABLE, 0, key=KEY, permutations=np.zeros((2, 12), int)),
            "permutation",
        ),
        (lambda: xj.lime(linear, PARAMS, TABLE, 0, key=KEY, baseline="segment_mean"), "NHWC"),
        (lambda: xj.rise(linear, PARAMS, IMAGES, 0, key=KEY, masks=np.full((3, 2, 6), 2.0)), r"\[0, 1\]"),
        (lambda: xj.rise(linear, PARAMS, IMAGES, 0, key=KEY, masks=np.ones((3, 6, 2))), "shape"),
        (lambda: xj.rise(linear, PARAMS, IMAGES, 0, key=KEY, p=1.0), "between 0 and 1"),
        (lambda: xj.rise(linear, PARAMS, TABLE, 0, key=KEY), "NHWC"),
        (lambda: xj.blur_ig(linear, PARAMS, TABLE, 0), "NHWC"),
        (lambda: xj.xrai(linear, PARAMS, TABLE, 0), "NHWC"),
        (lambda: xj.guided_ig(linear, PARAMS, TABLE, 0, fraction=1.5), r"\[0, 1\]"),
        (lambda: xj.gradient_shap(linear, PARAMS, TABLE, 0, key=KEY, baselines=np.zeros((3, 5))), "references"),
        (
            lambda: xj.gradient_shap(
                linear,
                PARAMS,
                TABLE,
                0,
                key=KEY,
                baselines=np.zeros((3, 12)),
                draws=xj.paths.GradientShapDraws(np.zeros((4, 2), int), np.zeros((3, 2))),
            ),
            "shape",
        ),
        (
            lambda: xj.gradient_shap(
                linear,
                PARAMS,
                TABLE,
                0,
                key=KEY,
                baselines=np.zeros((3, 12)),
                draws=xj.paths.GradientShapDraws(np.full((4, 2), 3), np.zeros((4, 2))),
            ),
            "indices",
        ),
        (lambda: xj.deeplift_shap(linear, PARAMS, TABLE, 0, baselines=np.full((2, 12), np.nan)), "NaN"),
        (lambda: xj.prediction_difference(linear, PARAMS, IMAGES, 0, key=KEY, window=3), "larger than the image"),
        (
            lambda: xj.prediction_difference(linear, PARAMS, IMAGES, 0, key=KEY, window=1, data=np.zeros((5, 3, 3, 1))),
            "data",
        ),
        (lambda: xj.fullgrad(linear, PARAMS, IMAGES, 0), "flax.linen.Module or an nnx.Module"),
        (lambda: xj.kernel_shap(linear, PARAMS, TABLE, 0, key=3, samples=20), "jax.random key"),
    ],
)
def test_bad_options(call, match):
    with pytest.raises(xj.XaiJaxError, match=match):
        call()


def test_feature_specs_need_a_concrete_batch():
    with pytest.raises(xj.InputError, match="outside"):
        jax.jit(lambda x: xj.kernel_shap(linear, PARAMS, x, 0, key=KEY, samples=20, features="grid"))(IMAGES)


def test_missing_scikit_image_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_skimage(name, *args, **kwargs):
        if name == "skimage" or name.startswith("skimage."):
            raise ImportError("No module named 'skimage'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_skimage)
    with pytest.raises(xj.UnsupportedError, match=r"xai-jax\[perturbation\]"):
        xj.lime(linear, PARAMS, IMAGES, 0, key=KEY, features="quickshift")
    with pytest.raises(xj.UnsupportedError, match=r"xai-jax\[perturbation\]"):
        xj.xrai(linear, PARAMS, IMAGES, 0)
