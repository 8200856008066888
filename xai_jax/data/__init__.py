"""Data: MNIST loaders and the bundled sample.

Stands apart from the methods: imports nothing of xai_jax but its errors, so a model can be trained
or a report written without pulling in the attribution machinery.
"""

from .loaders import DEFAULT_NPZ, ENV_VAR, SOURCES, SPLITS, VALIDATION_SIZE, mnist, sample, sample_test_indices

__all__ = ["DEFAULT_NPZ", "ENV_VAR", "SOURCES", "SPLITS", "VALIDATION_SIZE", "mnist", "sample", "sample_test_indices"]
