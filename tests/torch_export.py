"""Flax -> PyTorch weight layouts: the inverses of :mod:`xai_jax.models.torch_port`, used to give the
PyTorch twins of the cross-check tests the weights of a Flax model (the package itself only imports
PyTorch weights).  Tested against torch in tests/models/test_torch_port.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xai_jax.models import torch_port as tp

ArrayLike = Any


def conv_kernel_to_torch(k: ArrayLike) -> np.ndarray:
    """Flax ``nn.Conv`` kernel ``(kh, kw, in/groups, out)`` -> torch Conv weight ``(out, in/groups, kh, kw)``."""
    k = tp.to_numpy(k)
    return np.ascontiguousarray(np.moveaxis(k, (-1, -2), (0, 1)))


def dense_kernel_to_torch(k: ArrayLike) -> np.ndarray:
    """Flax ``nn.Dense`` kernel ``(in, out)`` -> torch Linear weight ``(out, in)``."""
    k = tp.to_numpy(k)
    return np.ascontiguousarray(k.T)


def dense_kernel_to_torch_after_flatten(k: ArrayLike, chw_shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`xai_jax.models.torch_port.dense_kernel_from_torch_after_flatten`: Flax kernel
    ``(H*W*C, out)`` used after an NHWC flatten -> torch Linear weight ``(out, C*H*W)`` used after an NCHW
    flatten."""
    c, h, w_ = (int(s) for s in chw_shape)
    k = tp.to_numpy(k)
    if k.ndim != 2 or k.shape[0] != c * h * w_:
        raise ValueError(
            f"Dense kernel of shape {k.shape} does not follow a flatten of (C, H, W)="
            f"{tuple(chw_shape)} ({c * h * w_} inputs)."
        )
    out = k.shape[1]
    return np.ascontiguousarray(k.reshape(h, w_, c, out).transpose(3, 2, 0, 1).reshape(out, c * h * w_))


def batchnorm_to_torch(params: Mapping[str, ArrayLike], batch_stats: Mapping[str, ArrayLike]) -> dict[str, np.ndarray]:
    """Flax ``nn.BatchNorm`` params/batch_stats -> torch BatchNorm state (``weight``, ``bias``,
    ``running_mean``, ``running_var``)."""
    return {
        "weight": tp.to_numpy(params["scale"]),
        "bias": tp.to_numpy(params["bias"]),
        "running_mean": tp.to_numpy(batch_stats["mean"]),
        "running_var": tp.to_numpy(batch_stats["var"]),
    }


def conv_transpose_kernel_to_torch(k: ArrayLike, *, transpose_kernel: bool = False) -> np.ndarray:
    """Inverse of :func:`xai_jax.models.torch_port.conv_transpose_kernel_from_torch`: Flax ConvTranspose kernel -> torch
    ConvTranspose weight ``(in, out, kh, kw)``."""
    k = tp.to_numpy(k)
    n = k.ndim - 2
    spatial = tuple(range(n))
    if transpose_kernel:  # (*k, out, in) -> (in, out, *k)
        return np.ascontiguousarray(k.transpose(n + 1, n, *spatial))
    # flip: (*k, in, out) -> (in, out, *k)
    return np.ascontiguousarray(np.flip(k, axis=spatial).transpose(n, n + 1, *spatial))
