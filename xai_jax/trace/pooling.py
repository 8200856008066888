"""Max pooling with a gather-free gradient: moved to :mod:`xai_jax.trace.xla_cpu` (re-exported here)."""

from .xla_cpu import (
    FAST_GRADIENT_RULES,
    max_pool_first_max_gradient,
    reduce_window_max_rule,
    window_slices,
)

__all__ = ["FAST_GRADIENT_RULES", "max_pool_first_max_gradient", "reduce_window_max_rule", "window_slices"]
