"""One set of option checks, so the same input is accepted or refused the same way in every family.

Each check takes the option's name and value and returns the normalised value (a Python ``int``,
``float``, a single PRNG key...) or raises :class:`~xai_jax.core.errors.InputError` saying what is
wrong and what to pass instead.  Checks never turn a traced value into a Python bool: under a
caller's ``jax.jit`` an array option may be a tracer, and only its shape and dtype are checked.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, Literal, overload

import jax
import jax.numpy as jnp
import numpy as np

from . import compat
from .errors import InputError


def is_traced(value: Any) -> bool:
    """True if any leaf of ``value`` is a tracer (inside a caller's ``jit``/``grad``/``vmap``)."""
    return compat.any_tracer(value)


def is_array(value: Any) -> bool:
    return isinstance(value, (jax.Array, np.ndarray))


def all_finite(value: Any) -> bool | None:
    """Whether every element of ``value`` is finite; ``None`` when it cannot be known (traced).

    Runs on the device for JAX arrays (no host copy), eagerly even inside a caller's trace when
    the value itself is concrete (a closed-over batch under ``jax.jit(lambda params: ...)``).
    """
    if is_traced(value):
        return None
    if isinstance(value, jax.Array):
        if not jnp.issubdtype(value.dtype, jnp.inexact):
            return True
        with jax.ensure_compile_time_eval():
            return bool(jnp.isfinite(value).all())
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.inexact):
        return True
    return bool(np.isfinite(array).all())


def count_nonfinite(value: Any) -> int:
    array = np.asarray(value)
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def check_finite_array(name: str, value: Any) -> None:
    """Refuse NaN or infinite values in an array option (a baseline, an initial image...)."""
    if all_finite(value) is False:
        raise InputError(f"{name} contains {count_nonfinite(value)} NaN or infinite value(s).")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


# The overloads say that the checks return ``None`` only where ``allow_none=True``.
@overload
def check_int(name: str, value: Any, *, minimum: int | None = None, allow_none: Literal[False] = False) -> int: ...
@overload
def check_int(name: str, value: Any, *, minimum: int | None = None, allow_none: bool) -> int | None: ...
def check_int(name: str, value: Any, *, minimum: int | None = None, allow_none: bool = False) -> int | None:
    """An ``int`` (Python or NumPy integer, not a bool, not a float such as ``4.5``) ``>= minimum``."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        kind = "a positive integer" if minimum == 1 else "an integer" if minimum is None else f"an integer >= {minimum}"
        raise InputError(f"{name} must be {kind}{' or None' if allow_none else ''}; got {value!r}.")
    if minimum is not None and value < minimum:
        kind = "a positive integer (at least 1)" if minimum == 1 else f"an integer >= {minimum}"
        raise InputError(f"{name} must be {kind}{' or None' if allow_none else ''}; got {value!r}.")
    return int(value)


@overload
def check_positive_int(name: str, value: Any, *, allow_none: Literal[False] = False) -> int: ...
@overload
def check_positive_int(name: str, value: Any, *, allow_none: bool) -> int | None: ...
def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    return check_int(name, value, minimum=1, allow_none=allow_none)


@overload
def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    allow_none: Literal[False] = False,
) -> float: ...
@overload
def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    allow_none: bool,
) -> float | None: ...
def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    allow_none: bool = False,
) -> float | None:
    """A finite real number (NaN and ±inf are refused) within the given bounds."""
    if value is None and allow_none:
        return None
    if is_array(value) and np.ndim(value) == 0 and not is_traced(value):
        value = value.item()
    if not _is_number(value):
        raise InputError(f"{name} must be a finite number{' or None' if allow_none else ''}; got {value!r}.")
    number = float(value)
    if not math.isfinite(number):
        raise InputError(f"{name} must be a finite number; got {number}.")
    if minimum is not None and (number < minimum or (exclusive_minimum and number == minimum)):
        raise InputError(f"{name} must be {'>' if exclusive_minimum else '>='} {minimum}; got {number}.")
    if maximum is not None and number > maximum:
        raise InputError(f"{name} must be <= {maximum}; got {number}.")
    return number


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be True or False; got {value!r}.")
    return bool(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        from .errors import unknown_name_message

        if isinstance(value, str):
            raise InputError(unknown_name_message(f"{name}", value, choices))
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")
    return value


def check_chunk_size(name: str, value: Any) -> int | str | None:
    """``"auto"`` (a chunk chosen from the memory budget), ``None`` (everything at once) or a
    positive integer."""
    if value == "auto" and isinstance(value, str):
        return "auto"
    return check_positive_int(name, value, allow_none=True)


def check_key(name: str, value: Any) -> jax.Array:
    """One ``jax.random`` key: a typed key (``jax.random.key(0)``, any implementation), or a legacy
    raw key (``jax.random.PRNGKey(0)``) of the default implementation (``uint32[2]`` for threefry,
    ``uint32[4]`` for rbg), returned as a typed key.  A batch of keys is refused (pass one key;
    methods split it themselves)."""
    if value is None:
        raise InputError(f"{name} is required: this computation is random. Pass {name}=jax.random.key(seed).")
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        raise InputError(f"{name} must be a jax.random key, e.g. jax.random.key({int(value)}), not an int.")
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        raise InputError(f"{name} must be a jax.random key, e.g. jax.random.key(0); got {type(value).__name__}.")
    shape = tuple(value.shape)
    if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
        if shape != ():
            raise InputError(
                f"{name} is a batch of {shape} keys; pass one key (e.g. jax.random.key(0)): methods split it "
                "themselves."
            )
        return value
    if jnp.dtype(value.dtype) == jnp.uint32:
        raw_shape = _default_raw_key_shape()
        if shape == raw_shape:  # a legacy key of the default implementation (threefry (2,), rbg (4,))
            return jax.random.wrap_key_data(jnp.asarray(value))
        if len(shape) == 2 and shape[-1:] == raw_shape:
            raise InputError(f"{name} is a batch of {shape[0]} raw keys; pass one key (e.g. jax.random.key(0)).")
        if shape in ((2,), (4,)):
            raise InputError(
                f"{name} is a raw uint32{list(shape)} key, but the default PRNG implementation uses "
                f"uint32{list(raw_shape)} keys; pass a typed key (jax.random.key(seed, impl=...)) or wrap it with "
                "jax.random.wrap_key_data(key, impl=...)."
            )
    raise InputError(
        f"{name} must be a single jax.random key, e.g. jax.random.key(0); got an array of dtype {value.dtype} and "
        f"shape {shape}."
    )


def _default_raw_key_shape() -> tuple[int, ...]:
    return tuple(jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape)


@overload
def check_callable(name: str, value: Any, *, allow_none: Literal[False] = False) -> Callable[..., Any]: ...
@overload
def check_callable(name: str, value: Any, *, allow_none: bool) -> Callable[..., Any] | None: ...
def check_callable(name: str, value: Any, *, allow_none: bool = False) -> Callable[..., Any] | None:
    if value is None and allow_none:
        return None
    if not callable(value):
        raise InputError(f"{name} must be callable; got {type(value).__name__}.")
    return value


def check_int_tuple(name: str, value: Any, length: int | None = None, *, minimum: int = 1) -> tuple[int, ...]:
    """A tuple of integers ``>= minimum`` (from an int, a list or a tuple); floats are refused."""
    values = (value,) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    if isinstance(values, np.ndarray) and values.ndim == 1:
        values = values.tolist()
    if not isinstance(values, (tuple, list, range)):
        raise InputError(f"{name} must be an integer or a tuple of integers; got {value!r}.")
    out = tuple(check_int(f"{name} entry", v, minimum=minimum) for v in values)  # type: ignore[misc]
    if length is not None and len(out) != length:
        raise InputError(f"{name} must have {length} entries; got {len(out)} ({value!r}).")
    return out  # type: ignore[return-value]
