"""Storage tiers: dict, file (atomic JSON) and the ESP32 NVS / RTC-memory stores against
stand-ins with esp32.NVS's and machine.RTC().memory()'s documented behaviour
(tests/firmware/mpy/storage_check.py), under MicroPython and CPython.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import procs
from tests.helpers.firmware import HARNESS, run_cpython_json


@pytest.mark.micropython
def test_storage_tiers_micropython(micropython: str, tmp_path: Path) -> None:
    out = procs.run_micropython_json(
        HARNESS / "storage_check.py", args=[str(tmp_path)], path=[HARNESS]
    )
    assert out == {"failures": []}


def test_storage_tiers_cpython(tmp_path: Path) -> None:
    assert run_cpython_json(HARNESS / "storage_check.py", args=[str(tmp_path)]) == {"failures": []}
