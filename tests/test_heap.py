"""Freed memory handed back to the system (coldvault.engine.heap): glibc's malloc_trim where it exists."""

from __future__ import annotations

import platform

import pytest

from coldvault.engine import heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_has_the_call() -> None:
    assert heap._malloc_trim() is not None
    heap.give_back_freed_memory()


def test_without_the_call_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_malloc_trim", lambda: None)
    heap.give_back_freed_memory()
