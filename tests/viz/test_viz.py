"""Heatmaps, grids and the HTML report."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

import xai_jax as xj


def test_signed_limits_are_symmetric_and_zero_is_the_centre_colour():
    attr = np.linspace(-1, 3, 20).reshape(4, 5)
    assert xj.viz.limits(attr) == (-3.0, 3.0)
    assert xj.viz.limits(attr, signed=False) == (0.0, 3.0)
    rgba = xj.viz.to_rgba(np.array([[0.0, 3.0], [-3.0, 1.0]]))
    centre = plt.get_cmap("bwr")(0.5)
    np.testing.assert_allclose(rgba[0, 0], centre)
    np.testing.assert_allclose(rgba[0, 1], plt.get_cmap("bwr")(1.0))
    np.testing.assert_allclose(rgba[1, 0], plt.get_cmap("bwr")(0.0))


@pytest.mark.parametrize("attr", [np.zeros((6, 6)), np.full((6, 6), 2.5), np.zeros((6, 6, 3))])
def test_constant_maps_render_finite_without_warnings(attr, recwarn):
    for signed in (True, False):
        assert np.isfinite(xj.viz.to_rgba(attr, signed=signed)).all()
        assert np.isfinite(xj.viz.overlay(np.zeros((6, 6, 1)), attr, signed=signed)).all()
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_channels_are_reduced():
    attr = np.stack([np.ones((3, 3)), -3 * np.ones((3, 3))], axis=-1)
    np.testing.assert_array_equal(xj.viz.to_2d(attr), -2 * np.ones((3, 3)))
    np.testing.assert_array_equal(xj.viz.to_2d(attr, signed=False), 4 * np.ones((3, 3)))


def test_grid_png(tmp_path):
    images = np.random.default_rng(0).uniform(size=(3, 28, 28, 1))
    maps = {"a": np.random.default_rng(1).normal(size=(3, 28, 28, 1)), "b": np.abs(np.random.default_rng(2).normal(size=(3, 28, 28)))}
    fig = xj.viz.method_grid(images, maps, signed={"b": False}, row_titles=["x", "y", "z"], path=tmp_path / "g.png")
    assert (tmp_path / "g.png").exists()
    width, height = fig.get_size_inches() * fig.dpi
    image = plt.imread(tmp_path / "g.png")
    assert image.shape[:2] == (round(height * 100 / fig.dpi), round(width * 100 / fig.dpi))
    plt.close(fig)


def test_report_files_arrays_and_escaping(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(2, 28, 28, 1)).astype(np.float32)
    maps = {"<grad> & co": rng.normal(size=(2, 28, 28, 1)).astype(np.float32), "cam": rng.uniform(size=(2, 28, 28)).astype(np.float32)}
    index = xj.viz.write_report(tmp_path / "r", images=images, labels=np.array([3, -1]), predictions=np.array([3, 5]),
                                probabilities=np.array([0.9, 0.5]), maps=maps, signed={"cam": False}, extra={"model": "<m>"})
    page = index.read_text()
    assert "&lt;grad&gt; &amp; co" in page and "<grad>" not in page and "&lt;m&gt;" in page
    assert "label ? / pred 5 (50.0%)" in page
    for src in __import__("re").findall(r'src="([^"]+)"', page):
        assert (index.parent / src).exists(), src
    np.testing.assert_array_equal(np.load(tmp_path / "r" / "arrays" / "grad_co.npy"), maps["<grad> & co"])
    np.testing.assert_array_equal(np.load(tmp_path / "r" / "arrays" / "inputs.npy"), images)
