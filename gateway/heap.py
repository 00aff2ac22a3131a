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
"""

from __future__ import annotations

import gc
import time

__all__ = ["EVERY_S", "MIN_DEVICES", "settle"]

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
    return time.perf_counter() - started
