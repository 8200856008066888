"""Rebuild the bundled sample ``mnist_sample.npz``: the first 30 test images of each class.

    python -m xai_jax.data.make_sample [path/to/mnist.npz or IDX folder] [--out FILE] [--per-class N]

The sample comes from the standard *test* split (never training images, so an example run on it is an
honest held-out look) and records the test indices it took, so that a test can check it against the
full file.  Images stay uint8 and the file is compressed: 300 digits take about 50 KB.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .loaders import DEFAULT_NPZ, SAMPLE_FILE, mnist


def build_sample(labels: np.ndarray, per_class: int = 30) -> np.ndarray:
    """Test indices of the first ``per_class`` images of each class, in test-set order."""
    labels = np.asarray(labels)
    picks = [np.flatnonzero(labels == c)[:per_class] for c in range(10)]
    if any(len(p) < per_class for p in picks):
        raise ValueError(f"fewer than {per_class} test images in some class: {[len(p) for p in picks]}")
    return np.sort(np.concatenate(picks))


def write_sample(source: str | Path = DEFAULT_NPZ, out: str | Path = SAMPLE_FILE, per_class: int = 30) -> Path:
    """Write the sample of ``source``'s test split to ``out`` (uint8 images, labels, test indices)."""
    images, labels = mnist("test", source)
    indices = build_sample(labels, per_class)
    pixels = np.round(images[indices, ..., 0] * 255).astype(np.uint8)  # exact: the loader divided uint8 by 255
    np.savez_compressed(
        out, images=pixels, labels=labels[indices].astype(np.uint8), test_indices=indices.astype(np.int32)
    )
    return Path(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default=str(DEFAULT_NPZ), help="an .npz or a folder of IDX files")
    parser.add_argument("--out", default=str(SAMPLE_FILE))
    parser.add_argument("--per-class", type=int, default=30)
    args = parser.parse_args(argv)
    out = write_sample(args.source, args.out, args.per_class)
    print(f"wrote {out} ({out.stat().st_size} bytes, {10 * args.per_class} images)")


if __name__ == "__main__":
    main()
