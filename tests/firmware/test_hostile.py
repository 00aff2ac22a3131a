"""Hostile downlinks: random and mutated frames never raise out of the MAC, never change the
session state, and are counted by reason (tests/firmware/mpy/hostile.py, MicroPython + CPython).
"""

from __future__ import annotations

import pytest

from tests.helpers import procs
from tests.helpers.firmware import HARNESS, run_cpython_json

COUNT = 3000
REASONS = {"short", "mtype", "dev_addr", "replay", "mic_fail"}


def _check(out: dict[str, object]) -> None:
    assert out["failures"] == []
    drops = out["drops"]
    assert isinstance(drops, dict)
    assert sum(drops.values()) == out["fed"] + out["class_c_drops"]  # type: ignore[operator]
    assert set(drops) >= REASONS  # every check of the decoder was exercised
    assert out["class_c_drops"] == 50
    assert out["signed"] == COUNT // 4


@pytest.mark.micropython
def test_hostile_downlinks_micropython(micropython: str) -> None:
    _check(procs.run_micropython_json(HARNESS / "hostile.py", args=[str(COUNT)], path=[HARNESS]))


def test_hostile_downlinks_cpython() -> None:
    _check(run_cpython_json(HARNESS / "hostile.py", args=[str(COUNT)]))
