"""Targets: which scalar of the model's output an explanation explains.

``target`` is ``None`` (each sample's predicted class), an ``int`` (the same class for every
sample), an integer array of shape ``(B,)``, or a callable ``outputs -> (B,)`` (a neuron, a channel
mean, a regression output).  Class targets become an index array so that a new class does not
trigger a new compilation; the predicted class is fixed at the *input* ``x``, not re-chosen at
every perturbed point (IG path points, SmoothGrad samples).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import compat
from .errors import TargetError
from .model import structural_key

Target = None | int | jax.Array | np.ndarray | Callable[[Any], jax.Array]


@dataclasses.dataclass(frozen=True, eq=False)
class TargetSpec:
    """Static half of a target: ``kind`` is ``"argmax"``, ``"index"`` or ``"callable"``.

    A callable target is compared by :func:`~xai_jax.core.model.structural_key` (its code and what it
    captures), so ``target=lambda o: o[:, 3]`` written anew in each call does not recompile."""

    kind: str
    fn: Callable[[Any], jax.Array] | None = None

    def _key(self) -> Any:
        return (self.kind, None if self.fn is None else structural_key(self.fn))

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TargetSpec) and other._key() == self._key()

    def indices(self, outputs: Any, given: jax.Array | None) -> jax.Array | None:
        """Class indices for index/argmax targets (argmax taken without gradient)."""
        if self.kind == "argmax":
            return jnp.argmax(jax.lax.stop_gradient(_class_scores(outputs)), axis=-1)
        return given

    def as_argument(self, indices: jax.Array | None) -> Any:
        """The ``target`` argument that reproduces this target for a method call."""
        return self.fn if self.kind == "callable" else indices

    def select(self, outputs: Any, indices: jax.Array | None) -> jax.Array:
        """The ``(B,)`` target scalars of ``outputs``."""
        if self.kind == "callable":
            assert self.fn is not None  # kind "callable" always carries its fn
            value = self.fn(outputs)
            batch = jax.tree_util.tree_leaves(outputs)[0].shape[0]
            if not hasattr(value, "shape") or tuple(value.shape) != (batch,):
                raise TargetError(
                    f"a callable target must return one scalar per sample, shape ({batch},); "
                    f"got {getattr(value, 'shape', type(value).__name__)}."
                )
            return value
        if indices is None:
            raise TargetError("a class target needs its class indices (from TargetSpec.indices); got None.")
        scores = _class_scores(outputs)
        return jnp.take_along_axis(scores, indices[:, None].astype(jnp.int32), axis=-1)[:, 0]


def _class_scores(outputs: Any) -> jax.Array:
    if not isinstance(outputs, jax.Array) and not hasattr(outputs, "ndim"):
        raise TargetError(
            f"class targets need the model to return one array of scores; it returned "
            f"{type(outputs).__name__}. Pass a callable target that picks the scalar to explain."
        )
    if outputs.ndim != 2:
        raise TargetError(
            f"class targets need model outputs of shape (B, classes); got {tuple(outputs.shape)}. "
            "Pass a callable target returning one scalar per sample."
        )
    return outputs


def resolve_target(
    target: Target, batch: int, output_shape: tuple[int, ...] | None
) -> tuple[TargetSpec, jax.Array | None]:
    """Validate ``target`` against the batch size and the output shape; split static/traced parts.

    ``output_shape`` is the model's output shape for this batch (``None`` when it is not a single
    array).  Range checks run whenever the indices are concrete; under a caller's ``jit`` they are
    traced and cannot be checked.
    """
    if target is None:
        _require_class_outputs(output_shape)
        return TargetSpec("argmax"), None
    if callable(target) and not isinstance(target, (jax.Array, np.ndarray)):
        return TargetSpec("callable", target), None
    if isinstance(target, (bool, np.bool_)):
        raise TargetError("target must be None, an int, an int array of shape (B,), or a callable; got a bool.")
    num_classes = _require_class_outputs(output_shape)
    if isinstance(target, (int, np.integer)):
        indices = jnp.full((batch,), int(target), jnp.int32)
        values: np.ndarray | None = np.asarray([int(target)])
    else:
        if not isinstance(target, (jax.Array, np.ndarray, list, tuple)):
            raise TargetError(
                f"target must be None, an int, an int array of shape (B,), or a callable; got {type(target).__name__}."
            )
        arr = target if isinstance(target, jax.Array) else np.asarray(target)
        if not jnp.issubdtype(arr.dtype, jnp.integer):
            raise TargetError(f"target array must hold integer class indices; got dtype {arr.dtype}.")
        if arr.ndim == 0:
            arr = jnp.full((batch,), arr, jnp.int32)
        if tuple(arr.shape) != (batch,):
            raise TargetError(f"target array must have shape ({batch},) to match the batch; got {tuple(arr.shape)}.")
        indices = jnp.asarray(arr, jnp.int32)
        values = None if compat.is_tracer(arr) else np.asarray(arr)
    if values is not None and values.size and (values.min() < 0 or values.max() >= num_classes):
        bad = values[(values < 0) | (values >= num_classes)]
        raise TargetError(
            f"target {bad.tolist()[:8]} out of range: the model has {num_classes} outputs "
            f"(valid classes 0..{num_classes - 1})."
        )
    return TargetSpec("index"), indices


def _require_class_outputs(output_shape: tuple[int, ...] | None) -> int:
    if output_shape is None or len(output_shape) != 2:
        raise TargetError(
            f"class targets (None, int or index array) need model outputs of shape (B, classes); "
            f"got {output_shape}. Pass a callable target returning one scalar per sample."
        )
    return int(output_shape[1])
