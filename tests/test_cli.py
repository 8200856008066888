"""The command line: the offline report, listings, and errors."""

import json

import numpy as np
import pytest

import xai_jax as xj
from tests.models.utils import np_init
from xai_jax import cli
from xai_jax.core.errors import OutputError
from xai_jax.models import checkpoint as ckpt
from xai_jax.models import train as T


def test_explain_writes_a_report_offline(tmp_path, capsys):
    out = tmp_path / "report"
    assert (
        cli.main(
            [
                "explain",
                "--count",
                "3",
                "--methods",
                "gradient,integrated_gradients,grad_cam,cam",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert (out / "index.html").exists() and (out / "grid.png").exists()
    page = (out / "index.html").read_text()
    assert "integrated_gradients" in page and "skipped cam" in page  # mnist_cnn has no GAP head
    assert np.load(out / "arrays" / "integrated_gradients.npy").shape == (3, 28, 28, 1)
    assert np.load(out / "arrays" / "grad_cam.npy").shape == (3, 28, 28)  # upsampled to the input
    np.testing.assert_array_equal(np.load(out / "arrays" / "labels.npy"), np.load(out / "arrays" / "labels.npy"))


def test_target_label_and_class(tmp_path):
    assert (
        cli.main(
            [
                "explain",
                "--count",
                "2",
                "--methods",
                "saliency",
                "--target",
                "label",
                "--out",
                str(tmp_path / "a"),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        cli.main(
            [
                "explain",
                "--count",
                "2",
                "--methods",
                "saliency",
                "--target",
                "3",
                "--out",
                str(tmp_path / "b"),
                "--quiet",
            ]
        )
        == 0
    )
    assert not np.array_equal(
        np.load(tmp_path / "a" / "arrays" / "saliency.npy"), np.load(tmp_path / "b" / "arrays" / "saliency.npy")
    )


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
    assert (
        cli.main(
            [
                "explain",
                "--model",
                "mc_dropout_cnn",
                "--mc-samples",
                "3",
                "--count",
                "2",
                "--methods",
                "gradient,grad_cam",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    page = (out / "index.html").read_text()
    assert "gradient (MC mean)" in page and "grad_cam (MC std)" in page
    std = np.load(out / "arrays" / "gradient_MC_std.npy")
    assert std.shape == (2, 28, 28, 1) and std.max() > 0
    assert cli.main(["explain", "--mc-samples", "3", "--count", "2", "--methods", "gradient", "--out", str(out)]) == 2
    assert "dropout" in capsys.readouterr().err


# ------------------------------------------------------------------------------- report folder


def _snapshot(folder):
    """Every file under ``folder`` with its bytes: what must not change when a run is refused."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _refuse_to_compute(monkeypatch):
    def load(*args, **kwargs):
        raise AssertionError("a model was loaded before the output folder was checked")

    monkeypatch.setattr(xj.models, "load", load)


def test_explain_refuses_a_foreign_folder_before_computing(tmp_path, monkeypatch, capsys):
    """Pointed at a checkpoints folder it used to replace manifest.json; now nothing there changes,
    with or without --overwrite (the report would need the name manifest.json)."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format": "xai_jax-checkpoints/1", "models": {}}))
    (folder / "mnist_cnn.msgpack").write_bytes(b"weights")
    before = _snapshot(folder)
    _refuse_to_compute(monkeypatch)
    assert cli.main(["explain", "--count", "1", "--methods", "saliency", "--out", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "not an xai_jax report" in err and "manifest.json" in err and "Traceback" not in err
    assert cli.main(["explain", "--count", "1", "--methods", "saliency", "--out", str(folder), "--overwrite"]) == 2
    assert "manifest.json" in capsys.readouterr().err
    assert _snapshot(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]  # no temporary folder left beside it


def test_explain_replaces_an_earlier_report_as_a_whole(tmp_path, capsys):
    out = tmp_path / "report"
    assert cli.main(["explain", "--count", "2", "--methods", "saliency,gradient", "--out", str(out), "--quiet"]) == 0
    assert (out / "arrays" / "gradient.npy").exists() and (out / "maps" / "input_1.png").exists()
    assert cli.main(["explain", "--count", "1", "--methods", "saliency", "--out", str(out), "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(_snapshot(out)) == set(manifest["files"])  # nothing of the first run stayed behind
    assert not (out / "arrays" / "gradient.npy").exists() and not (out / "maps" / "input_1.png").exists()
    assert np.load(out / "arrays" / "saliency.npy").shape[0] == 1

    (out / "notes.txt").write_text("mine")
    assert cli.main(["explain", "--count", "1", "--methods", "gradient", "--out", str(out), "--quiet"]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (
        cli.main(["explain", "--count", "1", "--methods", "gradient", "--out", str(out), "--overwrite", "--quiet"]) == 0
    )
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite keeps what the report did not write
    assert (out / "arrays" / "gradient.npy").exists() and not (out / "arrays" / "saliency.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


# ------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """Image files a user might pass, each wrong in one way."""
    folder = tmp_path_factory.mktemp("images")
    images, labels = xj.data.mnist("sample")
    x, y = images[:4], labels[:4]
    files = {
        "float255": dict(images=x * 255, labels=y),
        "label12": dict(images=x, labels=np.array([1, 2, 12, 3])),
        "label-1": dict(images=x, labels=np.array([-1, 2, 3, 4])),
        "onehot": dict(images=x, labels=np.eye(10, dtype=np.int64)[y]),
        "rgb": dict(images=np.repeat(x, 3, axis=-1)),
        "nchw": dict(images=x.transpose(0, 3, 1, 2)),
        "strings": dict(images=np.array(["a", "b"])),
    }
    for name, arrays in files.items():
        np.savez(folder / f"{name}.npz", **arrays)
    nan = x.copy()
    nan[1, 3, 3, 0] = np.nan
    np.save(folder / "nan.npy", nan)
    np.save(folder / "one.npy", x[0, ..., 0])
    (folder / "text.npy").write_text("not an array")
    return folder


BAD_INPUT = [
    (["--count", "-1"], "argument --count"),
    (["--count", "0"], "argument --count"),
    (["--start", "-3"], "argument --start"),
    (["--start", "300"], "past the last image"),
    (["--mc-samples", "-3"], "argument --mc-samples"),
    (["--mc-samples", "1"], "argument --mc-samples"),
    (["--target", "abc"], "argument --target"),
    (["--target", "12"], "out of range"),
    (["--seed", "-1"], "argument --seed"),
    (["--model", "mnist_gan_generator"], "is a generator"),
    (["--methods", " , "], "names no method"),
    (["--layer", "conv9"], "Unknown layer 'conv9'"),
    (["--images", "{d}/float255.npz"], "x / 255"),
    (["--images", "{d}/label12.npz"], "labels outside 0..9"),
    (["--images", "{d}/label-1.npz"], "labels outside 0..9"),
    (["--images", "{d}/onehot.npz"], "not one-hot"),
    (["--images", "{d}/nan.npy"], "NaN"),
    (["--images", "{d}/rgb.npz"], "3 channels"),
    (["--images", "{d}/nchw.npz"], "NCHW"),
    (["--images", "{d}/one.npy"], "batch axis"),
    (["--images", "{d}/strings.npz"], "dtype"),
    (["--images", "{d}/text.npy"], "not a readable"),
    (["--images", "{d}/missing.npz"], "does not exist"),
    (["--images", "{d}/nan.npy", "--target", "label", "--count", "1"], "no labels"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUT, ids=[" ".join(a).replace("{d}/", "") for a, _ in BAD_INPUT])
def test_explain_rejects_bad_input_before_computing(bad_files, tmp_path, capsys, argv, message):
    out = tmp_path / "report"
    argv = [a.replace("{d}", str(bad_files)) for a in argv]
    assert cli.main(["explain", "--methods", "gradient", *argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_explain_fails_when_no_method_applies(tmp_path, capsys):
    """A report of nothing but "skipped" lines used to exit 0 (e.g. every method refusing NaN images)."""
    out = tmp_path / "report"
    assert cli.main(["explain", "--count", "1", "--methods", "cam", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no method produced a map" in err and "cam:" in err
    assert not out.exists()


# ------------------------------------------------------------------------------- training output


def _fake_shipped(folder):
    """A checkpoints folder like the shipped one: an untrained mnist_cnn and its manifest entry."""
    model = xj.models.zoo.build("mnist_cnn")
    variables = np_init(model, xj.models.mnist.example_input(model))
    digest = ckpt.save_checkpoint(folder / "mnist_cnn.msgpack", variables)
    ckpt.update_manifest(
        folder,
        "mnist_cnn",
        {"file": "mnist_cnn.msgpack", "class": "MnistCNN", "kwargs": {}, "sha256": digest, "test_accuracy": 0.5},
    )


@pytest.fixture
def quick_training(tmp_path, monkeypatch):
    """``train`` on 20 sample digits with the optimisation loop replaced by a fresh init (the files
    it writes, not the weights, are under test); ``$XAI_JAX_CHECKPOINTS`` points at a fake shipped
    folder, so nothing can reach the repo's checkpoints/."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    _fake_shipped(shipped)
    monkeypatch.setenv(ckpt.CHECKPOINTS_ENV, str(shipped))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    images, labels = xj.data.mnist("sample")
    split = (images[::15], labels[::15])
    splits = {"train": split, "validation": split, "test": split}
    monkeypatch.setattr(T, "load_mnist_splits", lambda path=None: (splits, {}))

    def fit(name, settings, splits, epochs, key, progress):
        model = xj.models.zoo.build(name)
        params = np_init(model, xj.models.mnist.example_input(model), seed=1)["params"]
        return model, {"params": params}, {"loss": "none", "validation_accuracy": 0.0, "best_epoch": 0, "history": []}

    monkeypatch.setattr(T, "_train_classifier", fit)
    return shipped, work


def _unreachable(*args, **kwargs):
    raise AssertionError("training started before the arguments were checked")


def test_train_checks_arguments_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(T, "load_mnist_splits", _unreachable)
    monkeypatch.setattr(T, "_train_classifier", _unreachable)
    file = tmp_path / "taken.txt"
    file.write_text("mine")
    assert cli.main(["train", "mnist_cnn", "--epochs", "0", "--out", str(tmp_path)]) == 2
    assert "argument --epochs" in capsys.readouterr().err
    assert cli.main(["train", "mnist_cnn", "--out", str(file)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert cli.main(["train", "mnist_cnn", "--out", str(file / "sub")]) == 2
    assert "is a file" in capsys.readouterr().err
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "manifest.json").write_text('{"files": []}')
    assert cli.main(["train", "mnist_cnn", "--out", str(tmp_path / "foreign")]) == 2
    assert "manifest" in capsys.readouterr().err
    with pytest.raises(xj.InputError, match="epochs"):
        T.train("mnist_cnn", epochs=0, out_dir=tmp_path / "new")
    with pytest.raises(OutputError, match="is a file"):
        T.train("mnist_cnn", out_dir=file)
    assert file.read_text() == "mine" and not (tmp_path / "new").exists()


def test_train_never_replaces_the_shipped_checkpoint_by_default(quick_training, capsys):
    shipped, work = quick_training
    before = _snapshot(shipped)
    assert cli.main(["train", "mnist_cnn", "--epochs", "1"]) == 0
    written = work / "xai_jax_checkpoints"
    assert str(written / "mnist_cnn.msgpack") in capsys.readouterr().out
    entry = ckpt.read_manifest(written)["models"]["mnist_cnn"]
    assert entry["sha256"] == ckpt.file_sha256(written / "mnist_cnn.msgpack")
    xj.models.load("mnist_cnn", path=written / "mnist_cnn.msgpack")  # hash and tree verified
    assert cli.main(["train", "mnist_cnn", "--out", str(shipped)]) == 2
    assert "--replace-shipped" in capsys.readouterr().err
    assert _snapshot(shipped) == before


def test_train_replace_shipped_keeps_a_backup(quick_training):
    shipped, _ = quick_training
    old_bytes = (shipped / "mnist_cnn.msgpack").read_bytes()
    old_entry = ckpt.read_manifest(shipped)["models"]["mnist_cnn"]
    assert cli.main(["train", "mnist_cnn", "--replace-shipped"]) == 0
    new_entry = ckpt.read_manifest(shipped)["models"]["mnist_cnn"]
    assert new_entry["sha256"] == ckpt.file_sha256(shipped / "mnist_cnn.msgpack") != old_entry["sha256"]
    (backup,) = (shipped / ckpt.BACKUPS_DIR).iterdir()
    assert (backup / "mnist_cnn.msgpack").read_bytes() == old_bytes
    assert ckpt.read_manifest(backup)["models"]["mnist_cnn"] == old_entry
    xj.models.load("mnist_cnn", path=backup / "mnist_cnn.msgpack")  # the old file loads from there, hash verified
    assert sorted(p.name for p in shipped.iterdir()) == [ckpt.BACKUPS_DIR, "manifest.json", "mnist_cnn.msgpack"]
