"""MNIST loaders: npz, IDX (plain and gzipped), tensorflow-datasets (mocked, no network), the sample."""

import gzip

import numpy as np
import pytest

import xai_jax as xj
from xai_jax.data import loaders as mnist_module


def _write_idx(path, array, gz=False):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.fixture()
def small_arrays():
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (5010, 28, 28), np.uint8), "y_train": rng.integers(0, 10, 5010, np.uint8),
            "x_test": rng.integers(0, 256, (7, 28, 28), np.uint8), "y_test": rng.integers(0, 10, 7, np.uint8)}


def test_npz_splits_and_layout(tmp_path, small_arrays):
    path = tmp_path / "m.npz"
    np.savez(path, **small_arrays)
    images, labels = xj.data.mnist("test", path)
    assert images.shape == (7, 28, 28, 1) and images.dtype == np.float32 and labels.dtype == np.int32
    np.testing.assert_array_equal(images[..., 0], small_arrays["x_test"] / np.float32(255))
    train, _ = xj.data.mnist("train", path)
    validation, vlabels = xj.data.mnist("validation", path)
    assert len(train) == 10 and len(validation) == 5000
    np.testing.assert_array_equal(vlabels, small_arrays["y_train"][10:])


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder(tmp_path, small_arrays, gz):
    for key, name in mnist_module.IDX_FILES.items():
        _write_idx(tmp_path / (name + (".gz" if gz else "")), small_arrays[key], gz)
    images, labels = xj.data.mnist("test", tmp_path)
    np.testing.assert_array_equal(labels, small_arrays["y_test"])
    np.testing.assert_array_equal(images[..., 0], small_arrays["x_test"] / np.float32(255))


def test_corrupt_idx_is_a_data_error(tmp_path, small_arrays):
    for key, name in mnist_module.IDX_FILES.items():
        _write_idx(tmp_path / name, small_arrays[key])
    raw = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw[:-100])
    with pytest.raises(xj.DataError, match="truncated or corrupt"):
        xj.data.mnist("test", tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(xj.DataError, match="magic"):
        xj.data.mnist("test", tmp_path)


def test_bad_npz_and_missing_data(tmp_path, monkeypatch):
    np.savez(tmp_path / "wrong.npz", images=np.zeros((2, 28, 28)))
    with pytest.raises(xj.DataError, match="missing arrays"):
        xj.data.mnist("test", tmp_path / "wrong.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(xj.DataError, match="not a readable"):
        xj.data.mnist("test", tmp_path / "junk.npz")
    monkeypatch.setattr(mnist_module, "DEFAULT_NPZ", tmp_path / "absent.npz")
    monkeypatch.delenv("XAI_JAX_MNIST", raising=False)
    monkeypatch.setattr(mnist_module, "_from_tfds", lambda split, data_dir=None: (_ for _ in ()).throw(xj.DataError("no tfds")))
    with pytest.raises(xj.DataError, match="absent.npz.*tensorflow-datasets.*split='sample'"):
        xj.data.mnist("test")
    with pytest.raises(xj.DataError, match="unknown split"):
        xj.data.mnist("holdout")


def test_bundled_sample_is_the_recorded_test_images(mnist_npz):
    images, labels = xj.data.mnist("sample")
    assert images.shape == (300, 28, 28, 1) and np.bincount(labels).tolist() == [30] * 10
    assert 0.0 <= images.min() and images.max() <= 1.0
    test_images, test_labels = xj.data.mnist("test", mnist_npz)
    indices = xj.data.sample_test_indices()
    np.testing.assert_array_equal(images, test_images[indices])
    np.testing.assert_array_equal(labels, test_labels[indices])


def test_full_file_split_sizes(mnist_npz):
    sizes = {split: len(xj.data.mnist(split, mnist_npz)[1]) for split in ("train", "validation", "train_full", "test")}
    assert sizes == {"train": 55000, "validation": 5000, "train_full": 60000, "test": 10000}


def test_tfds_code_path_without_network():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        images, labels = xj.data.mnist("test", source="tfds")
    assert images.shape == (6, 28, 28, 1) and images.dtype == np.float32 and labels.shape == (6,)
    assert 0.0 <= images.min() <= images.max() <= 1.0 and labels.min() >= 0 and labels.max() <= 9
