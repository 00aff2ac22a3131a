"""The firmware FUOTA packages on golden vectors and hostile input, on the unix port and CPython.

Harness: tests/firmware/mpy/fuota_units.py. Ed25519 on RFC 8032 §7.1 (protocol/vectors/
ed25519.json), TS004 keys and the TS005 FEC decoder on protocol/vectors/fuota.json (ChirpStack's
applayer tests), then hostile input that must never raise out of the agent or the MAC.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import procs
from tests.helpers.firmware import HARNESS, run_cpython_json

VECTORS = procs.ROOT / "protocol" / "vectors"
MUST = ("ed25519", "ed25519_tampered", "sha512", "mc_session_keys", "mc_root_key", "fec_decode",
        "truncated", "random", "bad_fragment", "no_matrix_memory", "mc_replay", "mc_forged",
        "mc_bitflip", "setup_too_big", "setup_matrix", "mc_persist", "resume", "clocksync",
        "class_a_session")  # fmt: skip


def _check(result: dict[str, object]) -> None:
    assert result["failures"] == []
    checked = result["checked"]
    assert isinstance(checked, dict)
    for kind in MUST:
        assert checked.get(kind, 0) > 0, kind
    assert checked["ed25519"] == 3 and checked["random"] == 9000


@pytest.mark.micropython
def test_fuota_units_under_micropython(micropython: str, tmp_path: Path) -> None:
    _check(
        procs.run_micropython_json(
            HARNESS / "fuota_units.py",
            args=[str(VECTORS), str(tmp_path)],
            path=[HARNESS],
            timeout_s=600,
        )
    )


def test_fuota_units_under_cpython(tmp_path: Path) -> None:
    _check(run_cpython_json(HARNESS / "fuota_units.py", args=[str(VECTORS), str(tmp_path)]))
