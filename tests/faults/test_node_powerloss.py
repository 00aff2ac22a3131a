"""Power loss on the node with the full apps (issue 8): random cuts over thousands of simulated
frames never reuse a DevNonce or an FCnt (tests/faults/mp/app_powerloss.py, MicroPython unix port
and CPython). Extends the MAC's own exhaustive test (tests/firmware/test_powerloss.py) to the bin
and lamp apps as firmware/main.py wires them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.helpers import procs

CUTS = 500  # about 1,300 bin and 2,600 lamp frames on the air; the soak variant cuts 3,000 times
HARNESS = procs.ROOT / "tests" / "faults" / "mp" / "app_powerloss.py"
PATHS = [
    procs.ROOT / "tests" / "faults" / "mp",
    procs.ROOT / "tests" / "firmware_apps" / "mp",
    procs.ROOT / "tests" / "firmware" / "mpy",
]


def _micropython(kind: str, cuts: int, seed: int, *extra: str, heap: str = "8M") -> Any:
    # the heap holds the audit's record of every (DevAddr, FCnt) heard, not just the node
    return procs.run_micropython_json(
        HARNESS, args=[kind, str(cuts), str(seed), *extra], path=PATHS, heap=heap, timeout_s=1800
    )


def _cpython(kind: str, cuts: int, seed: int) -> Any:
    import json

    paths = [*PATHS, procs.FIRMWARE_LIB, procs.ROOT / "firmware"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths)}
    proc = subprocess.run(
        [sys.executable, str(HARNESS), kind, str(cuts), str(seed)],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check(out: dict[str, Any], cuts: int) -> None:
    assert out["violations"] == [] and out["violation_count"] == 0
    counts = out["counts"]
    assert counts["cuts"] == cuts
    assert counts["joins"] >= 1
    assert counts["data"] > cuts  # the node came back and kept talking after the cuts


@pytest.mark.micropython
@pytest.mark.parametrize("kind", ["bin", "lamp"])
def test_random_power_cuts_micropython(micropython: str, kind: str) -> None:
    out = _micropython(kind, CUTS, 11)
    _check(out, CUTS)


@pytest.mark.parametrize("kind", ["bin", "lamp"])
def test_random_power_cuts_cpython(kind: str) -> None:
    _check(_cpython(kind, CUTS, 12), CUTS)


@pytest.mark.micropython
def test_the_check_catches_a_mac_that_persists_nothing(micropython: str) -> None:
    out = _micropython("bin", 20, 14, "--broken")
    assert out["violation_count"] > 0
    assert any("DevNonce" in v for v in out["violations"])


@pytest.mark.soak
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("kind", ["bin", "lamp"])
def test_random_power_cuts_soak(micropython: str, kind: str) -> None:
    out = _micropython(kind, 3000, 13)
    _check(out, 3000)
    assert out["counts"]["data"] > 3000
