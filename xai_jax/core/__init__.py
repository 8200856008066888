"""The calling convention shared by every method (imports nothing else of xai_jax)."""

from . import numerics
from .batching import chunked_sum, chunked_vmap
from .errors import (
    CheckpointError, DataError, InputError, LayerNotFoundError, TargetError, UnknownNameError,
    UnsupportedError, XaiJaxError,
)
from .model import Forward, make_forward
from .problem import Inputs, Problem, check_input, compiled, prepare
from .registry import METHODS, MethodInfo, register
from .targets import Target, TargetSpec, resolve_target

__all__ = [
    "METHODS", "CheckpointError", "DataError", "Forward", "InputError", "Inputs", "LayerNotFoundError",
    "MethodInfo", "Problem", "Target", "TargetError", "TargetSpec", "UnknownNameError", "UnsupportedError",
    "XaiJaxError", "check_input", "chunked_sum", "chunked_vmap", "compiled", "make_forward", "numerics",
    "prepare", "register", "resolve_target",
]
