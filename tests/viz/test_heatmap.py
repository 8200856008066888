"""Heatmaps: symmetric limits, zero at the centre colour, channel reduction, degenerate maps, grids."""

import warnings

import jax.numpy as jnp
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.viz import heatmap

BWR = matplotlib.colormaps["bwr"]


def test_signed_limits_are_symmetric_and_zero_is_the_centre_colour():
    attr = np.linspace(-1, 3, 20).reshape(4, 5)
    assert xj.viz.limits(attr) == (-3.0, 3.0)
    assert xj.viz.limits(attr, signed=False) == (0.0, 3.0)
    rgba = xj.viz.to_rgba(np.array([[0.0, 3.0], [-3.0, 1.5], [-1.0, 0.0]]))
    assert rgba.shape == (3, 2, 4)
    np.testing.assert_allclose(rgba[0, 0], BWR(0.5))
    np.testing.assert_allclose(rgba[2, 1], BWR(0.5))
    np.testing.assert_allclose(rgba[0, 1], BWR(1.0))
    np.testing.assert_allclose(rgba[1, 0], BWR(0.0))
    np.testing.assert_allclose(rgba[1, 1], BWR(0.75))


def test_drawn_limits_match(recwarn):
    fig, (a, b) = plt.subplots(1, 2)
    shown = xj.viz.signed_heatmap(np.linspace(-1, 3, 20).reshape(4, 5), a)
    assert shown.get_clim() == (-3.0, 3.0) and shown.get_cmap().name == "bwr"
    shown = xj.viz.magnitude_heatmap(np.linspace(-5, 3, 20).reshape(4, 5), b, colorbar=True)
    assert shown.get_clim() == (0.0, 5.0)
    plt.close(fig)


def test_magnitude_uses_absolute_values():
    rgba = xj.viz.to_rgba(np.array([[-2.0, 2.0, 0.0]]), signed=False)
    np.testing.assert_allclose(rgba[0, 0], rgba[0, 1])
    cmap = matplotlib.colormaps[xj.viz.MAGNITUDE_CMAP]
    np.testing.assert_allclose(rgba[0, 2], cmap(0.0))
    np.testing.assert_allclose(rgba[0, 1], cmap(1.0))


def test_percentile_and_vmax():
    attr = np.zeros((10, 10))
    attr[0, 0] = 100.0  # one extreme pixel
    attr[1:, :] = np.linspace(-1, 1, 90).reshape(9, 10)
    low, high = xj.viz.limits(attr, percentile=99)
    assert high < 10 and low == -high
    # A sparse map whose percentile is 0 falls back to max|a| rather than a zero-width scale.
    sparse = np.zeros((10, 10))
    sparse[3, 3] = -2.0
    assert xj.viz.limits(sparse, percentile=50) == (-2.0, 2.0)
    rgba = xj.viz.to_rgba(np.array([[1.0, -4.0]]), vmax=2.0)
    np.testing.assert_allclose(rgba[0, 0], BWR(0.75))
    np.testing.assert_allclose(rgba[0, 1], BWR(0.0))  # saturates
    with pytest.raises(xj.InputError):
        xj.viz.limits(attr, percentile=0)
    with pytest.raises(xj.InputError):
        xj.viz.to_rgba(attr, vmax=0.0)


@pytest.mark.parametrize(
    "attr",
    [np.zeros((6, 6)), np.full((6, 6), 2.5), np.full((6, 6), -1e-30), np.zeros((6, 6, 3))],
    ids=["zero", "constant", "tiny", "zero-rgb"],
)
def test_degenerate_maps_render_finite_without_warnings(attr):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for signed in (True, False):
            rgba = xj.viz.to_rgba(attr, signed=signed)
            assert np.isfinite(rgba).all() and rgba.min() >= 0 and rgba.max() <= 1
            for fade in (True, False):
                out = xj.viz.overlay(np.zeros((6, 6, 1)), attr, signed=signed, fade=fade)
                assert out.shape == (6, 6, 3) and np.isfinite(out).all()
        fig, ax = plt.subplots()
        xj.viz.signed_heatmap(attr, ax)
        xj.viz.magnitude_heatmap(attr, ax)
        plt.close(fig)
    if not attr.any():
        np.testing.assert_allclose(xj.viz.to_rgba(attr)[0, 0], BWR(0.5))


def test_nan_and_inf_do_not_poison_the_limits():
    attr = np.array([[np.nan, 1.0], [np.inf, -2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert xj.viz.limits(attr) == (-2.0, 2.0)
        rgba = xj.viz.to_rgba(attr)
        out = xj.viz.overlay(np.ones((2, 2)), attr)
    assert np.isfinite(rgba).all() and np.isfinite(out).all()
    np.testing.assert_allclose(rgba[1, 0], BWR(1.0))  # +inf saturates
    np.testing.assert_allclose(rgba[1, 1], BWR(0.0))


def test_channels_are_reduced_and_jax_arrays_accepted():
    attr = np.stack([np.ones((3, 3)), -3 * np.ones((3, 3))], axis=-1)
    np.testing.assert_array_equal(xj.viz.reduce_channels(attr), -2 * np.ones((3, 3)))
    np.testing.assert_array_equal(xj.viz.reduce_channels(attr, signed=False), 4 * np.ones((3, 3)))
    np.testing.assert_array_equal(xj.viz.to_rgba(jnp.asarray(attr)), xj.viz.to_rgba(attr))
    with pytest.raises(xj.InputError, match="Index the batch"):
        xj.viz.reduce_channels(np.zeros((2, 3, 3, 1)))


def test_overlay_tints_only_relevant_pixels():
    image = np.full((2, 2, 1), 0.25)
    attr = np.array([[0.0, 1.0], [-1.0, 0.5]])
    out = xj.viz.overlay(image, attr, alpha=1.0)
    np.testing.assert_allclose(out[0, 0], [0.25, 0.25, 0.25])  # zero relevance: the input itself
    np.testing.assert_allclose(out[0, 1], BWR(1.0)[:3])  # full relevance at alpha 1: the heatmap colour
    np.testing.assert_allclose(out[1, 0], BWR(0.0)[:3])
    flat = xj.viz.overlay(image, attr, alpha=0.5, fade=False)
    np.testing.assert_allclose(flat[0, 0], 0.5 * 0.25 + 0.5 * np.array(BWR(0.5)[:3]))
    rgb = xj.viz.overlay(np.random.default_rng(0).uniform(size=(2, 2, 3)), attr)
    assert rgb.shape == (2, 2, 3)
    with pytest.raises(xj.InputError, match="upsample"):
        xj.viz.overlay(np.zeros((4, 4)), attr)


def test_grid_png_has_the_expected_size(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(3, 28, 28, 1))
    maps = {
        "a": rng.normal(size=(3, 28, 28, 1)),
        "b": np.abs(rng.normal(size=(3, 28, 28))),
        "layer cam": jnp.asarray(rng.uniform(size=(3, 7, 7))),
    }
    titles = [xj.viz.prediction_title(label, p, q) for label, p, q in [(7, 7, 0.998), (-1, 2, 0.5), (None, 1, 0.25)]]
    assert titles == ["label 7 / pred 7 (99.8%)", "label ? / pred 2 (50.0%)", "label ? / pred 1 (25.0%)"]
    fig = xj.viz.method_grid(
        images, maps, signed={"b": False, "layer cam": False}, row_titles=titles, path=tmp_path / "g.png"
    )
    assert [ax.get_title() for ax in fig.axes[:4]] == [titles[0], "a", "b", "layer cam"]
    image = plt.imread(tmp_path / "g.png")
    assert image.shape == (round((1.4 * 3 + 0.3) * 100), round(1.4 * 4 * 100), 4)
    plt.close(fig)


def test_grid_rejects_mismatched_batches():
    with pytest.raises(xj.InputError, match="one map per image"):
        xj.viz.method_grid(np.zeros((3, 8, 8)), {"a": np.zeros((2, 8, 8))})
    with pytest.raises(xj.InputError, match="row titles"):
        xj.viz.method_grid(np.zeros((3, 8, 8)), {"a": np.zeros((3, 8, 8))}, row_titles=["x"])


def test_no_backend_switch_on_import():
    """Importing viz must not force Agg: that would break inline figures in notebooks."""
    import inspect

    assert "matplotlib.use(" not in inspect.getsource(heatmap)
