"""Reference-side helpers for the metric cross-checks: Quantus / Captum on the PyTorch twin of a Flax
model with identical weights, fed the same attributions and the same random draws.

Quantus 0.6 draws its randomness from NumPy's global generator inside its metrics; to run it on *our*
draws, :func:`replaying` swaps one ``numpy.random`` function for a replay of prepared arrays for the
duration of a call.  Quantus calls ``np.trapz`` (removed in NumPy 2); :func:`quantus` puts the
NumPy-2 name back under the old one so its IROF / AUC paths run at all.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from tests import torch_export as te
from xai_jax.models import torch_port as tp


def quantus():
    """The ``quantus`` module, importable on NumPy 2 and quiet."""
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid  # Quantus 0.6 still calls the NumPy-1 name
    warnings.filterwarnings("ignore", module="quantus")
    import quantus as q

    return q


def nchw(a: Any) -> np.ndarray:
    """NHWC (B, H, W, C) -> NCHW NumPy, the layout Quantus and torch expect."""
    return np.ascontiguousarray(np.asarray(a, np.float32).transpose(0, 3, 1, 2))


def torch_gradient(model: Any, inputs: Any, targets: Any, **_: Any) -> np.ndarray:
    """Quantus/Captum ``explain_func``: the plain input gradient of the target logit (NCHW in, out)."""
    import torch

    with torch.enable_grad():
        x = torch.tensor(np.asarray(inputs, np.float32), requires_grad=True)
        out = model(x)
        out[torch.arange(len(targets)), torch.as_tensor(np.asarray(targets))].sum().backward()
    return x.grad.numpy()


@contextlib.contextmanager
def replaying(name: str, draws: Iterable[np.ndarray]) -> Iterator[list[int]]:
    """Make ``numpy.random.<name>`` return the next prepared array at each call (shape checked by the
    caller through the result), restoring it afterwards; yields a one-element call counter."""
    original = getattr(np.random, name)
    queue = iter(draws)
    count = [0]

    def replay(*args: Any, **kwargs: Any) -> np.ndarray:
        count[0] += 1
        return next(queue)

    setattr(np.random, name, replay)
    try:
        yield count
    finally:
        setattr(np.random, name, original)


#: TinyCNN (tests/twins.py): Flax layer -> (torch prefix, kind, extra) for porting new weights.
TINY_CNN_LAYOUT = {
    "conv1": ("conv1", "conv", None),
    "conv2": ("conv2", "conv", None),
    "fc1": ("fc1", "dense_flatten", (16, 7, 7)),
    "fc2": ("fc2", "dense", None),
}


def torch_state(variables: dict, layout: dict = TINY_CNN_LAYOUT) -> dict:
    """A torch state dict for ``variables`` (used to load randomised Flax weights into the twin)."""
    import torch

    out = {}
    for name, (prefix, kind, extra) in layout.items():
        p = variables["params"][name]
        if kind == "conv":
            out[f"{prefix}.weight"] = te.conv_kernel_to_torch(p["kernel"])
        elif kind == "dense":
            out[f"{prefix}.weight"] = te.dense_kernel_to_torch(p["kernel"])
        else:
            out[f"{prefix}.weight"] = te.dense_kernel_to_torch_after_flatten(p["kernel"], extra)
        out[f"{prefix}.bias"] = tp.to_numpy(p["bias"])
    return {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in out.items()}
