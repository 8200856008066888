"""Composites: which rule each layer gets (Zennit's names and choices).

A composite maps each layer found in the trace to a rule, from its :class:`LayerContext`: its Flax
name (``"block/conv1"``), its *kind* (``"conv"``, ``"dense"``, ``"avgpool"``, ``"sum"``,
``"activation"``, ``"maxpool"``, ``"affine"``), its Flax module type (``"Conv"``) and its position
among the conv/dense layers in forward order.  ``None`` means no rule: the layer passes the plain
gradient (Zennit's behaviour for layers without a hook).

Every built-in composite starts from Zennit's base map -- activations ``Pass``, residual sums
``Norm``, average pooling ``Norm``, an unmerged BatchNorm ``Pass``, max pooling the gradient -- and
merges BatchNorm into the preceding layer (``merge_batch_norm=True``, Zennit's canonizer as an option):

========================== ====================== ============== ==========================
composite                  first conv/dense layer other convs    dense layers
========================== ====================== ============== ==========================
``EpsilonPlus``            --                     ``ZPlus``      ``Epsilon``
``EpsilonPlusFlat``        ``Flat``               ``ZPlus``      ``Epsilon``
``EpsilonAlpha2Beta1``     --                     ``AlphaBeta``  ``Epsilon``
``EpsilonAlpha2Beta1Flat`` ``Flat``               ``AlphaBeta``  ``Epsilon``
``EpsilonGammaBox(l, h)``  ``ZBox(l, h)`` (conv)  ``Gamma``      ``Epsilon``
========================== ====================== ============== ==========================

:class:`MapComposite` builds any other: rules by layer name (glob patterns), by layer type or kind,
and for the first layer.  :class:`PositionMix` is the seed package's composite: LRP-0 in the upper
layers, LRP-ε in the middle, LRP-αβ in the lower ones and z^B at the input (Montavon et al. 2019,
"Layer-Wise Relevance Propagation: An Overview", Sec. 10.3).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..core.checks import check_bool
from ..core.errors import InputError, unknown_name_message
from .rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Gradient,
    HoldGates,
    Norm,
    Pass,
    Rule,
    SoftmaxGradient,
    Stabilizer,
    StabilizerLike,
    Uniform,
    ZBox,
    ZPlus,
)

#: Kind words accepted as type selectors; ``"linear"`` is conv or dense.
KIND_WORDS = frozenset(
    {"conv", "dense", "linear", "avgpool", "sum", "activation", "maxpool", "affine", "softmax", "product"}
)


@dataclasses.dataclass(frozen=True)
class LayerContext:
    """What a composite knows about a layer when it picks its rule."""

    name: str
    kind: str
    module_type: str | None = None
    index: int | None = None  # position among conv/dense layers, forward order (0 = first)
    count: int = 0  # number of conv/dense layers
    first_conv: int | None = None  # index of the model's first convolution
    first_dense: int | None = None  # index of the model's first dense layer

    @property
    def is_linear(self) -> bool:
        return self.kind in ("conv", "dense")

    def is_first(self, kinds: tuple[str, ...] = ("conv", "dense")) -> bool:
        """Is this the first layer (forward order) among layers of ``kinds``?"""
        firsts = [
            i for k, i in (("conv", self.first_conv), ("dense", self.first_dense)) if k in kinds and i is not None
        ]
        return self.kind in kinds and bool(firsts) and self.index == min(firsts)


def _matches_type(selector: Any, ctx: LayerContext) -> bool:
    if isinstance(selector, str):
        if selector in KIND_WORDS:
            return selector == ctx.kind or (selector == "linear" and ctx.is_linear)
        return selector == ctx.module_type
    if isinstance(selector, type):
        return selector.__name__ == ctx.module_type
    return False


def _pairs(
    mapping: Mapping[Any, Rule | None] | Iterable[tuple[Any, Rule | None]] | None, what: str
) -> tuple[tuple[Any, Rule | None], ...]:
    if mapping is None:
        return ()
    items = tuple(mapping.items()) if isinstance(mapping, Mapping) else tuple(mapping)
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise InputError(f"{what} must be a mapping or a sequence of (selector, rule) pairs; got {item!r}.")
        selector, rule = item
        if rule is not None and not isinstance(rule, Rule):
            raise InputError(
                f"{what}[{selector!r}] must be a rule (e.g. Epsilon()), or None for the gradient; got {rule!r}."
            )
        selectors = selector if isinstance(selector, tuple) else (selector,)
        for one in selectors:
            if not isinstance(one, (str, type)):
                raise InputError(f"{what} selectors must be strings or Flax module classes; got {one!r}.")
    return items


def base_map(stabilizer: StabilizerLike = 1e-6) -> tuple[tuple[str, Rule | None], ...]:
    """Zennit's ``layer_map_base``: activations and lone BatchNorms pass, sums and average pooling
    are normalised, max pooling follows the gradient."""
    return (
        ("activation", Pass()),
        ("sum", Norm(stabilizer)),
        ("avgpool", Norm(stabilizer)),
        ("affine", Pass()),
        ("maxpool", None),
    )


class Composite:
    """Base class: maps a :class:`LayerContext` to a rule (or ``None``: the gradient).

    Subclasses implement :meth:`rule` and :meth:`_key` (composites are hashable: they are static
    options of the jitted methods).
    """

    #: Fold inference-mode BatchNorm and other constant affine steps into the preceding layer
    #: (Zennit's ``SequentialMergeBatchNorm`` canonizer, as a plain option here: the trace engine
    #: groups layers itself, so there is nothing to rewrite).
    merge_batch_norm: bool = True
    #: The activations the rules are derived for (``None``: any); the engine refuses other models.
    activations: frozenset[str] | None = None

    def rule(self, ctx: LayerContext) -> Rule | None:
        raise NotImplementedError

    def _key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def resolve(self, ctx: LayerContext) -> Rule | None:
        rule = self.rule(ctx)
        return None if isinstance(rule, Gradient) else rule

    def unmatched(self, contexts: Sequence[LayerContext]) -> list[str]:
        """Messages for the user's selectors that match none of ``contexts`` (the traced model's
        layers): a rule meant for a layer that is not there would silently not apply."""
        return []

    def __hash__(self) -> int:
        return hash((type(self), self._key()))

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._key() == other._key()  # type: ignore[attr-defined]


class MapComposite(Composite):
    """Rules by layer name, first layer, layer type/kind, then Zennit's base map.

    Args:
      names: ``{"conv1": ZBox(0, 1), "block/*": Gamma()}``: Flax layer names or glob patterns
        (a tuple of them as one key matches any).
      types: ``{"conv": ZPlus(), nn.Dense: Epsilon()}``: kind words (``"conv"``, ``"dense"``,
        ``"linear"``, ``"avgpool"``, ``"sum"``, ``"activation"``, ``"maxpool"``, ``"affine"``), Flax
        module classes or their names (``"Conv"``).
      first: the rule of the first layer whose kind is in ``first_kinds`` (forward order).
      base: append Zennit's base map (activations ``Pass``, sums/average pooling ``Norm``...).
      merge_batch_norm: fold inference-mode BatchNorm (and other constant affine steps) into the
        preceding conv/dense layer (Zennit's ``SequentialMergeBatchNorm``); off, BatchNorm stays a
        separate ``affine`` step (``Pass`` in the base map).
      activations: the activation names the rules are derived for (e.g. ``{"relu"}`` for z⁺);
        a model with others is refused.  ``None`` (default): any.

    The first matching entry wins: names, then ``first``, then types, then the base map.
    """

    def __init__(
        self,
        names: Mapping[Any, Rule | None] | Iterable[tuple[Any, Rule | None]] | None = None,
        types: Mapping[Any, Rule | None] | Iterable[tuple[Any, Rule | None]] | None = None,
        *,
        first: Rule | None = None,
        first_kinds: tuple[str, ...] = ("conv", "dense"),
        base: bool = True,
        stabilizer: StabilizerLike = 1e-6,
        merge_batch_norm: bool = True,
        activations: Iterable[str] | None = None,
    ) -> None:
        self.names = _pairs(names, "names")
        self.activations = None if activations is None else frozenset(activations)
        self.types = _pairs(types, "types")
        for selector, _ in self.types:
            for one in selector if isinstance(selector, tuple) else (selector,):
                if isinstance(one, str) and one not in KIND_WORDS and not one[:1].isupper():
                    raise InputError(
                        f"types selector {one!r} is neither a kind ({', '.join(sorted(KIND_WORDS))}) nor a Flax "
                        "class name; use names= for layer names."
                    )
        if first is not None and not isinstance(first, Rule):
            raise InputError(f"first must be a rule; got {first!r}.")
        bad = [k for k in first_kinds if k not in ("conv", "dense")]
        if bad:
            raise InputError(f"first_kinds must be among 'conv', 'dense'; got {bad}.")
        self.first = first
        self.first_kinds = tuple(first_kinds)
        self.base = base
        self.stabilizer = stabilizer
        self.merge_batch_norm = check_bool("merge_batch_norm", merge_batch_norm)
        self._base = base_map(stabilizer) if base else ()
        #: the type selectors the user gave (a built-in composite's own ``conv``/``dense`` entries
        #: may match nothing on a model without convolutions, and that is fine)
        self.user_types = self.types

    def unmatched(self, contexts: Sequence[LayerContext]) -> list[str]:
        names = sorted({c.name for c in contexts if c.name})
        found = []
        for selector, _ in self.names:
            for one in _selectors(selector):
                if not any(fnmatch.fnmatchcase(c.name, one) for c in contexts):
                    found.append(
                        unknown_name_message("layer name selector", one, names).replace(
                            "Unknown", "No layer matches the"
                        )
                    )
        for selector, _ in self.user_types:
            for one in _selectors(selector):
                if not any(_matches_type(one, c) for c in contexts):
                    kinds = sorted({c.kind for c in contexts} | {c.module_type for c in contexts if c.module_type})
                    label = one if isinstance(one, str) else one.__name__
                    found.append(
                        unknown_name_message("type selector", label, kinds).replace("Unknown", "No layer matches the")
                    )
        return found

    def rule(self, ctx: LayerContext) -> Rule | None:
        for selector, rule in self.names:
            if any(
                fnmatch.fnmatchcase(ctx.name, s) for s in (selector if isinstance(selector, tuple) else (selector,))
            ):
                return rule
        if self.first is not None and ctx.is_first(self.first_kinds):
            return self.first
        for selector, typed in (*self.types, *self._base):
            if any(_matches_type(s, ctx) for s in (selector if isinstance(selector, tuple) else (selector,))):
                return typed
        return None

    def _key(self) -> tuple[Any, ...]:
        return (
            self.names,
            self.types,
            self.first,
            self.first_kinds,
            self.base,
            _hashable(self.stabilizer),
            self.merge_batch_norm,
            self.activations,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(names={dict(self.names)}, types={dict(self.types)}, first={self.first!r})"


def _selectors(selector: Any) -> tuple[Any, ...]:
    return selector if isinstance(selector, tuple) else (selector,)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return id(value)
    return value


class EpsilonPlus(MapComposite):
    """``ZPlus`` for convolutions, ``Epsilon`` for dense layers (Zennit ``EpsilonPlus``)."""

    def __init__(
        self,
        epsilon: StabilizerLike = 1e-6,
        stabilizer: StabilizerLike = 1e-6,
        *,
        zero_params: Any = None,
        names: Any = None,
        types: Any = None,
        merge_batch_norm: bool = True,
    ) -> None:
        own = (("conv", ZPlus(stabilizer, zero_params)), ("dense", Epsilon(epsilon, zero_params)))
        super().__init__(
            names, (*_pairs(types, "types"), *own), stabilizer=stabilizer, merge_batch_norm=merge_batch_norm
        )
        self.user_types = _pairs(types, "types")


class EpsilonPlusFlat(MapComposite):
    """``Flat`` for the first conv/dense layer, ``ZPlus`` for other convolutions, ``Epsilon`` for dense
    layers (Zennit ``EpsilonPlusFlat``; Kohlbrenner et al. 2020, "Towards Best Practice in Explaining
    Neural Network Decisions with LRP")."""

    def __init__(
        self,
        epsilon: StabilizerLike = 1e-6,
        stabilizer: StabilizerLike = 1e-6,
        *,
        zero_params: Any = None,
        names: Any = None,
        types: Any = None,
        first: Rule | None = None,
        merge_batch_norm: bool = True,
    ) -> None:
        own = (("conv", ZPlus(stabilizer, zero_params)), ("dense", Epsilon(epsilon, zero_params)))
        super().__init__(
            names,
            (*_pairs(types, "types"), *own),
            first=first or Flat(stabilizer, zero_params),
            stabilizer=stabilizer,
            merge_batch_norm=merge_batch_norm,
        )
        self.user_types = _pairs(types, "types")


class EpsilonAlpha2Beta1(MapComposite):
    """``AlphaBeta(2, 1)`` for convolutions, ``Epsilon`` for dense layers (Zennit ``EpsilonAlpha2Beta1``)."""

    def __init__(
        self,
        epsilon: StabilizerLike = 1e-6,
        stabilizer: StabilizerLike = 1e-6,
        *,
        zero_params: Any = None,
        names: Any = None,
        types: Any = None,
        merge_batch_norm: bool = True,
    ) -> None:
        own = (("conv", AlphaBeta(2.0, 1.0, stabilizer, zero_params)), ("dense", Epsilon(epsilon, zero_params)))
        super().__init__(
            names, (*_pairs(types, "types"), *own), stabilizer=stabilizer, merge_batch_norm=merge_batch_norm
        )
        self.user_types = _pairs(types, "types")


class EpsilonAlpha2Beta1Flat(MapComposite):
    """``Flat`` for the first conv/dense layer, ``AlphaBeta(2, 1)`` for other convolutions, ``Epsilon``
    for dense layers (Zennit ``EpsilonAlpha2Beta1Flat``)."""

    def __init__(
        self,
        epsilon: StabilizerLike = 1e-6,
        stabilizer: StabilizerLike = 1e-6,
        *,
        zero_params: Any = None,
        names: Any = None,
        types: Any = None,
        first: Rule | None = None,
        merge_batch_norm: bool = True,
    ) -> None:
        own = (("conv", AlphaBeta(2.0, 1.0, stabilizer, zero_params)), ("dense", Epsilon(epsilon, zero_params)))
        super().__init__(
            names,
            (*_pairs(types, "types"), *own),
            first=first or Flat(stabilizer, zero_params),
            stabilizer=stabilizer,
            merge_batch_norm=merge_batch_norm,
        )
        self.user_types = _pairs(types, "types")


class EpsilonGammaBox(MapComposite):
    """``ZBox(low, high)`` for the first convolution, ``Gamma`` for other convolutions, ``Epsilon`` for
    dense layers (Zennit ``EpsilonGammaBox``; Montavon et al. 2019)."""

    def __init__(
        self,
        low: Any,
        high: Any,
        epsilon: StabilizerLike = 1e-6,
        gamma: float = 0.25,
        stabilizer: StabilizerLike = 1e-6,
        *,
        zero_params: Any = None,
        names: Any = None,
        types: Any = None,
        merge_batch_norm: bool = True,
    ) -> None:
        own = (("conv", Gamma(gamma, stabilizer, zero_params)), ("dense", Epsilon(epsilon, zero_params)))
        super().__init__(
            names,
            (*_pairs(types, "types"), *own),
            first=ZBox(low, high, stabilizer, zero_params),
            first_kinds=("conv",),
            stabilizer=stabilizer,
            merge_batch_norm=merge_batch_norm,
        )
        self.user_types = _pairs(types, "types")


class PositionMix(Composite):
    """The seed package's position-based composite (Montavon et al. 2019, Sec. 10.3).

    With ``n`` conv/dense layers numbered ``0..n-1`` from the input, layer ``i`` gets ``lower``
    (LRP-αβ) when ``i < round(bounds[0]·n)``, ``middle`` (LRP-ε with ε scaled by the layer's RMS) when
    ``i < round(bounds[1]·n)``, and ``upper`` (LRP-0) otherwise; layer 0 gets ``first`` (z^B) when
    given.  The seed counted every module (activations, pooling) in ``n``; here only conv/dense
    layers count, so the split does not depend on how a model spells its activations.
    """

    def __init__(
        self,
        upper: Rule = Epsilon(1e-9),
        middle: Rule = Epsilon(Stabilizer(0.1, norm_scale=True)),
        lower: Rule = AlphaBeta(2.0, 1.0),
        first: Rule | None = ZBox(-1.0, 1.0),
        bounds: tuple[float, float] = (0.3, 0.6),
        stabilizer: StabilizerLike = 1e-6,
        merge_batch_norm: bool = True,
    ) -> None:
        lo, hi = bounds
        if not (0.0 <= lo <= hi <= 1.0):
            raise InputError(f"bounds must satisfy 0 <= lower <= upper <= 1; got {bounds}.")
        for what, rule in (("upper", upper), ("middle", middle), ("lower", lower), ("first", first)):
            if rule is not None and not isinstance(rule, Rule):
                raise InputError(f"{what} must be a rule; got {rule!r}.")
        self.upper, self.middle, self.lower, self.first = upper, middle, lower, first
        self.bounds = (float(lo), float(hi))
        self.stabilizer = stabilizer
        self.merge_batch_norm = check_bool("merge_batch_norm", merge_batch_norm)
        self._base = base_map(stabilizer)

    def rule(self, ctx: LayerContext) -> Rule | None:
        if ctx.is_linear and ctx.index is not None:
            if ctx.index == 0 and self.first is not None:
                return self.first
            if ctx.index < round(self.bounds[0] * ctx.count):
                return self.lower
            if ctx.index < round(self.bounds[1] * ctx.count):
                return self.middle
            return self.upper
        for selector, rule in self._base:
            if _matches_type(selector, ctx):
                return rule
        return None

    def _key(self) -> tuple[Any, ...]:
        return (
            self.upper,
            self.middle,
            self.lower,
            self.first,
            self.bounds,
            _hashable(self.stabilizer),
            self.merge_batch_norm,
        )


def _linear_rule(linear: str | Rule, epsilon: StabilizerLike, gamma: float, stabilizer: StabilizerLike) -> Rule:
    if isinstance(linear, Rule):
        return linear
    if linear == "epsilon":
        return Epsilon(epsilon)
    if linear == "gamma":
        return Gamma(gamma, stabilizer)
    raise InputError(f"linear must be 'epsilon', 'gamma' or a rule (e.g. Gamma(0.5)); got {linear!r}.")


class AttnLRP(MapComposite):
    """AttnLRP ([achtibat2024]_): LRP for transformers, the rules of LXT 2.1's ``attnLRP`` patches found
    in the trace of any Flax model (no per-architecture code).

    ============================== ====================================================================
    layer (kind)                   rule
    ============================== ====================================================================
    conv / dense (``linear``)      ``Epsilon(epsilon)`` (LXT: the plain gradient, ε → 0), or
                                   ``Gamma(gamma)`` with ``linear="gamma"`` (LXT's ViT recipe), or any rule
    softmax                        :class:`~xai_jax.propagation.rules.SoftmaxGradient`: ``x ⊙ ∂s`` (Prop. 3.1)
    product of two inputs          :class:`~xai_jax.propagation.rules.Uniform` (Eq. 7): ``q·kᵀ``, ``A·V``,
                                   ``act(gate) ⊙ up`` split evenly
    element-wise activation        ``Pass`` (the identity rule, Eq. 9): GELU, SiLU, any ``f(x)`` of one tensor
    LayerNorm / RMSNorm / GroupNorm statistics held constant (identity rule on ``x / σ``); mean-centring by
                                   ``Norm`` (the ε rule on ``x − mean(x)``)
    shift or scale (``affine``)    ``Epsilon``: a position embedding or a norm's bias keeps its share
    residual sum / mean pooling    ``Norm``
    max pooling                    the gradient
    ============================== ====================================================================

    With the default ``epsilon`` the result equals LXT 2.1's ``attnLRP`` (input × modified gradient) to
    ≤ 1e-4 × the maximum on Hugging Face LLaMA and GPT-2 twins with the same weights (measured: ~1e-6;
    ``tests/transformers/test_lxt.py``).  Not conservative: the softmax rule drops a bias term, so
    ``R.sum()`` differs from the logit even without biases (measured on the bias-free twins: 0.39-0.56
    of the logit); :class:`CPLRP` is the conservative variant.  See docs/transformers.md.

    Args:
      linear: ``"epsilon"`` (default), ``"gamma"`` or a rule for conv/dense layers.
      epsilon: the ε of the linear layers, affine steps, sums and products (default ``1e-9``: LXT's
        plain gradient, only guarding against division by zero).
      gamma: γ for ``linear="gamma"``.
      names: more rules by layer name (they win over the defaults), as in :class:`MapComposite`
        (e.g. ``names={"*/in_proj": Epsilon(1e-9)}`` to keep LRP-ε on some layers).
      types: more rules by layer type or kind, as in :class:`MapComposite`.

    Example:
      >>> from xai_jax.models.transformers import ViT
      >>> vit = ViT(dim=16, depth=1, heads=2, mlp_dim=32)
      >>> params = vit.init(jax.random.key(0), x)
      >>> R = xj.lrp(vit, params, x, composite=xj.composites.AttnLRP())
      >>> R.shape == x.shape
      True
    """

    def __init__(
        self,
        linear: str | Rule = "epsilon",
        *,
        epsilon: StabilizerLike = 1e-9,
        gamma: float = 0.25,
        stabilizer: StabilizerLike = 1e-9,
        names: Any = None,
        types: Any = None,
    ) -> None:
        own = self._own(_linear_rule(linear, epsilon, gamma, stabilizer), epsilon)
        super().__init__(names, (*_pairs(types, "types"), *own), stabilizer=epsilon)
        self.user_types = _pairs(types, "types")
        self.linear, self.epsilon, self.gamma = linear, epsilon, gamma

    def _own(self, linear: Rule, epsilon: StabilizerLike) -> tuple[tuple[str, Rule | None], ...]:
        return (
            ("linear", linear),
            ("softmax", SoftmaxGradient()),
            ("product", Uniform(epsilon)),
            ("affine", Epsilon(epsilon)),
            ("activation", Pass()),
            ("sum", Norm(epsilon)),
            ("avgpool", Norm(epsilon)),
            ("maxpool", None),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(linear={self.linear!r}, epsilon={self.epsilon!r})"


class CPLRP(AttnLRP):
    """CP-LRP ([ali2022]_): as :class:`AttnLRP`, but attention weights and gates are held constant
    (:class:`~xai_jax.propagation.rules.HoldGates`: no relevance through ``q``, ``k`` or a gated MLP's
    gate; the values and the ``up`` branch take it all).  LXT 2.1's ``cp_LRP`` patches: equal to them
    to ≤ 1e-4 × the maximum on LLaMA, GPT-2 and torchvision ViT twins (with ``linear="gamma"`` too,
    once the attention projections are named ε as LXT's hooks leave them, see docs/transformers.md).
    Conservative: on a bias-free model with ``linear="epsilon"`` the input relevance sums to the
    target logit (to float32 precision, tested).

    Example:
      >>> from xai_jax.models.transformers import ViT
      >>> vit = ViT(dim=16, depth=1, heads=2, mlp_dim=32)
      >>> params = vit.init(jax.random.key(0), x)
      >>> as_lxt = xj.composites.CPLRP("gamma", gamma=0.5, names={"*/in_proj": xj.rules.Epsilon(1e-9),
      ...                                                       "*/out_proj": xj.rules.Epsilon(1e-9)})
      >>> R = xj.lrp(vit, params, x, 3, composite=as_lxt)
      >>> R.shape == x.shape
      True
    """

    def _own(self, linear: Rule, epsilon: StabilizerLike) -> tuple[tuple[str, Rule | None], ...]:
        return tuple((k, HoldGates(epsilon) if k == "product" else r) for k, r in super()._own(linear, epsilon))


COMPOSITES: dict[str, type[Composite]] = {
    "epsilon_plus": EpsilonPlus,
    "epsilon_plus_flat": EpsilonPlusFlat,
    "epsilon_alpha2_beta1": EpsilonAlpha2Beta1,
    "epsilon_alpha2_beta1_flat": EpsilonAlpha2Beta1Flat,
    "epsilon_gamma_box": EpsilonGammaBox,
    "position_mix": PositionMix,
    "attn_lrp": AttnLRP,
    "cp_lrp": CPLRP,
}

__all__ = [
    "COMPOSITES",
    "CPLRP",
    "AttnLRP",
    "Composite",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha2Beta1Flat",
    "EpsilonGammaBox",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "LayerContext",
    "MapComposite",
    "PositionMix",
    "base_map",
]
