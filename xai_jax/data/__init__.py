"""Data: MNIST loaders and the bundled sample (imports nothing of xai_jax but its errors)."""

from .loaders import SPLITS, mnist, sample, sample_test_indices

__all__ = ["SPLITS", "mnist", "sample", "sample_test_indices"]
