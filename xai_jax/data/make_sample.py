"""Rebuild the bundled sample: the first 30 test images of each class, in test-set order.

    python -m xai_jax.data.make_sample [path/to/mnist.npz]
"""

import sys

import numpy as np

from .loaders import DEFAULT_NPZ, SAMPLE_FILE


def main(npz: str = str(DEFAULT_NPZ), per_class: int = 30) -> None:
    with np.load(npz) as archive:
        x, y = archive["x_test"], archive["y_test"]
    indices = np.sort(np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)]))
    np.savez_compressed(SAMPLE_FILE, images=x[indices], labels=y[indices].astype(np.uint8), test_indices=indices.astype(np.int32))
    print(f"wrote {SAMPLE_FILE} ({len(indices)} images)")


if __name__ == "__main__":
    main(*sys.argv[1:2])
