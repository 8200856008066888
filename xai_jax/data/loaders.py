"""MNIST from a local file, from tensorflow-datasets, or from the small sample shipped in the package.

``mnist(split)`` returns ``(images, labels)``: images float32 ``(N, 28, 28, 1)`` in ``[0, 1]`` (NHWC,
the layout of the shipped models), labels int32 ``(N,)``.

Splits
  ``"train"``       the first 55,000 of the 60,000 training images;
  ``"validation"``  the last 5,000 training images: for model selection and calibration, so that the
                    test set is touched only for the final number;
  ``"train_full"``  all 60,000 training images;
  ``"test"``        the standard 10,000 test images (never a training image, never a sample of it);
  ``"sample"``      300 test images bundled in the package (the first 30 of each class, in test-set
                    order; ``sample_test_indices()`` says which), so that examples run offline.

Sources, tried in this order unless ``source=`` names one
  1. ``path``: an ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (the layout of the
     widely used ``mnist.npz``) or a folder with the four IDX files (``train-images-idx3-ubyte``,
     ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
     optionally gzipped);
  2. the environment variable ``XAI_JAX_MNIST`` (the same two kinds of path);
  3. ``../shared/data/mnist.npz`` beside the repository checkout (``DEFAULT_NPZ``);
  4. tensorflow-datasets, when installed and MNIST is already prepared on disk: ``tfds.data_source``
     gives random access to NumPy examples without TensorFlow.  Nothing is downloaded unless the caller
     passes ``download=True``.  TFDS stores its examples in its own (deterministically shuffled)
     order, so its test set is the same 10,000 images in another order and its validation split
     (the last 5,000 of *its* training order) holds other images than the one cut from the ``.npz``.
The sample is never substituted for the full test set: ask for ``split="sample"``.

A path the caller names (``path=``, ``XAI_JAX_MNIST``) that is missing or malformed is an error, not a
reason to look elsewhere: silently falling back would train or evaluate on other data than asked.
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import DataError

SPLITS = ("train", "validation", "train_full", "test", "sample")
SOURCES = ("npz", "idx", "tfds", "bundled")
ENV_VAR = "XAI_JAX_MNIST"
VALIDATION_SIZE = 5000
IMAGE_SHAPE = (28, 28)
SAMPLE_FILE = Path(__file__).with_name("mnist_sample.npz")
# <repo>/xai_jax/data/loaders.py: parents[3] is the folder holding the checkout, where shared/ lives
# (the same place as Path(xai_jax.__file__).parents[2]).
DEFAULT_NPZ = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist.npz"
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_FIX = (
    "Pass path= (an .npz with x_train/y_train/x_test/y_test, or a folder with the four IDX files), "
    f"set {ENV_VAR} to one, prepare MNIST for tensorflow-datasets (mnist(..., source='tfds', "
    "download=True) once, with network), or use split='sample' for the 300 bundled test digits."
)


# ----------------------------------------------------------------------------------- validation


def _as_images_labels(images: Any, labels: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Check one split and convert it to the public layout (float32 NHWC in [0, 1], int32 labels).

    Every check names ``where`` so that a bad file is found without a debugger.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{where}: images have shape {images.shape}, expected (N, 28, 28) or (N, 28, 28, 1).")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{where}: labels have shape {labels.shape}, expected (N,) class indices (not one-hot).")
    if len(images) != len(labels):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels.")
    if len(images) == 0:
        raise DataError(f"{where}: the split is empty.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels have dtype {labels.dtype}, expected integers 0..9.")
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{where}: labels outside 0..9 (found {labels.min()}..{labels.max()}).")
    if images.dtype == np.uint8:
        out = images.astype(np.float32) / np.float32(255)
    elif np.issubdtype(images.dtype, np.integer):
        if images.min() < 0 or images.max() > 255:
            raise DataError(f"{where}: integer pixels outside 0..255 (found {images.min()}..{images.max()}).")
        out = images.astype(np.float32) / np.float32(255)
    elif np.issubdtype(images.dtype, np.floating):
        out = images.astype(np.float32)
        if not np.isfinite(out).all():
            raise DataError(f"{where}: images contain NaN or infinite pixels.")
        if out.min() < 0 or out.max() > 1:
            raise DataError(
                f"{where}: float pixels outside [0, 1] (found {out.min():g}..{out.max():g}); "
                "store uint8 0..255 or floats already scaled to [0, 1]."
            )
    else:
        raise DataError(f"{where}: images have dtype {images.dtype}, expected uint8 or float.")
    return out[..., None], labels.astype(np.int32)


# ----------------------------------------------------------------------------------- local files


def _read_idx(path: Path) -> np.ndarray:
    """One IDX file (LeCun's format: 0, 0, type 0x08 = uint8, ndim, big-endian sizes, raw bytes)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as err:  # unreadable, bad/truncated gzip stream
        raise DataError(f"{path}: cannot read IDX file ({type(err).__name__}: {err}).") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number).")
    if raw[2] != 0x08:
        raise DataError(f"{path}: IDX element type 0x{raw[2]:02x}, expected 0x08 (unsigned bytes) for MNIST.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated or corrupt IDX header.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise DataError(
            f"{path}: IDX file has {len(raw)} bytes, its header (shape {shape}) promises {expected} "
            "(truncated or corrupt)."
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _idx_candidates(folder: Path, name: str) -> list[Path]:
    """The spellings found in the wild: ``train-images-idx3-ubyte`` and ``train-images.idx3-ubyte``."""
    dotted = name.replace("-idx", ".idx")
    return [folder / n for n in (name, f"{name}.gz", dotted, f"{dotted}.gz")]


def _idx_arrays(folder: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    found = {key: next((c for c in _idx_candidates(folder, IDX_FILES[key]) if c.is_file()), None) for key in keys}
    missing = [IDX_FILES[k] for k, f in found.items() if f is None]
    if missing:
        present = sorted(p.name for p in folder.iterdir())[:20]
        raise DataError(
            f"{folder}: missing IDX file(s) {', '.join(missing)} (optionally .gz); the folder holds {present}."
        )
    return {key: _read_idx(path) for key, path in found.items()}  # type: ignore[arg-type]


def _npz_arrays(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files"):
                raise DataError(f"{path}: a single .npy array, expected an .npz with {', '.join(IDX_FILES)}.")
            missing = [k for k in IDX_FILES if k not in archive.files]
            if missing:
                raise DataError(
                    f"{path}: missing arrays {missing} (found {sorted(archive.files)}); expected {list(IDX_FILES)}."
                )
            return {k: archive[k] for k in keys}
    except DataError:
        raise
    except Exception as err:  # zip/format errors of a corrupt or foreign file
        raise DataError(f"{path}: not a readable .npz file ({type(err).__name__}: {err}).") from err


@functools.lru_cache(maxsize=4)
def _cached_arrays(path: str, kind: str, keys: tuple[str, ...], stamp: tuple[int, int]) -> dict[str, np.ndarray]:
    """Raw uint8 arrays of one file, cached per (path, mtime, size): ``train``, ``validation`` and
    ``test`` are usually read one after the other and decompressing 60,000 images takes a second."""
    del stamp  # part of the cache key only: a rewritten file is read again
    arrays = _idx_arrays(Path(path), keys) if kind == "idx" else _npz_arrays(Path(path), keys)
    for value in arrays.values():
        value.setflags(write=False)  # shared by later calls: nobody may change it in place
    return arrays


def _stamp(path: Path) -> tuple[int, int]:
    if path.is_dir():
        stats = [p.stat() for p in sorted(path.iterdir()) if p.is_file()]
        return max((s.st_mtime_ns for s in stats), default=0), sum(s.st_size for s in stats)
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def _split_of(get: Any, split: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``split`` out of the train/test arrays returned by ``get(keys)``."""
    if split == "test":
        arrays = get(("x_test", "y_test"))
        return _as_images_labels(arrays["x_test"], arrays["y_test"], f"{where} [test]")
    arrays = get(("x_train", "y_train"))
    x, y = arrays["x_train"], arrays["y_train"]
    if len(x) != len(y):
        raise DataError(f"{where} [train]: {len(x)} images but {len(y)} labels.")
    if split != "train_full":
        if len(x) <= VALIDATION_SIZE:
            raise DataError(
                f"{where}: {len(x)} training images; the train/validation splits need more than "
                f"{VALIDATION_SIZE} (use split='train_full')."
            )
        cut = len(x) - VALIDATION_SIZE
        x, y = (x[:cut], y[:cut]) if split == "train" else (x[cut:], y[cut:])
    return _as_images_labels(x, y, f"{where} [{split}]")


def _from_local(path: Path, split: str, kind: str | None, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``split`` from an ``.npz`` file or an IDX folder; ``kind`` forces one of the two."""
    if not path.exists():
        raise DataError(f"{path} (from {what}) does not exist. {_FIX}")
    actual = "idx" if path.is_dir() else "npz"
    if kind is not None and kind != actual:
        expected = "a folder of IDX files" if kind == "idx" else "an .npz file"
        raise DataError(
            f"source={kind!r} expects {expected}, but {path} is {'a folder' if path.is_dir() else 'a file'}."
        )
    resolved = str(path.resolve())

    def get(keys: tuple[str, ...]) -> dict[str, np.ndarray]:
        # Only the arrays asked for are read: the test split is a seventh of the file.
        return _cached_arrays(resolved, actual, keys, _stamp(path))

    return _split_of(get, split, str(path))


# ----------------------------------------------------------------------------------- tensorflow-datasets


def _from_tfds(split: str, data_dir: str | None = None, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``split`` from ``tfds.data_source("mnist")``: random access, NumPy, no TensorFlow.

    Reads TFDS's ``train``/``test`` split and cuts train/validation by index here (not with TFDS's
    ``train[:-5000]`` syntax), so that one code path serves every split and ``tfds.testing.mock_data``
    exercises it.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise DataError("tensorflow-datasets is not installed (pip install tensorflow-datasets).") from err
    base = "test" if split == "test" else "train"
    where = f"tensorflow-datasets mnist/{base} (data_dir={data_dir or 'default'})"
    try:
        source = tfds.data_source("mnist", split=base, data_dir=data_dir, download=download)
        n = len(source)
        if split in ("train", "validation") and n <= VALIDATION_SIZE:
            raise DataError(f"{where}: {n} training examples; train/validation need more than {VALIDATION_SIZE}.")
        cut = n - VALIDATION_SIZE
        indices = {"train": range(cut), "validation": range(cut, n)}.get(split, range(n))
        examples = [source[i] for i in indices]
    except DataError:
        raise
    except Exception as err:  # not prepared on disk, no network to prepare it, no PIL/OpenCV to decode
        hint = "" if download else " (not prepared on disk; download=True lets tensorflow-datasets fetch it)"
        raise DataError(f"{where}: unavailable{hint}: {type(err).__name__}: {str(err)[:300]}") from err
    images = np.stack([np.asarray(e["image"]) for e in examples])
    labels = np.asarray([int(e["label"]) for e in examples], np.int64)
    return _as_images_labels(images, labels, f"{where} [{split}]")


# ----------------------------------------------------------------------------------- the sample


def sample() -> tuple[np.ndarray, np.ndarray]:
    """The 300 bundled test digits (the first 30 of each class, in test-set order): ``(images, labels)``.

    Shipped inside the package so that examples, notebooks and the CLI run without any download.
    """
    if not SAMPLE_FILE.is_file():
        raise DataError(f"the bundled sample {SAMPLE_FILE} is missing from the installation (reinstall xai_jax).")
    with np.load(SAMPLE_FILE) as archive:
        return _as_images_labels(archive["images"], archive["labels"], str(SAMPLE_FILE))


def sample_test_indices() -> np.ndarray:
    """Indices into the standard 10,000-image test split (``.npz``/IDX order) of the sample's images."""
    with np.load(SAMPLE_FILE) as archive:
        return archive["test_indices"].astype(np.int64)


# ----------------------------------------------------------------------------------- public entry


def mnist(
    split: str = "test",
    path: str | os.PathLike[str] | None = None,
    *,
    source: str | None = None,
    download: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``(images, labels)``: float32 ``(N, 28, 28, 1)`` in [0, 1] and int32 ``(N,)``.

    Args:
      split: ``"train"`` (55,000) | ``"validation"`` (5,000) | ``"train_full"`` (60,000) |
        ``"test"`` (10,000) | ``"sample"`` (the 300 bundled test digits).
      path: an ``.npz`` file or a folder of IDX files (see the module docstring); with
        ``source="tfds"`` the TFDS ``data_dir``.
      source: ``None`` tries path, ``$XAI_JAX_MNIST``, ``DEFAULT_NPZ``, then tensorflow-datasets;
        ``"npz"``/``"idx"`` force a file kind (from ``path``, else ``$XAI_JAX_MNIST``, else
        ``DEFAULT_NPZ``); ``"tfds"`` forces tensorflow-datasets; ``"bundled"`` the sample.
      download: let tensorflow-datasets download and prepare MNIST (network).  Off by default so
        that nothing is ever fetched behind the caller's back.

    Raises:
      DataError: unknown split/source, malformed data, or no source has the data; the message
        names every place tried and how to provide the data.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    if source is not None and source not in SOURCES:
        raise DataError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)} (or None to try each).")
    if source == "bundled" and split != "sample":
        raise DataError(f"the bundled source holds only the 300-image sample, not {split!r}: use split='sample'.")
    if split == "sample":
        if source not in (None, "bundled"):
            raise DataError(
                f"split='sample' is bundled in the package; it has no {source!r} source (leave source=None)."
            )
        return sample()
    if source == "tfds":
        return _from_tfds(split, None if path is None else str(path), download)

    env = os.environ.get(ENV_VAR) or None
    kind = source  # None, "npz" or "idx"
    if path is not None:
        return _from_local(Path(path), split, kind, "path")
    if env is not None:
        return _from_local(Path(env), split, kind, f"${ENV_VAR}")
    tried = ["path= (not given)", f"${ENV_VAR} (not set)"]
    if DEFAULT_NPZ.exists() and kind in (None, "npz"):
        return _from_local(DEFAULT_NPZ, split, kind, "the default location")
    tried.append(f"{DEFAULT_NPZ} ({'does not exist' if not DEFAULT_NPZ.exists() else 'not an IDX folder'})")
    if kind is None:
        try:
            return _from_tfds(split, None, download)
        except DataError as err:
            tried.append(str(err))
    else:
        tried.append(f"tensorflow-datasets (skipped: source={kind!r})")
    sample_note = " The bundled sample is not a substitute for the full test set." if split == "test" else ""
    raise DataError(f"no MNIST data found for split {split!r}. Tried: {'; '.join(tried)}.{sample_note} {_FIX}")
