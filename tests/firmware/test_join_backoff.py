"""The Join-Request budget of LoRaWAN L2 1.0.4 §7 in virtual time (tests/firmware/mpy/
join_backoff.py): every window under its budget and used to within a frame, and the budget kept
through deep sleep (RTC store) and power loss (NVS store). Run on the MicroPython unix port and
under CPython.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import procs
from tests.helpers.firmware import HARNESS, run_cpython_json

CHECKS = ["budget_two_days", "deep_sleep_keeps_budget", "power_cut_keeps_budget"]


@pytest.fixture(scope="module")
def micropython_results(micropython: str) -> dict[str, Any]:
    result = procs.run_micropython(HARNESS / "join_backoff.py", path=[HARNESS], timeout_s=120)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, result.stderr
    out: dict[str, Any] = json.loads(lines[-1])
    return out


@pytest.mark.micropython
@pytest.mark.parametrize("check", CHECKS)
def test_join_backoff_micropython(micropython_results: dict[str, Any], check: str) -> None:
    assert micropython_results[check] == []


def test_join_backoff_cpython() -> None:
    assert run_cpython_json(HARNESS / "join_backoff.py") == {check: [] for check in CHECKS}
