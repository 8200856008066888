"""Canonizers: how the traced model is put into a form LRP rules apply to.

Zennit canonizers rewrite a PyTorch model's modules before the rules are attached (merge BatchNorm
into the preceding linear layer, make residual sums explicit modules).  Here the model is never
rewritten: the trace engine (:mod:`xai_jax.trace.graph`) finds layers in the jaxpr, and a canonizer
is a flag that says how to group them.

* :class:`MergeBatchNorm` (on in every built-in composite): input-independent ``sub``/``mul``/``add``
  chains after a convolution or dense layer -- an inference-mode BatchNorm, a constant scaling -- are
  folded into that layer, ``z = c ⊙ A_W(x) + b``, so rules see the merged weight ``c·W`` and bias
  ``b`` exactly as Zennit's ``SequentialMergeBatchNorm`` makes them (Zennit then leaves an identity
  BatchNorm computing ``x/√(1+ε)``; ours has none, a ~1e-5 relative difference).  Without it, the
  chain from another module (the BatchNorm) is kept as element-wise ``affine`` steps and the
  composite's ``"affine"`` rule applies (``Pass`` in the built-ins, as Zennit's ``BatchNorm → Pass``).
  Training-mode BatchNorm depends on the batch and is rejected (``use_running_average=True``).

Residual sums need no canonizer: an ``add`` of two input-dependent values is found in the trace and
gets the composite's ``"sum"`` rule (``Norm``: split in proportion to the operands).  Max pooling is
chosen per call (``xj.lrp(..., max_pool="winner" | "average")``).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Canonizer:
    """Base class of canonizers (flags read by the trace analysis)."""


@dataclasses.dataclass(frozen=True)
class MergeBatchNorm(Canonizer):
    """Fold BatchNorm (inference mode) and other constant affine steps into the preceding layer."""


def merges_batch_norm(canonizers: tuple[Canonizer, ...]) -> bool:
    return any(isinstance(c, MergeBatchNorm) for c in canonizers)


__all__ = ["Canonizer", "MergeBatchNorm", "merges_batch_norm"]
