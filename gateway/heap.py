"""The fleet's objects kept out of the garbage collector's full passes.

Why: CPython's cyclic collector walks every tracked object in a full (generation 2) pass. At
100,000 devices that is the registry itself, each ``Device`` with its ~40 slots, and a pass took
60-300 ms on the event loop (tools/bench/gateway_throughput.py's latency run on a 2-core machine),
which is what the p99 receive-to-commit latency was made of (issue 17). The devices live as long
as the process, so they are moved to the permanent generation after they are loaded
(``gc.freeze``, which the CPython documentation names for this: objects that live until the end
are kept out of collections). Full passes then walk only what was made since.

What is frozen is still freed by reference counting when dropped; only garbage *cycles* among
frozen objects would wait. So the heap is settled again (unfreeze, one full pass, freeze) once
an hour (``EVERY_S``) from the maintenance task (``gateway/service.py``), which bounds that wait
to an hour and costs one pass an hour instead of one every few seconds under load.

Below ``MIN_DEVICES`` a full pass is short and nothing is done (the test suite opens hundreds of
small gateways in one process).

A settle also hands the C allocator's free pages back to the system (:func:`trim`). Objects of
more than 512 bytes (a twin's JSON, a batch's rows, SQLite's pages) come from the C library's
``malloc``, not from CPython's small-object allocator. glibc returns free memory to the system
only from the top of its heap, and only past a threshold; free space below a block still in use
stays in RSS (issue 17 measured 4-11 MB of it at 100,000 devices after every one reported,
tools/bench/gateway_throughput_memory.py). ``malloc_trim(0)``, glibc's public call for this,
releases every whole free page of every arena; elsewhere (musl, macOS) :func:`trim` does nothing.
"""

from __future__ import annotations

import ctypes
import gc
import os
import time
from collections.abc import Callable

__all__ = ["EVERY_S", "MIN_DEVICES", "settle", "trim"]

MIN_DEVICES = 10_000
EVERY_S = 3600.0  # the maintenance task settles again this often


def settle(devices: int) -> float | None:
    """Collect once and freeze what survives, for a fleet of ``devices``; the seconds the pass
    took, or None when the fleet is too small to need it."""
    if devices < MIN_DEVICES:
        return None
    started = time.perf_counter()
    gc.unfreeze()  # what an earlier settle froze is looked at again
    gc.collect()
    gc.freeze()
    trim()  # what the pass freed, and the C heap's free pages, back to the system
    return time.perf_counter() - started


def _glibc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library is not glibc."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"; ValueError elsewhere
    except (AttributeError, ValueError, OSError):  # AttributeError: no confstr (Windows)
        return None
    if not version or not version.startswith("glibc"):
        return None
    try:
        function = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_TRIM = _glibc_trim()


def trim() -> bool:
    """Return the C allocator's free pages to the system (glibc ``malloc_trim(0)``); whether
    any were. Safe anywhere: where the C library is not glibc it does nothing (False)."""
    return _TRIM is not None and bool(_TRIM(0))
