"""gateway/heap.py: a large fleet's objects are kept out of full GC passes, and garbage cycles
made before a settle are still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway import heap


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_a_small_fleet_is_left_alone() -> None:
    gc.unfreeze()
    assert heap.settle(heap.MIN_DEVICES - 1) is None
    assert gc.get_freeze_count() == 0


def test_a_large_fleet_is_frozen_after_one_full_pass() -> None:
    gc.unfreeze()
    live = [Node() for _ in range(1000)]
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle nobody holds: only the collector frees it
    dead = weakref.ref(a)
    del a, b
    took = heap.settle(heap.MIN_DEVICES)
    assert took is not None and took >= 0
    assert dead() is None  # collected before the freeze, not kept forever
    assert gc.get_freeze_count() >= len(live)
    frozen = gc.get_freeze_count()
    assert all(not any(n is x for x in gc.get_objects(2)) for n in live[:3])  # not walked
    # a cycle frozen while it was live, dropped after: the next settle unfreezes first, so its
    # full pass frees it (without the unfreeze it would stay until the process ends)
    c, d = Node(), Node()
    c.other, d.other = d, c
    heap.settle(heap.MIN_DEVICES)
    dead = weakref.ref(c)
    del c, d
    gc.collect()
    assert dead() is not None  # frozen: an ordinary collection does not see it
    heap.settle(heap.MIN_DEVICES)
    assert dead() is None
    assert gc.get_freeze_count() >= frozen - 10


def test_a_settle_trims_the_c_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(heap, "_TRIM", lambda pad: calls.append(pad) or 1)
    heap.settle(heap.MIN_DEVICES)
    assert calls == [0]  # malloc_trim(0): every arena, no padding kept
    heap.settle(heap.MIN_DEVICES - 1)  # a small fleet: nothing at all
    assert calls == [0]


def test_trim_is_glibcs_malloc_trim_here_and_a_no_op_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    try:
        on_glibc = os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (AttributeError, ValueError, OSError):
        on_glibc = False
    if on_glibc:
        assert heap._glibc_trim() is not None
        heap.trim()  # returns whether pages went back; either is fine
    # another C library (musl has no such confstr name, macOS neither, Windows no confstr)
    for answer in (ValueError("unrecognized configuration name"), None, "musl 1.2"):

        def confstr(name: str, answer: object = answer) -> object:
            if isinstance(answer, Exception):
                raise answer
            return answer

        monkeypatch.setattr(os, "confstr", confstr)
        assert heap._glibc_trim() is None
    monkeypatch.delattr(os, "confstr")
    assert heap._glibc_trim() is None
    monkeypatch.setattr(heap, "_TRIM", None)
    assert heap.trim() is False
    assert heap.settle(heap.MIN_DEVICES) is not None  # settles all the same
