"""Reference-side helpers of the propagation tests: Zennit and Captum on the PyTorch twins.

Imported lazily by the tests (torch, zennit and captum are test dependencies only).
"""

from __future__ import annotations

import numpy as np

from tests import twins


def assert_matches(ours, reference, rel=1e-4, what=""):
    """max |ours − reference| ≤ rel · max |reference| (and the reference is not all zero)."""
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    scale = np.abs(reference).max()
    assert scale > 0, "reference is all zero: the comparison would be vacuous"
    err = np.abs(ours - reference).max()
    assert err <= rel * scale, (
        f"{what} max abs diff {err:.3g} > {rel} x max |ref| {scale:.3g} (relative {err / scale:.2e})"
    )
    return err / scale


def exact_merge_batch_norm():
    """Zennit's ``SequentialMergeBatchNorm``, except that the BatchNorm it leaves behind computes the
    identity (eps = 0) instead of ``x / sqrt(1 + eps)`` (DESIGN §2: Zennit's ~3e-5 defect), so the
    merged model equals the original one and the comparison can be tight."""
    from zennit.canonizers import SequentialMergeBatchNorm

    class ExactMergeBatchNorm(SequentialMergeBatchNorm):
        def register(self, linears, batch_norm):
            super().register(linears, batch_norm)
            self._eps = batch_norm.eps
            batch_norm.eps = 0.0

        def remove(self):
            super().remove()
            self.batch_norm.eps = self._eps

    return ExactMergeBatchNorm()


def zennit_relevance(tmodel, x, target, composite, *, layers=()):
    """Zennit's relevance of the input (NHWC) with ``attr_output = one_hot(target) × logits``; with
    ``layers`` (torch submodule paths) also the relevance arriving at those modules' outputs."""
    import torch
    from zennit.attribution import Gradient

    grads, handles = {}, []
    for path in layers:
        module = tmodel.get_submodule(path)

        def hook(mod, inp, out, path=path):
            out.register_hook(lambda g: grads.__setitem__(path, g.detach().clone()))

        handles.append(module.register_forward_hook(hook))
    xt = twins.to_torch(x, requires_grad=True)
    target = torch.as_tensor(np.broadcast_to(target, (x.shape[0],)).copy())
    try:
        with Gradient(model=tmodel, composite=composite) as attributor:
            _, relevance = attributor(xt, lambda out: torch.nn.functional.one_hot(target, out.shape[1]).to(out) * out)
    finally:
        for h in handles:
            h.remove()
    result = twins.to_numpy_nhwc(relevance)
    if not layers:
        return result
    at = {p: (twins.to_numpy_nhwc(g) if g.ndim == 4 else g.numpy()) for p, g in grads.items()}
    return result, at


def captum_deeplift(tmodel, x, baseline, target):
    import torch
    from captum.attr import DeepLift

    xt = twins.to_torch(x, requires_grad=True)
    bt = twins.to_torch(np.broadcast_to(baseline, x.shape).astype(np.float32))
    target = torch.as_tensor(np.broadcast_to(target, (x.shape[0],)).copy())
    return twins.to_numpy_nhwc(DeepLift(tmodel, multiply_by_inputs=True).attribute(xt, bt, target=target))
