"""xj.tune_cpu_malloc: glibc's settings reach malloc, other C libraries are left alone, bad sizes refused."""

from __future__ import annotations

import ctypes

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


def _is_mmapped(size: int, libc) -> bool:
    """Whether glibc serves a ``size``-byte block by mmap: bit 1 of the chunk's size field (malloc.c)."""
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    pointer = libc.malloc(size)
    try:
        return bool(ctypes.c_size_t.from_address(pointer - ctypes.sizeof(ctypes.c_size_t)).value & 0x2)
    finally:
        libc.free(pointer)


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_large_blocks_come_from_the_heap_after_tuning():
    libc = allocator._glibc()
    # glibc's own adaptive threshold never exceeds 32 MiB on 64-bit; start from there whatever ran
    # earlier in this process (the CLI tests call xai-jax's main, which tunes)
    assert libc.mallopt(ctypes.c_int(allocator.M_MMAP_THRESHOLD), ctypes.c_int(32 * MIB)) == 1
    assert _is_mmapped(40 * MIB, libc)
    assert xj.tune_cpu_malloc(256 * MIB) is True
    assert not _is_mmapped(40 * MIB, libc)
    assert _is_mmapped(300 * MIB, libc)  # above max_bytes: still mapped per allocation
    assert xj.tune_cpu_malloc() is True  # back to the default (1 GiB) for the rest of the process
    assert not _is_mmapped(300 * MIB, libc)


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
