"""MNIST from a local file, from tensorflow-datasets, or from the small sample shipped inside the package.

``mnist(split)`` returns ``(images, labels)``: images float32 ``(N, 28, 28, 1)`` in ``[0, 1]`` (NHWC,
the layout of the shipped models), labels int32 ``(N,)``.  Splits: ``"train"`` (the first 55,000
training images), ``"validation"`` (the last 5,000 training images: for model selection and
calibration, never the test set), ``"train_full"`` (all 60,000), ``"test"`` (the standard 10,000)
and ``"sample"`` (300 test images bundled in the package, 30 per class, for the offline default).

Sources, in this order unless ``source=`` names one: ``path`` (an ``.npz`` with ``x_train``,
``y_train``, ``x_test``, ``y_test`` or a folder of the four IDX files, optionally gzipped), the
environment variable ``XAI_JAX_MNIST``, ``../shared/data/mnist.npz`` beside the repository, then
tensorflow-datasets (``tfds.data_source``: random access, NumPy, no TensorFlow) when it is installed
and has the data.  The sample never stands in for the full test set.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ..core.errors import DataError

SPLITS = ("train", "validation", "train_full", "test", "sample")
SOURCES = ("npz", "idx", "tfds", "bundled")
VALIDATION_SIZE = 5000
SAMPLE_FILE = Path(__file__).with_name("mnist_sample.npz")
DEFAULT_NPZ = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist.npz"
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}


def _to_float(images: np.ndarray, labels: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = np.asarray(images), np.asarray(labels).reshape(-1)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{where}: images have shape {images.shape}, expected (N, 28, 28).")
    if len(images) != len(labels):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels.")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{where}: labels outside 0..9 ({labels.min()}..{labels.max()}).")
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    return (images.astype(np.float32) / scale)[..., None], labels.astype(np.int32)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read IDX file ({err}).") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path}: IDX file has {len(raw)} bytes, its header promises {expected} (truncated or corrupt).")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _idx_arrays(folder: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for key, name in IDX_FILES.items():
        candidates = [folder / name, folder / f"{name}.gz", folder / name.replace("-idx", ".idx")]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise DataError(f"{folder}: missing IDX file {name}[.gz].")
        arrays[key] = _read_idx(found)
    return arrays


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as archive:
            missing = [k for k in IDX_FILES if k not in archive.files]
            if missing:
                raise DataError(f"{path}: missing arrays {missing} (found {sorted(archive.files)}).")
            return {k: archive[k] for k in IDX_FILES}
    except DataError:
        raise
    except Exception as err:  # zip/pickle errors of a corrupt file
        raise DataError(f"{path}: not a readable .npz file ({type(err).__name__}: {err}).") from err


def _split(arrays: dict[str, np.ndarray], split: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    if split == "test":
        return _to_float(arrays["x_test"], arrays["y_test"], where)
    images, labels = _to_float(arrays["x_train"], arrays["y_train"], where)
    if split == "train_full":
        return images, labels
    cut = len(images) - VALIDATION_SIZE
    return (images[:cut], labels[:cut]) if split == "train" else (images[cut:], labels[cut:])


def _from_tfds(split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise DataError("tensorflow-datasets is not installed (pip install tensorflow-datasets).") from err
    tfds_split = {"test": "test", "train_full": "train", "train": f"train[:-{VALIDATION_SIZE}]", "validation": f"train[-{VALIDATION_SIZE}:]"}[split]
    try:
        source = tfds.data_source("mnist", split=tfds_split, data_dir=data_dir, download=False)
        examples = [source[i] for i in range(len(source))]
    except Exception as err:  # not prepared locally, or no network to prepare it
        raise DataError(f"tensorflow-datasets has no local MNIST ({type(err).__name__}: {str(err)[:200]}).") from err
    images = np.stack([np.asarray(e["image"]) for e in examples]) if examples else np.zeros((0, 28, 28, 1), np.uint8)
    labels = np.asarray([int(e["label"]) for e in examples], np.int64)
    return _to_float(images, labels, "tensorflow-datasets mnist")


def sample() -> tuple[np.ndarray, np.ndarray]:
    """The 300 bundled test digits (30 per class) as ``(images, labels)``."""
    if not SAMPLE_FILE.exists():
        raise DataError(f"the bundled sample {SAMPLE_FILE} is missing from the installation.")
    with np.load(SAMPLE_FILE) as archive:
        return _to_float(archive["images"], archive["labels"], str(SAMPLE_FILE))


def sample_test_indices() -> np.ndarray:
    """Indices into the standard 10k test split of the bundled sample's images."""
    with np.load(SAMPLE_FILE) as archive:
        return archive["test_indices"].copy()


def _local_file(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if path.is_dir():
        return _split(_idx_arrays(path), split, str(path))
    if not path.exists():
        raise DataError(f"{path}: no such file or folder.")
    return _split(_npz_arrays(path), split, str(path))


def mnist(split: str = "test", path: str | os.PathLike | None = None, *, source: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``(images, labels)``: float32 ``(N, 28, 28, 1)`` in [0, 1] and int32 ``(N,)``.

    Args:
      split: ``"train"`` | ``"validation"`` | ``"train_full"`` | ``"test"`` | ``"sample"``.
      path: an ``.npz`` file or a folder of IDX files (see the module docstring).
      source: force one of ``"npz"``, ``"idx"``, ``"tfds"`` (``path`` is then its ``data_dir``),
        ``"bundled"``.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    if source is not None and source not in SOURCES:
        raise DataError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}.")
    if split == "sample" or source == "bundled":
        if split != "sample":
            raise DataError("the bundled source holds only the 300-image sample: use split='sample'.")
        return sample()
    if source == "tfds":
        return _from_tfds(split, None if path is None else str(path))
    if source in ("npz", "idx"):
        if path is None:
            raise DataError(f"source={source!r} needs a path.")
        return _local_file(Path(path), split)
    if path is not None:
        return _local_file(Path(path), split)
    tried = []
    env = os.environ.get("XAI_JAX_MNIST")
    for candidate in ([Path(env)] if env else []) + [DEFAULT_NPZ]:
        if candidate.exists():
            return _local_file(candidate, split)
        tried.append(str(candidate))
    try:
        return _from_tfds(split)
    except DataError as err:
        tried.append(f"tensorflow-datasets ({err})")
    raise DataError(
        f"no MNIST data found for split {split!r}. Tried: {'; '.join(tried)}. Pass path= (an .npz or a "
        "folder of IDX files), set XAI_JAX_MNIST, or use split='sample' for the bundled 300 test digits."
    )
