"""Firmware: replayed, forged and mis-addressed downlinks are rejected, counted, never raised
(issue 8), on the MicroPython unix port and on CPython (tests/security/mp/downlinks.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import procs
from tests.helpers.firmware import run_cpython_json

HARNESS = procs.ROOT / "tests" / "security" / "mp" / "downlinks.py"
N = 100


def _check(out: dict[str, Any]) -> None:
    assert out["failures"] == []
    assert out["fed"] == {"replay": 2 * N, "forged": 2 * N, "misaddressed": N}
    drops = out["drops"]
    # exact replays are refused as replays; an older FCnt's 16 bits read as the next 65,536 cycle
    # (L2 §4.3.1.5), whose MIC then fails: refused either way, never accepted
    assert drops["replay"] >= N
    assert drops["replay"] + drops["mic_fail"] == 4 * N
    assert drops["dev_addr"] == N
    assert sum(drops.values()) == 5 * N  # nothing else was dropped, nothing left uncounted


@pytest.mark.micropython
def test_rejected_and_counted_micropython(micropython: str) -> None:
    _check(procs.run_micropython_json(HARNESS, args=[str(N)], timeout_s=120))


def test_rejected_and_counted_cpython() -> None:
    _check(run_cpython_json(HARNESS, args=[str(N)]))
