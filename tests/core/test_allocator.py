"""xj.tune_cpu_malloc: glibc's settings reach malloc, other C libraries are left alone, bad sizes refused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import xai_jax as xj
from xai_jax.core import allocator

GLIBC = allocator._glibc() is not None
MIB = 1 << 20


class FakeLibc:
    def __init__(self, answer: int = 1):
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, param, value):
        self.calls.append((param.value, value.value))
        return self.answer


# Run in a fresh interpreter: whether glibc maps a block depends on what the process freed before
# (a large free region in the heap serves the next request whatever the threshold), so the answer
# in a test worker would depend on the tests that ran there earlier.
_PROBE = r"""
import ctypes, sys
from xai_jax.core import allocator

MIB = 1 << 20
libc = allocator._glibc()
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]


def mmapped(size):
    # bit 1 (IS_MMAPPED) of the size field in front of the block (glibc malloc.c)
    pointer = libc.malloc(size)
    try:
        return bool(ctypes.c_size_t.from_address(pointer - ctypes.sizeof(ctypes.c_size_t)).value & 0x2)
    finally:
        libc.free(pointer)


print(mmapped(40 * MIB), allocator.tune_cpu_malloc(256 * MIB), mmapped(40 * MIB), mmapped(300 * MIB))
"""


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_large_blocks_come_from_the_heap_after_tuning():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True)
    before, applied, after, above = out.stdout.split()
    # 40 MiB is above the largest threshold glibc adapts to by itself (32 MiB on 64-bit): mapped per call
    assert before == "True"
    assert applied == "True"
    assert after == "False"  # now from the heap, reused by the next call
    assert above == "True"  # above max_bytes: still mapped per allocation


def test_the_three_settings_reach_mallopt(monkeypatch):
    fake = FakeLibc()
    monkeypatch.setattr(allocator, "_glibc", lambda: fake)
    assert xj.tune_cpu_malloc(64 * MIB) is True
    assert fake.calls == [
        (allocator.M_MMAP_THRESHOLD, 64 * MIB),
        (allocator.M_TRIM_THRESHOLD, 128 * MIB),
        (allocator.M_TOP_PAD, 16 * MIB),
    ]
    fake.calls.clear()
    assert xj.tune_cpu_malloc() is True
    assert fake.calls[1] == (allocator.M_TRIM_THRESHOLD, 2**31 - 1)  # twice 1 GiB does not fit a C int


def test_a_refused_setting_is_reported(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: FakeLibc(answer=0))
    assert xj.tune_cpu_malloc() is False


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    assert allocator._glibc() is None
    assert xj.tune_cpu_malloc() is False


@pytest.mark.parametrize("bad", [0, -1, 2**31, 1.5, True, "1GiB", None])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(xj.InputError, match="max_bytes"):
        xj.tune_cpu_malloc(bad)
