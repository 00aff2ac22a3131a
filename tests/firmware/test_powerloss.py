"""Power loss and deep sleep at every step of a join and of uplinks never reuse a DevNonce or
an FCnt (L2 1.0.4 §6.2.5, §4.3.1.5; the RadioLib#1480 / #1031 failure modes).

The property runs under the MicroPython unix port (tests/firmware/mpy/powerloss.py): exhaustive
over every step of one node life (power loss and deep-sleep resets), and random multi-cut
schedules. A deliberately broken MAC (its FCnt never reaches NVS) shows the check can fail.
"""

from __future__ import annotations

import pytest

from tests.helpers import procs
from tests.helpers.firmware import HARNESS, run_cpython_json


def _run(*args: str) -> dict[str, object]:
    result = procs.run_micropython_json(
        HARNESS / "powerloss.py", args=list(args), path=[HARNESS], timeout_s=120
    )
    assert isinstance(result, dict)
    return result


@pytest.mark.micropython
def test_every_step_exhaustive(micropython: str) -> None:
    out = _run("exhaustive")
    steps = out["steps"]
    assert isinstance(steps, int) and steps > 30  # a join and twelve uplinks
    assert out["runs"] == 2 * steps  # every step, for power loss and for deep sleep
    assert out["violations"] == []
    assert out["unfinished"] == 0  # after the cut the node always comes back and finishes


@pytest.mark.micropython
def test_random_multi_cut_schedules(micropython: str) -> None:
    out = _run("random")
    assert out["runs"] == 150
    assert out["violations"] == []
    assert out["unfinished"] == 0


@pytest.mark.micropython
def test_the_check_catches_an_fcnt_that_never_reaches_nvs(micropython: str) -> None:
    out = _run("exhaustive", "--broken")
    assert isinstance(out["violation_count"], int) and out["violation_count"] > 0
    assert any("sent twice" in v for v in out["violations"])  # type: ignore[attr-defined]


def test_every_step_exhaustive_cpython() -> None:
    out = run_cpython_json(HARNESS / "powerloss.py", args=["exhaustive"])
    assert out["violations"] == [] and out["unfinished"] == 0 and out["runs"] > 60
