"""The command line: the offline report, listings, and errors."""

import numpy as np

import xai_jax as xj
from xai_jax import cli


def test_explain_writes_a_report_offline(tmp_path, capsys):
    out = tmp_path / "report"
    assert cli.main(["explain", "--count", "3", "--methods", "gradient,integrated_gradients,grad_cam,cam", "--out", str(out), "--quiet"]) == 0
    assert (out / "index.html").exists() and (out / "grid.png").exists()
    page = (out / "index.html").read_text()
    assert "integrated_gradients" in page and "skipped cam" in page  # mnist_cnn has no GAP head
    assert np.load(out / "arrays" / "integrated_gradients.npy").shape == (3, 28, 28, 1)
    assert np.load(out / "arrays" / "grad_cam.npy").shape == (3, 28, 28)  # upsampled to the input
    np.testing.assert_array_equal(np.load(out / "arrays" / "labels.npy"), np.load(out / "arrays" / "labels.npy"))


def test_target_label_and_class(tmp_path):
    assert cli.main(["explain", "--count", "2", "--methods", "saliency", "--target", "label", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert cli.main(["explain", "--count", "2", "--methods", "saliency", "--target", "3", "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert not np.array_equal(np.load(tmp_path / "a" / "arrays" / "saliency.npy"), np.load(tmp_path / "b" / "arrays" / "saliency.npy"))


def test_listings(capsys):
    assert cli.main(["methods"]) == 0
    assert "integrated_gradients" in capsys.readouterr().out
    assert cli.main(["layers", "--model", "mnist_cnn"]) == 0
    assert "conv4" in capsys.readouterr().out
    assert cli.main(["models"]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "MnistCNN" in listed["mnist_cnn"] and "test accuracy 99." in listed["mnist_cnn"]
    assert set(xj.models.available()) <= set(listed)


def test_errors_are_reported_with_exit_code_2(tmp_path, capsys):
    assert cli.main(["explain", "--model", "mnist_cnm", "--out", str(tmp_path)]) == 2
    assert "mnist_cnn" in capsys.readouterr().err
    assert cli.main(["explain", "--methods", "gradeint", "--out", str(tmp_path)]) == 2
    assert "gradient" in capsys.readouterr().err
    assert cli.main(["explain", "--target", "12", "--count", "2", "--methods", "gradient", "--out", str(tmp_path)]) == 2
    assert "out of range" in capsys.readouterr().err


def test_mc_samples_show_mean_and_std_maps(tmp_path, capsys):
    out = tmp_path / "mc"
    assert cli.main(["explain", "--model", "mc_dropout_cnn", "--mc-samples", "3", "--count", "2",
                     "--methods", "gradient,grad_cam", "--out", str(out), "--quiet"]) == 0
    page = (out / "index.html").read_text()
    assert "gradient (MC mean)" in page and "grad_cam (MC std)" in page
    std = np.load(out / "arrays" / "gradient_MC_std.npy")
    assert std.shape == (2, 28, 28, 1) and std.max() > 0
    assert cli.main(["explain", "--mc-samples", "3", "--count", "2", "--methods", "gradient", "--out", str(out)]) == 2
    assert "dropout" in capsys.readouterr().err
