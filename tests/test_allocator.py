"""The C allocator's thresholds: set once per process on glibc, never when opted out."""

from __future__ import annotations

import platform

import pytest

from sycophancy.models import allocator


class FakeLibc:
    """Records mallopt calls and answers `result` (1: accepted, as glibc answers)."""

    def __init__(self, result: int = 1):
        self.calls: list[tuple[int, int]] = []
        self.result = result

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.result


@pytest.fixture
def libc(monkeypatch):
    fake = FakeLibc()
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda _name: fake)
    monkeypatch.setattr(allocator.platform, "system", lambda: "Linux")
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(allocator, "_done", [])
    monkeypatch.delenv(allocator.ENV, raising=False)
    return fake


def test_both_thresholds_are_set_once_per_process(libc):
    assert allocator.keep_freed_memory() and allocator.keep_freed_memory()
    assert libc.calls == [(-3, 32 * 1024 * 1024), (-1, 1 << 30)]  # mmap first, then trim


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_opting_out_leaves_the_allocator_alone(libc, monkeypatch, value):
    monkeypatch.setenv(allocator.ENV, value)
    assert not allocator.keep_freed_memory()
    assert libc.calls == []


def test_another_c_library_or_a_refusal_counts_as_not_set(libc, monkeypatch):
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    assert not allocator._set_thresholds() and libc.calls == []
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("glibc", "2.36"))
    libc.result = 0
    assert not allocator._set_thresholds()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_real_glibc_accepts_the_thresholds():
    assert allocator._set_thresholds()
