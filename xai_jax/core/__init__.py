"""The calling convention shared by every method (imports nothing else of xai_jax)."""

from . import checks, numerics
from .batching import chunked_sum, chunked_vmap
from .errors import (
    CheckpointError, DataError, InputError, LayerNotFoundError, OutputError, ResourceExhaustedError, TargetError, UnknownNameError,
    UnsupportedError, XaiJaxError,
)
from .methods import (
    METHODS, ArrayOption, Baseline, BoundMethod, Choice, ChunkSize, FiniteFloat, Flag, InputMethod, Key, Method, MethodCall, MethodValue,
    NonNegativeFloat, NonNegativeInt, Option, OptionContext, PositiveFloat, PositiveInt, fix_target, method, method_call,
    resolve_baseline, resolve_method,
)
from .model import Forward, make_forward
from .problem import Inputs, Problem, check_input, compiled, prepare
from .targets import Target, TargetSpec, resolve_target

__all__ = [
    "METHODS", "ArrayOption", "Baseline", "BoundMethod", "CheckpointError", "Choice", "ChunkSize", "DataError", "FiniteFloat",
    "Flag", "Forward", "InputError", "InputMethod", "Inputs", "Key", "LayerNotFoundError", "Method", "OutputError", "MethodCall", "MethodValue",
    "NonNegativeFloat", "NonNegativeInt", "Option", "OptionContext", "PositiveFloat", "PositiveInt", "Problem",
    "ResourceExhaustedError", "Target", "TargetError", "TargetSpec", "UnknownNameError", "UnsupportedError", "XaiJaxError",
    "check_input", "checks", "chunked_sum", "chunked_vmap", "compiled", "fix_target", "make_forward", "method", "method_call",
    "numerics", "prepare", "resolve_baseline", "resolve_method", "resolve_target",
]
