"""LRP rules: small immutable objects with Zennit's names, parameters and semantics.

Every rule maps the relevance ``R`` of a layer's output to the relevance of its input.  For an
affine layer ``z_j = Σ_i x_i w_ij + b_j`` (BatchNorm merged, see :mod:`.layer`) the rules are those
of Bach et al. (2015), "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise
Relevance Propagation", Montavon et al. (2017), "Explaining nonlinear classification decisions with
deep Taylor decomposition", and Montavon et al. (2019), "Layer-Wise Relevance Propagation: An
Overview"; ``stab(z) = z + ε·sign(z)`` with ``sign(0) = +1`` (Zennit's :class:`Stabilizer`).

=================  ==============================================================================
rule               ``R_i =``
=================  ==============================================================================
``Epsilon(ε)``     ``x_i Σ_j w_ij R_j / stab_ε(z_j)``   (``ε = 0``: LRP-0)
``ZPlus()``        ``Σ_j (x⁺_i w⁺_ij + x⁻_i w⁻_ij) R_j / stab(Σ_i' (x⁺ w⁺ + x⁻ w⁻)_i'j + b⁺_j)``
``AlphaBeta(α,β)`` ``α·[positive-contribution share] − β·[negative-contribution share]``, ``α − β = 1``
``Gamma(γ)``       LRP-0 with ``w + γ w⁺`` for positive outputs (``w + γ w⁻`` for negative ones)
``Flat()``         ``Σ_j R_j / stab(Σ_i' 1)`` (all weights and inputs one, no bias)
``WSquare()``      ``Σ_j w²_ij R_j / stab(Σ_i' w²_i'j + b²_j)``
``ZBox(l, h)``     ``Σ_j (x_i w_ij − l_i w⁺_ij − h_i w⁻_ij) R_j / stab(z_j − Σ_i' (l w⁺ + h w⁻)_i'j − b_j)``
``Norm()``         ``x_i R_j / stab(z_j)`` for weight-free layers (sum, average pooling)
``Pass()``         ``R_i = R_i`` for element-wise layers (activations, a lone BatchNorm)
=================  ==============================================================================

A new rule subclasses :class:`Rule` and implements :meth:`Rule.linear` (about ten lines)::

    @dataclasses.dataclass(frozen=True)
    class Half(Rule):                       # half the relevance, LRP-0 style
        def linear(self, layer, R):
            return 0.5 * layer.x * layer.backward(R / stabilize(layer.z, 1e-9))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import compat
from ..core.errors import InputError, UnsupportedError
from .layer import LinearLayer

Array = jax.Array


# ---------------------------------------------------------------------------------------------------
# Stabilizers
# ---------------------------------------------------------------------------------------------------


def stabilize(z: Array, epsilon: float = 1e-6, *, clip: bool = False, norm_scale: bool = False) -> Array:
    """``z + ε·sign(z)`` with ``sign(0) = +1`` (Zennit's ``stabilize``).

    ``norm_scale=True`` scales ``ε`` by each sample's root mean square of ``z`` (all axes but the
    first); ``clip=True`` returns ``sign(z)·max(|z|, ε)`` instead of shifting.
    """
    sign = jnp.where(z >= 0, jnp.ones_like(z), -jnp.ones_like(z))
    eps: float | Array = epsilon
    if norm_scale:
        axes = tuple(range(1, z.ndim))
        eps = epsilon * jnp.sqrt(jnp.mean(z**2, axis=axes, keepdims=True))
    if clip:
        return sign * jnp.maximum(jnp.abs(z), eps)
    return z + sign * eps


@dataclasses.dataclass(frozen=True)
class Stabilizer:
    """A stabilizer as data: ``Stabilizer(0.1, norm_scale=True)`` is ``z + 0.1·rms(z)·sign(z)``."""

    epsilon: float = 1e-6
    clip: bool = False
    norm_scale: bool = False

    def __post_init__(self) -> None:
        _check_nonnegative("Stabilizer epsilon", self.epsilon)

    def __call__(self, z: Array) -> Array:
        return stabilize(z, self.epsilon, clip=self.clip, norm_scale=self.norm_scale)


StabilizerLike = float | int | Stabilizer | Callable[[Array], Array]


def _check_nonnegative(what: str, value: Any) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{what} must be a number; got {type(value).__name__}.")
    if not math.isfinite(float(value)) or float(value) < 0:
        raise InputError(f"{what} must be a finite number >= 0; got {value}.")


def _ensure_stabilizer(value: StabilizerLike, what: str) -> Callable[[Array], Array]:
    if isinstance(value, Stabilizer):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        _check_nonnegative(what, value)
        return Stabilizer(float(value))
    if callable(value):
        return value
    raise InputError(
        f"{what} must be a number >= 0, a Stabilizer or a callable z -> stabilized z; got {type(value).__name__}."
    )


def _zero_params(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    names = (value,) if isinstance(value, str) else tuple(value)
    bad = [n for n in names if n != "bias"]
    if bad:
        raise InputError(
            f"zero_params {bad} not understood: layers found in the trace have one weight and one bias, "
            "so only 'bias' can be zeroed."
        )
    return tuple(sorted(set(names)))


class _FrozenArray:
    """A concrete array that can sit in a hashable (jit-static) rule."""

    def __init__(self, value: Any) -> None:
        if compat.is_tracer(value):
            raise InputError("ZBox bounds must be concrete numbers or arrays, not traced values.")
        self.value = np.asarray(value, np.float32)
        self._key = (self.value.shape, self.value.tobytes())

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _FrozenArray) and self._key == other._key

    def __repr__(self) -> str:
        return f"array{self.value.shape}" if self.value.ndim else repr(float(self.value))


def freeze_bound(value: Any) -> float | _FrozenArray:
    if isinstance(value, _FrozenArray):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if not math.isfinite(float(value)):
            raise InputError(f"ZBox bounds must be finite; got {value}.")
        return float(value)
    frozen = _FrozenArray(value)
    if not np.all(np.isfinite(frozen.value)):
        raise InputError("ZBox bounds must be finite.")
    return frozen


def broadcast_bound(bound: float | _FrozenArray, x: Array) -> Array:
    """A bound broadcast to ``x``'s shape: a scalar, an array of ``x``'s shape, of one sample's
    shape, or anything broadcastable (per-channel bounds ``(C,)`` for NHWC images)."""
    value = jnp.asarray(bound.value if isinstance(bound, _FrozenArray) else bound, x.dtype)
    if value.ndim == x.ndim - 1 and value.shape != x.shape[-value.ndim :] and value.shape == x.shape[1:]:
        value = value[None]
    try:
        return jnp.broadcast_to(value, x.shape)
    except ValueError:
        raise InputError(
            f"ZBox bound of shape {value.shape} does not broadcast to the input's shape {x.shape}."
        ) from None


# ---------------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------------


class Rule:
    """Base class of relevance rules.  Subclasses are frozen dataclasses (hashable, so a composite
    of rules is a static argument of the jitted method).

    * :meth:`linear` handles conv/dense layers and average/sum pooling (as weight-free layers);
    * :meth:`sum` handles residual sums ``z = Σ_k ±x_k``;
    * :meth:`elementwise` handles activations and lone element-wise affine steps.

    A rule that does not define a method cannot be used for that kind of layer (clear error).
    """

    def linear(self, layer: LinearLayer, R: Array) -> Array:
        raise UnsupportedError(f"{self!r} cannot be applied to a linear layer (conv, dense or pooling).")

    def sum(self, operands: Sequence[Array], signs: Sequence[float], z: Array, R: Array) -> list[Array]:
        raise UnsupportedError(f"{self!r} cannot be applied to a residual sum; use Norm() (Zennit's choice).")

    def elementwise(self, x: Array, y: Array, R: Array) -> Array:
        raise UnsupportedError(f"{self!r} cannot be applied to an element-wise layer (activation); use Pass().")

    def affine(self, x: Array, y: Array, slope: Array, R: Array) -> Array:
        """A lone element-wise affine step ``y = slope ⊙ x + b`` (a constant shift or scale outside a
        layer: position embeddings, a normalisation's scale and shift); default: :meth:`elementwise`."""
        return self.elementwise(x, y, R)

    def softmax(self, x: Array, s: Array, R: Array, axes: tuple[int, ...]) -> Array:
        raise UnsupportedError(f"{self!r} cannot be applied to a softmax; use SoftmaxGradient() ([achtibat2024]_).")

    def product(self, product: Product, R: Array) -> list[Array]:
        raise UnsupportedError(
            f"{self!r} cannot be applied to a product of two input-dependent values; use Uniform() or HoldGates()."
        )


def _proportional(
    stab: Callable[[Array], Array], operands: Sequence[Array], signs: Sequence[float], z: Array, R: Array
) -> list[Array]:
    s = R / stab(z)
    return [sign * x * s for x, sign in zip(operands, signs)]


@dataclasses.dataclass(frozen=True)
class Epsilon(Rule):
    """LRP-ε (Bach et al. 2015): ``R_i = x_i Σ_j w_ij R_j / (z_j + ε·sign(z_j))``.

    ``epsilon=0`` is LRP-0 (exact only where no ``z_j`` is zero).  ``epsilon`` may also be a
    :class:`Stabilizer` (e.g. ``Stabilizer(0.25, norm_scale=True)``) or a callable.
    """

    epsilon: StabilizerLike = 1e-6
    zero_params: str | Sequence[str] | None = None

    def __post_init__(self) -> None:
        _ensure_stabilizer(self.epsilon, "Epsilon epsilon")
        object.__setattr__(self, "zero_params", _zero_params(self.zero_params) or None)

    def linear(self, layer: LinearLayer, R: Array) -> Array:
        z = layer.forward(layer.x) if self.zero_params else layer.z
        s = R / _ensure_stabilizer(self.epsilon, "epsilon")(z)
        return layer.x * layer.backward(s)

    def sum(self, operands: Sequence[Array], signs: Sequence[float], z: Array, R: Array) -> list[Array]:
        return _proportional(_ensure_stabilizer(self.epsilon, "epsilon"), operands, signs, z, R)

    def affine(self, x: Array, y: Array, slope: Array, R: Array) -> Array:
        """The ε rule on ``y = slope ⊙ x + b``: ``R_x = x · slope · R / stab(y)`` (the shift ``b`` keeps
        its share, as a bias does; a pure scale passes ``R``)."""
        return x * slope * R / _ensure_stabilizer(self.epsilon, "epsilon")(y)


@dataclasses.dataclass(frozen=True)
class ZPlus(Rule):
    """LRP-z⁺ (Montavon et al. 2017; Zennit's generalisation to signed inputs = ``AlphaBeta(1, 0)``):
    ``R_i = Σ_j (x⁺_i w⁺_ij + x⁻_i w⁻_ij) R_j / stab(Σ_i' (x⁺ w⁺ + x⁻ w⁻)_i'j + b⁺_j)``."""

    stabilizer: StabilizerLike = 1e-6
    zero_params: str | Sequence[str] | None = None

    def __post_init__(self) -> None:
        _ensure_stabilizer(self.stabilizer, "ZPlus stabilizer")
        object.__setattr__(self, "zero_params", _zero_params(self.zero_params) or None)

    def linear(self, layer: LinearLayer, R: Array) -> Array:
        xp, xn = layer.x_split()
        z = layer.forward(xp, "pos") + layer.bias_part("pos")
        if xn is not None:
            z = z + layer.forward(xn, "neg")
        s = R / _ensure_stabilizer(self.stabilizer, "stabilizer")(z)
        out = xp * layer.backward(s, "pos")
        return out if xn is None else out + xn * layer.backward(s, "neg")


@dataclasses.dataclass(frozen=True)
class AlphaBeta(Rule):
    """LRP-αβ (Bach et al. 2015): ``R_i = Σ_j (α z⁺_ij / z⁺_j − β z⁻_ij / z⁻_j) R_j`` with the positive
    and negative contributions ``z^±_ij`` (bias parts in the denominators), ``α − β = 1``, ``α, β ≥ 0``."""

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: StabilizerLike = 1e-6
    zero_params: str | Sequence[str] | None = None

    def __post_init__(self) -> None:
        _check_nonnegative("AlphaBeta alpha", self.alpha)
        _check_nonnegative("AlphaBeta beta", self.beta)
        if abs(float(self.alpha) - float(self.beta) - 1.0) > 1e-12:
            raise InputError(
                f"AlphaBeta needs alpha - beta = 1 (relevance conservation); got alpha={self.alpha}, beta={self.beta}."
            )
        _ensure_stabilizer(self.stabilizer, "AlphaBeta stabilizer")
        object.__setattr__(self, "zero_params", _zero_params(self.zero_params) or None)

    def linear(self, layer: LinearLayer, R: Array) -> Array:
        stab = _ensure_stabilizer(self.stabilizer, "stabilizer")
        xp, xn = layer.x_split()
        zp = layer.forward(xp, "pos") + layer.bias_part("pos")
        zn = layer.forward(xp, "neg") + layer.bias_part("neg")
        if xn is not None:
            zp, zn = zp + layer.forward(xn, "neg"), zn + layer.forward(xn, "pos")
        sp, sn = R / stab(zp), R / stab(zn)
        pos = xp * layer.backward(sp, "pos")
        neg = xp * layer.backward(sn, "neg")
        if xn is not None:
            pos, neg = pos + xn * layer.backward(sp, "neg"), neg + xn * layer.backward(sn, "pos")
        return self.alpha * pos - self.beta * neg


@dataclasses.dataclass(frozen=True)
class Gamma(Rule):
    """LRP-γ (Montavon et al. 2019; Andéol et al. 2021 for signed inputs): LRP-0 with the weights
    ``w + γ w⁺`` for positive outputs and ``w + γ w⁻`` for negative ones (Zennit's generalised form)."""

    gamma: float = 0.25
    stabilizer: StabilizerLike = 1e-6
    zero_params: str | Sequence[str] | None = None

    def __post_init__(self) -> None:
        _check_nonnegative("Gamma gamma", self.gamma)
        _ensure_stabilizer(self.stabilizer, "Gamma stabilizer")
        object.__setattr__(self, "zero_params", _zero_params(self.zero_params) or None)

    def linear(self, layer: LinearLayer, R: Array) -> Array:
        stab, g = _ensure_stabilizer(self.stabilizer, "stabilizer"), self.gamma
        up = lambda v: layer.forward(v) + g * layer.forward(v, "pos")
        down = lambda v: layer.forward(v) + g * layer.forward(v, "neg")
        up_t = lambda s: layer.backward(s) + g * layer.backward(s, "pos")
        down_t = lambda s: layer.backward(s) + g * layer.backward(s, "neg")
        xp, xn = layer.x_split()
        b = layer.bias_part("all")
        den_pos = up(xp) + b + g * layer.bias_part("pos")
        den_neg = down(xp) + b + g * layer.bias_part("neg")
        if xn is not None:
            den_pos, den_neg = den_pos + down(xn), den_neg + up(xn)
        gp = jnp.where(layer.z > 0, R, 0) / stab(den_pos)
        gn = jnp.where(layer.z < 0, R, 0) / stab(den_neg)
        out = xp * (up_t(gp) + down_t(gn))
        return out if xn is None else out + xn * (down_t(gp) + up_t(gn))


@dataclasses.dataclass(frozen=True)
class Flat(Rule):
    """LRP-flat (Lapuschkin et al. 2019): all weights and inputs one, no bias:
    ``R_i = Σ_j R_j / stab(Σ_i' 1)`` over the receptive field (padding excluded)."""

    stabilizer: StabilizerLike = 1e-6
    zero_params: str | Sequence[str] | None = None

    def __post_init__(self) -> None:
        _ensure_stabilizer(self.stabilizer, "Flat stabilizer")
        object.__setattr__(self, "zero_params", _zero_params(self.zero_params) or None)

    def linear(self, layer: LinearLayer, R: Array) -> Array:
        ones = None if layer.weight is None else jnp.ones_like(layer.weight)
        z = layer.forward_with(jnp.ones_like(layer.x), ones)
        return layer.backward_with(R / _ensure_stabilizer(self.stabilizer, "stabilizer")(z), ones)


@dataclasses.dataclass(frozen=True)
class WSquare(Rule):
    """LRP-w² (Montavon et al. 2017): ``R_i = Σ_j w²_ij R_j / stab(Σ_i' w²_i'j + b²_j)`` (Zennit squares
    the bias too; ``zero_params="bias"`` drops it)."""

    stabilizer: StabilizerLike = 1e-6
    zero_params: str | Sequence[str] | None = None

    def __post_init__(self) -> None:
        _ensure_stabilizer(self.stabilizer, "WSquare stabilizer")
        object.__setattr__(self, "zero_params", _zero_params(self.zero_params) or None)

    def linear(self, layer: LinearLayer, R: Array) -> Array:
        w2 = None if layer.weight is None else layer.weight**2
        c2 = None if layer.scale is None else layer.scale**2
        z = layer.forward_with(jnp.ones_like(layer.x), w2, c2)
        if layer.bias is not None:
            z = z + layer.bias**2
        return layer.backward_with(R / _ensure_stabilizer(self.stabilizer, "stabilizer")(z), w2, c2)


@dataclasses.dataclass(frozen=True)
class ZBox(Rule):
    """LRP-z^B (Montavon et al. 2017) for inputs bounded by ``low ≤ x ≤ high`` (scalars, or arrays
    broadcastable to the input, e.g. per-channel bounds of normalised images):
    ``R_i = Σ_j (x_i w_ij − l_i w⁺_ij − h_i w⁻_ij) R_j / stab(Σ_i' (x w − l w⁺ − h w⁻)_i'j)``."""

    low: Any = 0.0
    high: Any = 1.0
    stabilizer: StabilizerLike = 1e-6
    zero_params: str | Sequence[str] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "low", freeze_bound(self.low))
        object.__setattr__(self, "high", freeze_bound(self.high))
        lo = self.low.value if isinstance(self.low, _FrozenArray) else self.low
        hi = self.high.value if isinstance(self.high, _FrozenArray) else self.high
        try:
            bad = bool(np.any(np.asarray(lo) > np.asarray(hi)))
        except ValueError:
            raise InputError("ZBox low and high must have broadcastable shapes.") from None
        if bad:
            raise InputError("ZBox needs low <= high everywhere.")
        _ensure_stabilizer(self.stabilizer, "ZBox stabilizer")
        object.__setattr__(self, "zero_params", _zero_params(self.zero_params) or None)

    def linear(self, layer: LinearLayer, R: Array) -> Array:
        low, high = broadcast_bound(self.low, layer.x), broadcast_bound(self.high, layer.x)
        z = layer.forward(layer.x) + layer.bias_part("all")
        z = (
            z
            - (layer.forward(low, "pos") + layer.bias_part("pos"))
            - (layer.forward(high, "neg") + layer.bias_part("neg"))
        )
        s = R / _ensure_stabilizer(self.stabilizer, "stabilizer")(z)
        return layer.x * layer.backward(s) - low * layer.backward(s, "pos") - high * layer.backward(s, "neg")


@dataclasses.dataclass(frozen=True)
class Norm(Rule):
    """Proportional redistribution (Zennit's ``Norm``, used for sums and average pooling):
    ``R_i = x_i Σ_j ∂z_j/∂x_i · R_j / stab(z_j)``; for a residual sum ``z = a + b``:
    ``R_a = a·R / stab(z)``, ``R_b = b·R / stab(z)``."""

    stabilizer: StabilizerLike = 1e-6

    def __post_init__(self) -> None:
        _ensure_stabilizer(self.stabilizer, "Norm stabilizer")

    def linear(self, layer: LinearLayer, R: Array) -> Array:
        return layer.x * layer.backward(R / _ensure_stabilizer(self.stabilizer, "stabilizer")(layer.z))

    def sum(self, operands: Sequence[Array], signs: Sequence[float], z: Array, R: Array) -> list[Array]:
        return _proportional(_ensure_stabilizer(self.stabilizer, "stabilizer"), operands, signs, z, R)


@dataclasses.dataclass(frozen=True)
class Pass(Rule):
    """Pass relevance through an element-wise layer unchanged: ``R_in = R_out`` (activations,
    a BatchNorm left unmerged)."""

    def elementwise(self, x: Array, y: Array, R: Array) -> Array:
        return R


@dataclasses.dataclass(frozen=True)
class Gradient(Rule):
    """No rule: the layer passes the plain gradient (what Zennit does for layers without a rule)."""


@dataclasses.dataclass
class Product:
    """A product of input-dependent values as rules see it: ``z = a ⊙ b`` (``elementwise``, with
    broadcasting) or a contraction ``z = a · b`` (``dot_general``: ``q·kᵀ``, attention × values).

    ``gates[k]`` says whether operand ``k`` is an attention weight or a gate (a softmax's or an
    activation's output, see :func:`xai_jax.trace.graph.mark_gates`); ``backward(k, s)`` is the
    transpose of ``v ↦ z(operand k := v)`` applied to ``s`` (the others held fixed).
    """

    operands: list[Array]
    z: Array
    gates: tuple[bool, ...]
    elementwise: bool
    backward: Callable[[int, Array], Array]

    def share(self, k: int, R: Array, stab: Callable[[Array], Array]) -> Array:
        """The relevance of operand ``k`` if it alone explained ``z``: ``x_k ⊙ ∂zᵀ/∂x_k (R / stab(z))``
        -- exactly ``R`` (summed over broadcast axes) for an element-wise product."""
        if self.elementwise:
            return unbroadcast(R, self.operands[k].shape)
        return self.operands[k] * self.backward(k, R / stab(self.z))


def unbroadcast(value: Array, shape: tuple[int, ...]) -> Array:
    """``value`` summed over the axes that ``shape`` broadcasts (size 1 there, larger in ``value``)."""
    shape = tuple(shape)
    if value.shape == shape:
        return value
    axes = tuple(i for i, (n, m) in enumerate(zip(shape, value.shape)) if n == 1 and m != 1)
    return jnp.sum(value, axis=axes, keepdims=True).reshape(shape)


@dataclasses.dataclass(frozen=True)
class Uniform(Rule):
    """The uniform rule for products of input-dependent values ([achtibat2024]_, Eq. 7): each of the
    ``n`` factors gets ``1/n`` of the relevance it would get alone, ``R_k = (1/n) x_k ⊙ ∂zᵀ/∂x_k
    (R / stab(z))`` -- for ``a ⊙ b``: ``R_a = R_b = R/2``; for attention ``A·V`` half to ``A`` and half
    to ``V``, and the half reaching ``q·kᵀ`` halves again (LXT's ``q, k: 1/4, v: 1/2``)."""

    stabilizer: StabilizerLike = 1e-9

    def __post_init__(self) -> None:
        _ensure_stabilizer(self.stabilizer, "Uniform stabilizer")

    def product(self, product: Product, R: Array) -> list[Array]:
        stab, n = _ensure_stabilizer(self.stabilizer, "stabilizer"), len(product.operands)
        return [product.share(k, R, stab) / n for k in range(n)]


@dataclasses.dataclass(frozen=True)
class HoldGates(Rule):
    """CP-LRP's products ([ali2022]_): attention weights and gates held constant, so the other factor
    takes all the relevance, ``R_v = v ⊙ ∂zᵀ/∂v (R / stab(z))`` (= ``R`` for ``act(gate) ⊙ up``), and
    ``q``, ``k`` and the gate get none.  Conservative.  A product without exactly one kind of operand
    (no gate, or only gates) falls back to :class:`Uniform`."""

    stabilizer: StabilizerLike = 1e-9

    def __post_init__(self) -> None:
        _ensure_stabilizer(self.stabilizer, "HoldGates stabilizer")

    def product(self, product: Product, R: Array) -> list[Array]:
        stab = _ensure_stabilizer(self.stabilizer, "stabilizer")
        free = [k for k, gate in enumerate(product.gates) if not gate]
        if not free or len(free) == len(product.operands):
            return Uniform(self.stabilizer).product(product, R)
        return [
            product.share(k, R, stab) / len(free) if k in free else jnp.zeros_like(product.operands[k])
            for k in range(len(product.operands))
        ]


@dataclasses.dataclass(frozen=True)
class SoftmaxGradient(Rule):
    """AttnLRP's softmax rule ([achtibat2024]_, Prop. 3.1): input × gradient, ``R_i = x_i (R_i − s_i Σ_j
    R_j)`` over the softmax axes (``x`` the logits, ``s`` the probabilities).  Not conservative: its
    bias term ``Σ_i x_i s_i Σ_j R_j`` is dropped (shift the logits and the relevance changes), so
    AttnLRP relevance does not sum to the logit even without biases.  A masked logit (``-inf`` or the
    most negative float) gets zero relevance."""

    def softmax(self, x: Array, s: Array, R: Array, axes: tuple[int, ...]) -> Array:
        total = jnp.sum(R, axis=axes, keepdims=True)
        out = x * (R - s * total)
        return jnp.where(jnp.isfinite(x) & (s > 0), out, jnp.zeros_like(out))


RULES: dict[str, type[Rule]] = {
    cls.__name__: cls
    for cls in (
        Epsilon,
        ZPlus,
        AlphaBeta,
        Gamma,
        Flat,
        WSquare,
        ZBox,
        Norm,
        Pass,
        Gradient,
        Uniform,
        HoldGates,
        SoftmaxGradient,
    )
}

__all__ = [
    "RULES",
    "AlphaBeta",
    "Epsilon",
    "Flat",
    "Gamma",
    "Gradient",
    "HoldGates",
    "Norm",
    "Pass",
    "Product",
    "Rule",
    "SoftmaxGradient",
    "Stabilizer",
    "Uniform",
    "WSquare",
    "ZBox",
    "ZPlus",
    "stabilize",
    "unbroadcast",
]
