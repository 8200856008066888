"""Finding ReLUs in a traced model and giving them another backward pass.

A ReLU reaches the jaxpr in two forms, neither of them a module:

* ``nn.relu`` / ``jax.nn.relu``: a ``custom_jvp_call`` whose wrapped function is named ``relu``
  (``call_jaxpr.jaxpr.debug_info.func_name``).  Other ``custom_jvp_call``s (``gelu``, ``softplus``,
  a user's own) are left as they are.
* ``jnp.maximum(x, 0)`` / ``jnp.maximum(0, x)``: a ``max`` with a literal scalar zero.

:func:`relu_rules` returns interpreter rules replacing both forms by one ``jax.custom_vjp``
function whose forward is ``max(x, 0)`` and whose backward is the caller's.  A ReLU shared between
several places, an inline ``nn.relu`` and a ``jnp.maximum(x, 0)`` therefore get the same rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from .interpreter import Rule, bind_original, rewrite

# backward(x, g) -> the cotangent passed to x, given the ReLU's input x and incoming cotangent g.
ReluBackward = Callable[[jax.Array, jax.Array], jax.Array]


def is_relu_call(eqn: Any) -> bool:
    """True for the ``custom_jvp_call`` that ``nn.relu``/``jax.nn.relu`` trace to."""
    if eqn.primitive.name != "custom_jvp_call":
        return False
    debug = getattr(eqn.params["call_jaxpr"].jaxpr, "debug_info", None)
    return getattr(debug, "func_name", None) == "relu"


def _is_zero_literal(var: Any) -> bool:
    return isinstance(var, jcore.Literal) and jnp.ndim(var.val) == 0 and float(var.val) == 0.0


def relu_input(eqn: Any) -> int | None:
    """Index of the ReLU's input among ``eqn.invars``, or ``None`` if ``eqn`` is not a ReLU."""
    if is_relu_call(eqn):
        return 0
    if eqn.primitive.name == "max" and len(eqn.invars) == 2:
        if _is_zero_literal(eqn.invars[1]) and not _is_zero_literal(eqn.invars[0]):
            return 0
        if _is_zero_literal(eqn.invars[0]):
            return 1
    return None


def relu_with_backward(backward: ReluBackward) -> Callable[[jax.Array], jax.Array]:
    """``max(x, 0)`` whose vector-Jacobian product is ``backward(x, g)``."""

    @jax.custom_vjp
    def relu(x: jax.Array) -> jax.Array:
        return jnp.maximum(x, jnp.zeros((), x.dtype))

    relu.defvjp(lambda x: (relu(x), x), lambda x, g: (backward(x, g),))
    return relu


def relu_rules(backward: ReluBackward) -> dict[str, Rule]:
    """Interpreter rules giving every ReLU of a model the backward pass ``backward``."""
    relu = relu_with_backward(backward)

    def rule(eqn: Any, invals: Sequence[Any]) -> Any:
        position = relu_input(eqn)
        if position is None:
            return bind_original(eqn, invals)
        out = relu(invals[position])
        return [out] if eqn.primitive.multiple_results else out

    return {"custom_jvp_call": rule, "max": rule}


def count_relus(fn: Callable[..., Any], *args: Any) -> int:
    """Number of ReLUs the interpreter recognises in ``fn(*args)``, nested calls included."""
    found = 0

    def spy(eqn: Any, invals: Sequence[Any]) -> Any:
        nonlocal found
        found += relu_input(eqn) is not None
        return bind_original(eqn, invals)

    jax.eval_shape(rewrite(fn, {"custom_jvp_call": spy, "max": spy}), *args)
    return found
