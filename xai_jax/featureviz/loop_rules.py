"""Gradient rules that keep XLA:CPU fast inside a loop: moved to :mod:`xai_jax.trace.xla_cpu`
(the measurements are there); re-exported here."""

from ..trace.xla_cpu import LOOP_GRADIENT_RULES
from ..trace.xla_cpu import loop_friendly_conv_rule as conv_rule

__all__ = ["LOOP_GRADIENT_RULES", "conv_rule"]
