"""Checkpoint I/O: round trip, and a clear CheckpointError for every way a file can be wrong."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models.utils import np_init
from xai_jax.core.errors import CheckpointError, OutputError, UnknownNameError
from xai_jax.models import checkpoint as ckpt
from xai_jax.models import mnist, zoo
from xai_jax.models.checkpoint import load_checkpoint, save_checkpoint


def _init(model):
    return np_init(model, mnist.example_input(model))


@pytest.fixture(scope="module")
def cnn_vars():
    return _init(mnist.MnistCNN())


def _manifest_dir(tmp_path, name, model, variables):
    """A checkpoint folder with one file and its manifest entry, like the shipped one."""
    file = tmp_path / f"{name}.msgpack"
    digest = save_checkpoint(file, variables)
    ckpt.update_manifest(
        tmp_path, name, {"file": file.name, "class": type(model).__name__, "kwargs": {}, "sha256": digest}
    )
    return file


def _same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_identical(tmp_path, cnn_vars):
    path = tmp_path / "m.msgpack"
    digest = save_checkpoint(path, cnn_vars)
    assert digest == ckpt.file_sha256(path)
    _same(load_checkpoint(path, mnist.MnistCNN()), cnn_vars)


def test_round_trip_batch_stats(tmp_path):
    model = mnist.DCGANGenerator()
    variables = _init(model)
    variables = {**variables, "batch_stats": jax.tree.map(lambda a: a + 0.5, variables["batch_stats"])}
    path = tmp_path / "g.msgpack"
    save_checkpoint(path, variables)
    restored = load_checkpoint(path, model)
    _same(restored, variables)
    z = jax.random.normal(jax.random.key(3), (2, 100))
    np.testing.assert_array_equal(model.apply(restored, z), model.apply(variables, z))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.msgpack", mnist.MnistCNN())


def test_corrupt_file_sha256(tmp_path, cnn_vars):
    file = _manifest_dir(tmp_path, "mnist_cnn", mnist.MnistCNN(), cnn_vars)
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a weight: still parses
    file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch: file is corrupt or was replaced"):
        load_checkpoint(file, mnist.MnistCNN())


def test_explicit_sha256(tmp_path, cnn_vars):
    path = tmp_path / "m.msgpack"
    digest = save_checkpoint(path, cnn_vars)
    load_checkpoint(path, mnist.MnistCNN(), sha256=digest)
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path, mnist.MnistCNN(), sha256="0" * 64)


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_bytes(tmp_path, cnn_vars, keep):
    path = tmp_path / "m.msgpack"
    save_checkpoint(path, cnn_vars)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="cannot be parsed"):
        load_checkpoint(path, mnist.MnistCNN())


def test_not_msgpack(tmp_path):
    path = tmp_path / "m.msgpack"
    path.write_text("this is not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(path, mnist.MnistCNN())


def test_other_model(tmp_path):
    path = tmp_path / "cam.msgpack"
    save_checkpoint(path, _init(mnist.CamCNN()))
    with pytest.raises(CheckpointError, match="different model") as info:
        load_checkpoint(path, mnist.MnistCNN())
    msg = str(info.value)
    assert "missing params/fc1, params/fc2; unexpected params/conv5, params/fc" in msg


def test_other_configuration_shapes(tmp_path):
    path = tmp_path / "m5.msgpack"
    save_checkpoint(path, _init(mnist.MnistCNN(num_classes=5)))
    with pytest.raises(CheckpointError, match=r"params/fc2/kernel has shape \(128, 5\), the model expects \(128, 10\)"):
        load_checkpoint(path, mnist.MnistCNN())


def test_missing_batch_stats(tmp_path):
    variables = _init(mnist.DCGANGenerator())
    path = tmp_path / "g.msgpack"
    save_checkpoint(path, {"params": variables["params"]})
    with pytest.raises(CheckpointError, match="missing batch_stats"):
        load_checkpoint(path, mnist.DCGANGenerator())


def test_zoo_unknown_name_lists_names():
    with pytest.raises(UnknownNameError) as info:
        zoo.load("mnist_cnnn")
    msg = str(info.value)
    assert "'mnist_cnn'" in msg and "dcgan_generator" in msg
    assert isinstance(info.value, KeyError)


def test_zoo_env_override_and_verification(tmp_path, monkeypatch, cnn_vars):
    file = _manifest_dir(tmp_path, "mnist_cnn", mnist.MnistCNN(), cnn_vars)
    monkeypatch.setenv(ckpt.CHECKPOINTS_ENV, str(tmp_path))
    assert zoo.available() == ["mnist_cnn"]
    model, variables = zoo.load("mnist_cnn")
    assert isinstance(model, mnist.MnistCNN)
    _same(variables, cnn_vars)
    with pytest.raises(CheckpointError, match="no checkpoint for 'cam_cnn'"):
        zoo.load("cam_cnn")
    file.write_bytes(file.read_bytes()[:-1] + b"\x00")
    with pytest.raises(CheckpointError, match="sha256"):
        zoo.load("mnist_cnn")


def test_zoo_user_path_checked(tmp_path, cnn_vars):
    path = tmp_path / "mine.msgpack"  # not in any manifest: structure check only
    save_checkpoint(path, cnn_vars)
    _model, variables = zoo.load("mnist_cnn", path=path)
    _same(variables, cnn_vars)
    with pytest.raises(CheckpointError, match="different model"):
        zoo.load("cam_cnn", path=path)


def test_zoo_same_tree_other_model_refused():
    """mnist_cnn, mc_dropout_cnn and evidential_cnn share one parameter tree; the shipped manifest
    tells their files apart."""
    shipped = ckpt.checkpoints_dir()
    for name, other in (
        ("mnist_cnn", "evidential_cnn"),
        ("evidential_cnn", "mc_dropout_cnn"),
        ("mc_dropout_cnn", "mnist_cnn"),
    ):
        with pytest.raises(CheckpointError, match=f"is the '{other}' model's .*not '{name}'"):
            zoo.load(name, path=shipped / f"{other}.msgpack")
    model, _ = zoo.load("evidential_cnn", path=shipped / "evidential_cnn.msgpack")
    assert type(model).__name__ == "EvidentialCNN"


@pytest.mark.parametrize(
    "manifest", ['{"files": ["m.msgpack"]}', '{"models": {"my_experiment": {"file": "m.msgpack"}}}']
)
def test_zoo_user_path_beside_a_foreign_manifest(tmp_path, cnn_vars, manifest):
    """A manifest.json that is not ours, or names the file after no zoo model, does not block loading."""
    save_checkpoint(tmp_path / "m.msgpack", cnn_vars)
    (tmp_path / "manifest.json").write_text(manifest)
    _, variables = zoo.load("mnist_cnn", path=tmp_path / "m.msgpack")
    _same(variables, cnn_vars)


def test_manifest_kept_on_update(tmp_path):
    ckpt.update_manifest(tmp_path, "a", {"file": "a.msgpack"})
    ckpt.update_manifest(tmp_path, "b", {"file": "b.msgpack"})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert list(manifest["models"]) == ["a", "b"] and manifest["format"] == ckpt.MANIFEST_FORMAT


def test_shipped_manifest_matches_files():
    directory = ckpt.checkpoints_dir()
    entries = ckpt.read_manifest(directory)["models"]
    if not entries:
        pytest.skip("no shipped checkpoints")
    for name, entry in entries.items():
        path = directory / entry["file"]
        assert path.is_file(), name
        assert ckpt.file_sha256(path) == entry["sha256"], name
        assert path.stat().st_size == entry["size_bytes"] < 5 * 2**20, name
        for key in ("class", "kwargs", "data", "num_params", "training"):
            assert key in entry, (name, key)
        assert {"seed", "optimizer"} <= set(entry["training"]), name
        assert {"epochs", "steps"} & set(entry["training"]), name  # steps: a task that draws fresh data per step
        if entry["kind"] == "classifier":
            assert entry["test_accuracy"] >= 0.985, name


def test_copied_shipped_file_outside_manifest(tmp_path):
    if "mnist_cnn" not in zoo.available():
        pytest.skip("mnist_cnn not shipped")
    src = ckpt.checkpoints_dir() / zoo.info("mnist_cnn")["file"]
    dst = tmp_path / "copy.msgpack"
    shutil.copy(src, dst)
    _, variables = zoo.load("mnist_cnn", path=dst)
    _, shipped = zoo.load("mnist_cnn")
    _same(variables, shipped)
    assert all(isinstance(a, jnp.ndarray) for a in jax.tree.leaves(variables))


def test_unknown_manifest_kwargs_named(tmp_path, monkeypatch, cnn_vars):
    """A manifest entry written for another version of the model: a CheckpointError naming the key,
    not a raw TypeError from the constructor."""
    _manifest_dir(tmp_path, "mnist_cnn", mnist.MnistCNN(), cnn_vars)
    monkeypatch.setenv(ckpt.CHECKPOINTS_ENV, str(tmp_path))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["models"]["mnist_cnn"]["kwargs"] = {"num_classes": 10, "widht": 64}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"'widht' are not arguments of MnistCNN \(it takes num_classes"):
        zoo.load("mnist_cnn")
    manifest["models"]["mnist_cnn"]["kwargs"] = [10]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="'kwargs' must be a mapping"):
        zoo.load("mnist_cnn")


def test_directory_as_path(tmp_path, cnn_vars):
    save_checkpoint(tmp_path / "mine.msgpack", cnn_vars)
    with pytest.raises(CheckpointError, match=r"is a directory; give the .msgpack file inside it \(it holds mine"):
        zoo.load("mnist_cnn", path=tmp_path)
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path, mnist.MnistCNN())


def test_failed_manifest_write_keeps_the_old_one(tmp_path, monkeypatch):
    ckpt.update_manifest(tmp_path, "a", {"file": "a.msgpack"})
    before = (tmp_path / "manifest.json").read_bytes()

    def interrupted(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.os, "replace", interrupted)
    with pytest.raises(OSError, match="No space left"):
        ckpt.update_manifest(tmp_path, "b", {"file": "b.msgpack"})
    assert (tmp_path / "manifest.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary file left behind


def test_checkpoint_dir_checked_before_writing(tmp_path):
    ckpt.check_checkpoint_dir(tmp_path / "new" / "folder", ["m.msgpack"])  # creatable: fine, and nothing created
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        ckpt.check_checkpoint_dir(tmp_path / "file")
    (tmp_path / "m.msgpack").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        ckpt.check_checkpoint_dir(tmp_path, ["m.msgpack"])
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(OutputError, match="not a readable xai_jax checkpoint manifest"):
        ckpt.check_checkpoint_dir(tmp_path)


def test_backup_entry_is_a_loadable_checkpoint_folder(tmp_path, cnn_vars):
    file = _manifest_dir(tmp_path, "mnist_cnn", mnist.MnistCNN(), cnn_vars)
    backup = ckpt.backup_entry(tmp_path, "mnist_cnn")
    assert backup.parent == tmp_path / ckpt.BACKUPS_DIR
    assert (backup / file.name).read_bytes() == file.read_bytes()
    assert ckpt.read_manifest(backup)["models"]["mnist_cnn"] == ckpt.read_manifest(tmp_path)["models"]["mnist_cnn"]
    _same(zoo.load("mnist_cnn", path=backup / file.name)[1], cnn_vars)
    assert ckpt.backup_entry(tmp_path, "cam_cnn") is None  # nothing to keep
    assert ckpt.new_backup_dir(tmp_path) != backup  # a second backup in the same second gets its own folder
