"""The firmware's decoders of outside bytes under hostile input (issue 8): the generated payload
decoder (``citypack_payloads.decode``) and the MAC's downlink path, on the MicroPython unix port
and on CPython (the simulator runs the same code), through tests/fuzz/mp/firmware_fuzz.py.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.helpers import procs
from tests.helpers.firmware import run_cpython_json

HARNESS = procs.ROOT / "tests" / "fuzz" / "mp" / "firmware_fuzz.py"
VECTORS = procs.ROOT / "protocol" / "vectors" / "payloads.json"
COUNT = int(os.environ.get("CITYPACK_FUZZ_EXAMPLES", "120")) * 25


def _check(out: dict[str, Any]) -> None:
    assert out["failures"] == [] and out["failure_count"] == 0
    assert out["decoded"] > 0 and out["refused"] > 0  # both sides of the decoder were reached
    assert out["mac_fed"] >= COUNT * 0.95  # mutations equal to the valid frame are skipped
    assert set(out["drops"]) >= {"short", "mic_fail", "dev_addr"}
    assert out["signed"] == COUNT // 2  # every correctly signed downlink reached the app
    assert 0 < out["app_decoded"] < out["signed"]


@pytest.mark.micropython
def test_firmware_downlink_path_micropython(micropython: str) -> None:
    out = procs.run_micropython_json(
        HARNESS, args=[str(VECTORS), str(COUNT), "8"], heap="2m", timeout_s=240
    )
    _check(out)
    assert out["heap_growth"] < 4096  # nothing fed is kept


def test_firmware_downlink_path_cpython() -> None:
    out = run_cpython_json(HARNESS, args=[str(VECTORS), str(COUNT), "9"], timeout_s=240)
    _check(out)
