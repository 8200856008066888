"""Gradients of the target inside the path methods' loops.

Path methods sum many gradients (path points, draws, steps).  Summed in vmapped chunks
(:func:`summed_gradients`) or stepped in a ``lax`` loop, the model runs with the loop-friendly
gradient rules (XLA:CPU computes a convolution's input gradient 10-16x slower inside a loop
otherwise; ``docs/design.md`` §7): equal to ``jax.grad`` of the model (tested where the rules are
defined).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

from ..core import Inputs, Problem, chunked_sum
from ..core.batching import ChunkSize, resolve_chunk_size
from ..trace.gradients import target_gradient
from ..trace.xla_cpu import LOOP_GRADIENT_RULES


def summed_gradients(term: Callable[..., Any], xs: tuple[Any, ...], batch_size: ChunkSize) -> Any:
    """``Σ_i term(*xs[i], rules=...)`` in chunks of ``batch_size``; ``term`` computes its gradients
    with ``rules`` (``None``: the default fast rules; inside the chunk loop: the loop-friendly ones)."""
    chunk = resolve_chunk_size(batch_size, term, xs)
    if chunk is None:
        return chunked_sum(term, *xs)
    return chunked_sum(functools.partial(term, rules=LOOP_GRADIENT_RULES), *xs, chunk_size=chunk)


def loop_gradient(problem: Problem, inputs: Inputs, x: jax.Array, indices: jax.Array | None) -> jax.Array:
    """``∂f_c/∂x`` for use inside a ``lax`` loop body (classes fixed by ``indices``)."""
    return target_gradient(problem, inputs, x, indices, LOOP_GRADIENT_RULES)


__all__ = ["LOOP_GRADIENT_RULES", "loop_gradient", "summed_gradients"]
