"""The firmware MAC's crypto and frames on the golden vectors in protocol/vectors/lorawan.json.

The harness tests/firmware/mpy/vectors.py runs under the real MicroPython unix port and, because
the firmware also runs in the CPython fleet simulator, under CPython with the cryptolib shim.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import procs
from tests.helpers.firmware import HARNESS, run_cpython_json

VECTORS = procs.ROOT / "protocol" / "vectors" / "lorawan.json"
KINDS = ("cmac", "join_request", "join_accept", "session_keys", "data_build", "data_parse", "fcnt")


def _expected_counts() -> dict[str, int]:
    vec = json.loads(VECTORS.read_text())
    return {
        "cmac": len(vec["cmac"]),
        "join_request": len(vec["join_request"]),
        "join_accept": 2 * len(vec["join_accept"]),  # the vector and a tampered copy
        "session_keys": len(vec["session_keys"]),
        "data_build": len(vec["data"]),
        "data_parse": len(vec["data"]),
        "data_replay": len(vec["data"]),
        "fcnt": len(vec["fcnt"]),
    }


@pytest.mark.micropython
def test_vectors_under_micropython(micropython: str) -> None:
    result = procs.run_micropython_json(HARNESS / "vectors.py", args=[str(VECTORS)], path=[HARNESS])
    assert result["failures"] == []
    assert result["checked"] == _expected_counts()
    assert all(result["checked"][k] > 0 for k in KINDS)


def test_vectors_under_cpython() -> None:
    result = run_cpython_json(HARNESS / "vectors.py", args=[str(VECTORS)])
    assert result["failures"] == []
    assert result["checked"] == _expected_counts()
