"""The view of one linear layer that relevance rules work on.

A layer found in the trace (:mod:`xai_jax.trace.graph`) is affine, ``z = c ⊙ A_W(x) + b``: ``A_W`` is
the anchor (a convolution or ``dot_general`` with weight ``W``, or a weight-free sum/average pooling),
``c`` the product of the constant scales that follow it (a BatchNorm's ``γ/σ``; ``None`` when there
are none) and ``b`` the constant offsets (bias, BatchNorm shift), both of the output's shape.  This
equals Zennit's merged layer with weight ``c·W`` and bias ``b`` (``canonizers.MergeBatchNorm``), so a
rule that modifies the weights (``ρ(W)``: positive part, square, ones) modifies ``c·W``:

* positive part: ``(c·W)⁺ = c⁺·W⁺ + c⁻·W⁻``, negative part ``(c·W)⁻ = c⁺·W⁻ + c⁻·W⁺``
  (``c⁺ = max(c, 0)``, ``c⁻ = min(c, 0)``), computed in output space without building ``c·W``;
* ``(c·W)² = c²·W²``; ones: ``1``.

Transposes (``A_Wᵀ s``) are vector-Jacobian products of the anchor, so any convolution (strided,
dilated, grouped, transposed) or contraction works.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from functools import cached_property
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array

#: The weight parts a rule can ask for.


@dataclasses.dataclass
class LinearLayer:
    """One affine layer at one input, as rules see it.

    Attributes:
      x: the layer's input.
      z: the layer's output ``c ⊙ A_W(x) + b`` as the model computed it.
      weight: ``W`` (``None`` for weight-free pooling, whose implicit weights are positive).
      x_nonnegative: the input is provably non-negative (it follows a ReLU), so ``x⁻ = 0``.
    """

    x: Array
    z: Array
    weight: Array | None
    apply: Callable[[Array, Array | None], Array]  # A(v, w)
    scale_fn: Callable[[], Array | None]
    bias_fn: Callable[[], Array | None]
    x_nonnegative: bool = False
    zero_bias: bool = False

    # ---- constants ------------------------------------------------------------------------------
    @cached_property
    def scale(self) -> Array | None:
        """``c`` (output-shaped), or ``None`` when the layer has no constant scale."""
        return self.scale_fn()

    @cached_property
    def bias(self) -> Array | None:
        """``b`` (output-shaped), or ``None`` when the layer has no constant offset (or it is zeroed)."""
        return None if self.zero_bias else self.bias_fn()

    def bias_part(self, part: str = "all") -> Array | float:
        """``b``, ``b⁺`` or ``b⁻`` (0 when there is no bias)."""
        b = self.bias
        if b is None:
            return 0.0
        return {"all": b, "pos": jnp.maximum(b, 0), "neg": jnp.minimum(b, 0)}[part]

    @cached_property
    def _weights(self) -> dict[str, Array | str | None]:
        w = self.weight
        if w is None:  # pooling: implicit positive unit weights
            return {"all": None, "pos": None, "neg": "zero"}
        return {"all": w, "pos": jnp.maximum(w, 0), "neg": jnp.minimum(w, 0)}

    # ---- the modified maps ------------------------------------------------------------------------
    def _raw(self, v: Array, w: Any) -> Array | None:
        if isinstance(w, str):  # "zero": the negative part of positive pooling weights
            return None
        return self.apply(v, w)

    def _raw_t(self, s: Array, w: Any) -> Array | None:
        if isinstance(w, str):
            return None
        _, pullback = jax.vjp(lambda v: self.apply(v, w), self.x)
        return pullback(s)[0]

    def forward(self, v: Array, part: str = "all") -> Array:
        """``A_{ρ(cW)}(v)`` for ``ρ`` = identity (``"all"``), positive or negative part; no bias."""
        c, ws = self.scale, self._weights
        if c is None or part == "all":
            out = self._raw(v, ws[part])
            if out is None:
                return jnp.zeros_like(self.z)
            return out if c is None else c * out
        same, other = (ws["pos"], ws["neg"]) if part == "pos" else (ws["neg"], ws["pos"])
        terms = []
        a = self._raw(v, same)
        if a is not None:
            terms.append(jnp.maximum(c, 0) * a)
        b = self._raw(v, other)
        if b is not None:
            terms.append(jnp.minimum(c, 0) * b)
        return functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(self.z)

    def backward(self, s: Array, part: str = "all") -> Array:
        """``A_{ρ(cW)}ᵀ(s)``: the transpose of :meth:`forward` applied to ``s`` (output-shaped)."""
        c, ws = self.scale, self._weights
        if c is None or part == "all":
            out = self._raw_t(s if c is None else c * s, ws[part])
            return jnp.zeros_like(self.x) if out is None else out
        same, other = (ws["pos"], ws["neg"]) if part == "pos" else (ws["neg"], ws["pos"])
        terms = [
            t
            for t in (self._raw_t(jnp.maximum(c, 0) * s, same), self._raw_t(jnp.minimum(c, 0) * s, other))
            if t is not None
        ]
        return functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(self.x)

    def forward_with(self, v: Array, weight: Array | None, scale: Array | None = None) -> Array:
        """``scale ⊙ A_weight(v)`` for an explicitly modified weight (``weight=None``: pooling)."""
        out = self.apply(v, weight)
        return out if scale is None else scale * out

    def backward_with(self, s: Array, weight: Array | None, scale: Array | None = None) -> Array:
        """The transpose of :meth:`forward_with`."""
        _, pullback = jax.vjp(lambda v: self.apply(v, weight), self.x)
        return pullback(s if scale is None else scale * s)[0]

    # ---- inputs --------------------------------------------------------------------------------------
    def x_split(self) -> tuple[Array, Array | None]:
        """``(x⁺, x⁻)``; ``x⁻`` is ``None`` when the input is known to be non-negative."""
        if self.x_nonnegative:
            return self.x, None
        return jnp.maximum(self.x, 0), jnp.minimum(self.x, 0)
