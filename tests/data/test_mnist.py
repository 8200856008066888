"""MNIST loaders: npz, IDX (plain and gzipped), tensorflow-datasets (mocked, no network), the sample."""

import gzip
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import xai_jax as xj
from xai_jax.data import loaders
from xai_jax.data.make_sample import write_sample


def _write_idx(path, array, gz=False):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with (gzip.open if gz else open)(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _write_idx_folder(folder, arrays, gz=False):
    for key, name in loaders.IDX_FILES.items():
        _write_idx(folder / (name + (".gz" if gz else "")), arrays[key], gz)


@pytest.fixture()
def small_arrays():
    """A fake MNIST with 5,010 training images: just enough for the 5,000-image validation cut."""
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (5010, 28, 28), np.uint8),
        "y_train": rng.integers(0, 10, 5010, np.uint8),
        "x_test": rng.integers(0, 256, (7, 28, 28), np.uint8),
        "y_test": rng.integers(0, 10, 7, np.uint8),
    }


@pytest.fixture()
def no_default_sources(tmp_path, monkeypatch):
    """Hide every automatic source: no env var, no default file, tensorflow-datasets not importable."""
    monkeypatch.delenv(loaders.ENV_VAR, raising=False)
    monkeypatch.setattr(loaders, "DEFAULT_NPZ", tmp_path / "absent" / "mnist.npz")
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import raises ImportError


def test_default_location_is_the_shared_folder_beside_the_repo():
    assert (Path(xj.__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz") == loaders.DEFAULT_NPZ


def test_npz_splits_and_layout(tmp_path, small_arrays):
    path = tmp_path / "m.npz"
    np.savez(path, **small_arrays)
    images, labels = xj.data.mnist("test", path)
    assert images.shape == (7, 28, 28, 1) and images.dtype == np.float32 and labels.dtype == np.int32
    np.testing.assert_array_equal(images[..., 0], small_arrays["x_test"] / np.float32(255))
    np.testing.assert_array_equal(labels, small_arrays["y_test"])
    train, tlabels = xj.data.mnist("train", path)
    validation, vlabels = xj.data.mnist("validation", str(path), source="npz")
    full, _ = xj.data.mnist("train_full", path)
    assert (len(train), len(validation), len(full)) == (10, 5000, 5010)
    np.testing.assert_array_equal(tlabels, small_arrays["y_train"][:10])
    np.testing.assert_array_equal(vlabels, small_arrays["y_train"][10:])
    np.testing.assert_array_equal(np.concatenate([train, validation]), full)


def test_results_are_fresh_arrays_despite_the_cache(tmp_path, small_arrays):
    path = tmp_path / "m.npz"
    np.savez(path, **small_arrays)
    images, labels = xj.data.mnist("test", path)
    images[:] = 0.5
    labels[:] = 0
    again, again_labels = xj.data.mnist("test", path)
    np.testing.assert_array_equal(again[..., 0], small_arrays["x_test"] / np.float32(255))
    np.testing.assert_array_equal(again_labels, small_arrays["y_test"])


def test_rewritten_file_is_read_again(tmp_path, small_arrays):
    path = tmp_path / "m.npz"
    np.savez(path, **small_arrays)
    xj.data.mnist("test", path)
    np.savez(path, **{**small_arrays, "y_test": np.zeros(7, np.uint8), "x_test": np.zeros((7, 28, 28), np.uint8)})
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # same size; coarse clocks
    images, labels = xj.data.mnist("test", path)
    assert labels.tolist() == [0] * 7 and images.max() == 0


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder(tmp_path, small_arrays, gz):
    _write_idx_folder(tmp_path, small_arrays, gz)
    images, labels = xj.data.mnist("test", tmp_path)
    np.testing.assert_array_equal(labels, small_arrays["y_test"])
    np.testing.assert_array_equal(images[..., 0], small_arrays["x_test"] / np.float32(255))
    _, vlabels = xj.data.mnist("validation", tmp_path, source="idx")
    np.testing.assert_array_equal(vlabels, small_arrays["y_train"][10:])


def test_idx_and_npz_agree(tmp_path, small_arrays):
    np.savez(tmp_path / "m.npz", **small_arrays)
    (tmp_path / "idx").mkdir()
    _write_idx_folder(tmp_path / "idx", small_arrays, gz=True)
    for split in ("train", "validation", "test"):
        for a, b in zip(xj.data.mnist(split, tmp_path / "m.npz"), xj.data.mnist(split, tmp_path / "idx")):
            np.testing.assert_array_equal(a, b)


def test_corrupt_idx_is_a_data_error(tmp_path, small_arrays):
    _write_idx_folder(tmp_path, small_arrays)
    target = tmp_path / "t10k-images-idx3-ubyte"
    raw = target.read_bytes()
    target.write_bytes(raw[:-100])
    with pytest.raises(xj.DataError, match="t10k-images-idx3-ubyte.*truncated or corrupt"):
        xj.data.mnist("test", tmp_path)
    target.write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(xj.DataError, match="magic"):
        xj.data.mnist("test", tmp_path)
    target.write_bytes(raw[:6])
    with pytest.raises(xj.DataError, match="header"):
        xj.data.mnist("test", tmp_path)
    target.unlink()
    gz = tmp_path / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(raw)[:200])  # a cut-off download
    with pytest.raises(xj.DataError, match="cannot read IDX"):
        xj.data.mnist("test", tmp_path)
    gz.unlink()
    with pytest.raises(xj.DataError, match="missing IDX file.*t10k-images-idx3-ubyte"):
        xj.data.mnist("test", tmp_path)


def test_idx_counts_must_agree(tmp_path, small_arrays):
    _write_idx_folder(tmp_path, {**small_arrays, "y_test": small_arrays["y_test"][:5]})
    with pytest.raises(xj.DataError, match="7 images but 5 labels"):
        xj.data.mnist("test", tmp_path)


def test_malformed_npz_is_a_data_error(tmp_path, small_arrays):
    np.savez(tmp_path / "wrong.npz", images=np.zeros((2, 28, 28)))
    with pytest.raises(xj.DataError, match="missing arrays"):
        xj.data.mnist("test", tmp_path / "wrong.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(xj.DataError, match="not a readable"):
        xj.data.mnist("test", tmp_path / "junk.npz")
    cases = {
        "labels outside 0..9": {"y_test": np.full(7, 10, np.uint8)},
        "expected \\(N, 28, 28\\)": {"x_test": np.zeros((7, 32, 32), np.uint8)},
        "not one-hot": {"y_test": np.eye(10, dtype=np.uint8)[:7]},
        "outside \\[0, 1\\]": {"x_test": np.full((7, 28, 28), 255.0)},
        "NaN": {"x_test": np.full((7, 28, 28), np.nan)},
        "expected integers": {"y_test": np.zeros(7, np.float32)},
        "empty": {"x_test": np.zeros((0, 28, 28), np.uint8), "y_test": np.zeros(0, np.uint8)},
    }
    for i, (message, change) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.npz"
        np.savez(path, **{**small_arrays, **change})
        with pytest.raises(xj.DataError, match=message):
            xj.data.mnist("test", path)


def test_float_pixels_in_unit_range_are_accepted(tmp_path, small_arrays):
    x = small_arrays["x_test"].astype(np.float64) / 255
    np.savez(tmp_path / "f.npz", **{**small_arrays, "x_test": x[..., None]})
    images, _ = xj.data.mnist("test", tmp_path / "f.npz")
    np.testing.assert_allclose(images[..., 0], x, rtol=1e-6)


def test_validation_needs_enough_training_images(tmp_path, small_arrays):
    np.savez(
        tmp_path / "m.npz",
        **{**small_arrays, "x_train": small_arrays["x_train"][:100], "y_train": small_arrays["y_train"][:100]},
    )
    with pytest.raises(xj.DataError, match="more than 5000.*train_full"):
        xj.data.mnist("validation", tmp_path / "m.npz")
    assert len(xj.data.mnist("train_full", tmp_path / "m.npz")[1]) == 100


def test_forced_file_kind_must_match(tmp_path, small_arrays):
    np.savez(tmp_path / "m.npz", **small_arrays)
    with pytest.raises(xj.DataError, match="source='idx' expects a folder"):
        xj.data.mnist("test", tmp_path / "m.npz", source="idx")
    with pytest.raises(xj.DataError, match="source='npz' expects an .npz"):
        xj.data.mnist("test", tmp_path, source="npz")


def test_environment_variable(tmp_path, small_arrays, monkeypatch, no_default_sources):
    np.savez(tmp_path / "m.npz", **small_arrays)
    monkeypatch.setenv(loaders.ENV_VAR, str(tmp_path / "m.npz"))
    np.testing.assert_array_equal(xj.data.mnist("test")[1], small_arrays["y_test"])
    np.testing.assert_array_equal(xj.data.mnist("test", source="npz")[1], small_arrays["y_test"])
    monkeypatch.setenv(loaders.ENV_VAR, str(tmp_path / "nowhere.npz"))
    with pytest.raises(xj.DataError, match=r"nowhere.npz \(from \$XAI_JAX_MNIST\) does not exist"):
        xj.data.mnist("test")


def test_explicit_path_wins_and_does_not_fall_back(tmp_path, small_arrays, monkeypatch):
    np.savez(tmp_path / "m.npz", **small_arrays)
    monkeypatch.setenv(loaders.ENV_VAR, str(tmp_path / "m.npz"))
    with pytest.raises(xj.DataError, match=r"missing.npz \(from path\) does not exist"):
        xj.data.mnist("test", tmp_path / "missing.npz")


def test_missing_data_names_every_place_tried(no_default_sources):
    with pytest.raises(xj.DataError) as info:
        xj.data.mnist("test")
    message = str(info.value)
    for expected in (
        "path=",
        "$XAI_JAX_MNIST (not set)",
        "absent/mnist.npz",
        "tensorflow-datasets is not installed",
        "not a substitute for the full test set",
        "split='sample'",
    ):
        assert expected in message, (expected, message)
    # ...and the sample still works offline.
    assert len(xj.data.mnist("sample")[1]) == 300


def test_unknown_arguments():
    with pytest.raises(xj.DataError, match="unknown split 'holdout'.*train, validation"):
        xj.data.mnist("holdout")
    with pytest.raises(xj.DataError, match="unknown source 'web'"):
        xj.data.mnist("test", source="web")
    with pytest.raises(xj.DataError, match="only the 300-image sample"):
        xj.data.mnist("test", source="bundled")
    with pytest.raises(xj.DataError, match="bundled in the package"):
        xj.data.mnist("sample", source="npz")


def test_bundled_sample_layout():
    images, labels = xj.data.mnist("sample")
    same_images, _same_labels = xj.data.sample()
    np.testing.assert_array_equal(images, same_images)
    assert images.shape == (300, 28, 28, 1) and images.dtype == np.float32 and labels.dtype == np.int32
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.max() > 0.9
    assert np.bincount(labels, minlength=10).tolist() == [30] * 10
    indices = xj.data.sample_test_indices()
    assert indices.shape == (300,) and np.all(np.diff(indices) > 0) and indices.max() < 10000
    assert loaders.SAMPLE_FILE.stat().st_size < 300_000


def test_bundled_sample_is_the_recorded_test_images(mnist_npz):
    images, labels = xj.data.mnist("sample")
    test_images, test_labels = xj.data.mnist("test", mnist_npz)
    indices = xj.data.sample_test_indices()
    np.testing.assert_array_equal(images, test_images[indices])
    np.testing.assert_array_equal(labels, test_labels[indices])


def test_make_sample_rebuilds_the_bundled_file(mnist_npz, tmp_path):
    out = write_sample(mnist_npz, tmp_path / "s.npz")
    with np.load(out) as new, np.load(loaders.SAMPLE_FILE) as shipped:
        assert sorted(new.files) == sorted(shipped.files)
        for key in shipped.files:
            np.testing.assert_array_equal(new[key], shipped[key])
            assert new[key].dtype == shipped[key].dtype


def test_full_file_split_sizes(mnist_npz):
    sizes = {split: len(xj.data.mnist(split, mnist_npz)[1]) for split in ("train", "validation", "train_full", "test")}
    assert sizes == {"train": 55000, "validation": 5000, "train_full": 60000, "test": 10000}
    # The standard test set's class counts (980 zeros ... 1009 nines).
    assert np.bincount(xj.data.mnist("test", mnist_npz)[1]).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]


# ------------------------------------------------------------------ tensorflow-datasets, without network


def test_tfds_code_path_without_network():
    """``tfds.testing.mock_data`` replaces the stored records with examples generated from MNIST's
    real features (uint8 (28, 28, 1) images, int64 labels) and `tfds.data_source` returns them: our
    real code path runs, nothing is downloaded."""
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        images, labels = xj.data.mnist("test", source="tfds")
    assert (
        images.shape == (6, 28, 28, 1)
        and images.dtype == np.float32
        and labels.shape == (6,)
        and labels.dtype == np.int32
    )
    assert 0.0 <= images.min() <= images.max() <= 1.0 and images.max() > 0 and labels.min() >= 0 and labels.max() <= 9


def test_tfds_train_validation_cut():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5003, policy=tfds.testing.MockPolicy.USE_CODE):
        full = xj.data.mnist("train_full", source="tfds")
        train = xj.data.mnist("train", source="tfds")
        validation = xj.data.mnist("validation", source="tfds")
    assert (len(full[1]), len(train[1]), len(validation[1])) == (5003, 3, 5000)
    for whole, part_a, part_b in zip(full, train, validation):  # mock examples are deterministic per index
        np.testing.assert_array_equal(whole, np.concatenate([part_a, part_b]))


def test_tfds_without_prepared_data_is_a_data_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(xj.DataError, match="tensorflow-datasets mnist/test.*unavailable.*download=True"):
        xj.data.mnist("test", tmp_path / "empty_tfds_dir", source="tfds")  # download=False: no network
