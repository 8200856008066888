"""The command line: the offline report, listings, and errors."""

import numpy as np

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


def test_errors_are_reported_with_exit_code_2(tmp_path, capsys):
    assert cli.main(["explain", "--model", "mnist_cnm", "--out", str(tmp_path)]) == 2
    assert "mnist_cnn" in capsys.readouterr().err
    assert cli.main(["explain", "--methods", "gradeint", "--out", str(tmp_path)]) == 2
    assert "gradient" in capsys.readouterr().err
    assert cli.main(["explain", "--target", "12", "--count", "2", "--methods", "gradient", "--out", str(tmp_path)]) == 2
    assert "out of range" in capsys.readouterr().err
