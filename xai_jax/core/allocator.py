"""Keep XLA:CPU's scratch memory in the malloc heap between calls (glibc only, opt-in).

XLA:CPU allocates a compiled program's temporary buffers with ``malloc`` at every call and frees
them when it returns.  glibc serves an allocation above its mmap threshold with a fresh ``mmap``
and returns it with ``munmap``; the threshold adapts upwards as large blocks are freed, but never
past 32 MiB on 64-bit systems.  A program whose scratch memory is larger therefore gets new,
untouched pages at every call and takes a page fault on each 4 KiB of them the first time a kernel
writes there.  Measured (``docs/transformers.md``, Speed): AttnLRP on a 4-layer ViT at batch 128
needs 45.7 MiB of scratch and ran in 51-63 ms, against 28-32 ms for one ``jax.grad`` of the same
model (31.1 MiB, just under the limit); after :func:`tune_cpu_malloc` both take 28 ms.  The cost is
not in the arithmetic: the same kernels, timed one by one, differ by a few percent.

:func:`tune_cpu_malloc` raises the mmap threshold so that blocks up to ``max_bytes`` come from the
heap, and keeps freed memory there (trim threshold) instead of returning it to the system, so the
next call reuses pages that are already mapped.  The price is resident memory: freed memory up to the
trim threshold (``2 · max_bytes``, at most 2 GiB) may stay with the process.  Nothing here runs at
import: it changes the allocator of the whole process (PyTorch, NumPy and everything else use it
too), which a library should only do when asked.  ``xai-jax`` commands call it, since they are their
own process.  The same effect without code: ``MALLOC_MMAP_THRESHOLD_=1073741824
MALLOC_TOP_PAD_=268435456`` in the environment before Python starts, or a caching allocator
(jemalloc, tcmalloc) via ``LD_PRELOAD``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from typing import Any

from . import checks
from .errors import InputError

__all__ = ["tune_cpu_malloc"]

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3


def _glibc() -> Any | None:
    """glibc's ``libc`` through ctypes, or ``None`` on any other C library (macOS, musl, Windows)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def tune_cpu_malloc(max_bytes: int = 1 << 30) -> bool:
    """Serve allocations up to ``max_bytes`` from the heap and keep freed memory for reuse.

    Sets glibc's ``M_MMAP_THRESHOLD`` to ``max_bytes``, ``M_TRIM_THRESHOLD`` to
    ``min(2 · max_bytes, 2**31 - 1)`` and ``M_TOP_PAD`` to ``max_bytes / 4`` (``mallopt(3)``), for the
    whole process.  Worth it when a jitted call needs more than 32 MiB of scratch memory on the CPU
    (large batches, transformers): see the module docstring for why and what it costs.

    Args:
        max_bytes: the largest block kept in the heap (default 1 GiB); larger ones are still
            mapped and unmapped per call.

    Returns:
        ``True`` if glibc accepted the three settings, ``False`` on other C libraries (nothing
        changed there).

    Raises:
        InputError: ``max_bytes`` is not a positive integer below 2**31 (``mallopt`` takes a C ``int``).

    Example:
        >>> import xai_jax as xj
        >>> applied = xj.tune_cpu_malloc()  # False where the C library is not glibc
        >>> isinstance(applied, bool)
        True
    """
    max_bytes = checks.check_positive_int("max_bytes", max_bytes)
    if max_bytes >= 2**31:
        raise InputError(f"max_bytes must be below 2**31 (mallopt takes a C int); got {max_bytes}.")
    libc = _glibc()
    if libc is None:
        return False
    settings = (
        (M_MMAP_THRESHOLD, max_bytes),
        (M_TRIM_THRESHOLD, min(2 * max_bytes, 2**31 - 1)),
        (M_TOP_PAD, max_bytes // 4),
    )
    accepted = [libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1 for param, value in settings]
    return all(accepted)
