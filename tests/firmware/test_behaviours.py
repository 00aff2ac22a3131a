"""MAC behaviours in virtual time on the MicroPython unix port (tests/firmware/mpy/behaviours.py):
ADR back-off, confirmed retransmission, US915 sub-band and ChMask, EU868 duty cycle, JoinNonce
replay and DevNonce, ABP FCnt across deep sleep and power loss. Also run under CPython.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import procs
from tests.helpers.firmware import HARNESS, run_cpython_json

CHECKS = [
    "adr_backoff",
    "confirmed_retransmission",
    "us915_sub_band_and_chmask",
    "duty_cycle",
    "channel_free_while_the_clock_ticks",
    "class_c_through_duty_cycle",
    "class_c_before_activation",
    "join_nonce_replay",
    "abp_reboots",
    "fopts_whole_answers",
    "fopts_dev_status_48",
    "max_payload",
]


def _run_micropython() -> dict[str, Any]:
    result = procs.run_micropython(HARNESS / "behaviours.py", path=[HARNESS], timeout_s=120)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, result.stderr
    out: dict[str, Any] = json.loads(lines[-1])
    return out


@pytest.fixture(scope="module")
def micropython_results(micropython: str) -> dict[str, Any]:
    return _run_micropython()


@pytest.mark.micropython
@pytest.mark.parametrize("check", CHECKS)
def test_behaviour_micropython(micropython_results: dict[str, Any], check: str) -> None:
    assert micropython_results[check] == []


def test_behaviours_cpython() -> None:
    out = run_cpython_json(HARNESS / "behaviours.py")
    assert out == {check: [] for check in CHECKS}
