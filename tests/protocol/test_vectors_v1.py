"""Today's catalogue still decodes what v1 and v2 firmware sends (issue 15 item 13).

protocol/vectors/payloads-v1.json and payloads-v2.json are the frozen sets, one per protocol
version: never regenerated, pinned here by their SHA-256. Their bytes run through every
implementation against the current catalogue: the CPython codec, the generated MicroPython
module on the unix port and the generated ChirpStack codec on node. A change to a key, a scale, a
range or a type of an existing message fails here; the way to make such a change is a new fPort
or message (protocol/catalogue/__init__.py), as bin_status's compact form on fPort 12 was (v2).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from protocol import codec
from protocol.codegen import vectors as vector_writer
from protocol.errors import ProtocolError
from tests.helpers import procs
from tests.protocol.payload_cases import FROZEN_PATHS, V1_PATH, v1_decode_cases, write_jsonl

HERE = Path(__file__).resolve().parent
JS_TARGET = procs.ROOT / "protocol" / "generated" / "chirpstack_codec.js"
SHA256 = {
    "payloads-v1.json": "fb01f4f1cd30d37fb2fdb3f8b3b58412f7182b8db92ecfb6be8d1d5583b95534",
    "payloads-v2.json": "e4747aba768d94961ca8170b2c851245948663a88c95474fb299eccc7aed03e8",
}


def _all_cases() -> list[dict[str, Any]]:
    return [case for path in FROZEN_PATHS for case in v1_decode_cases(path)]


def test_the_frozen_sets_are_frozen() -> None:
    for path in FROZEN_PATHS:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[path.name], (
            f"{path.name} changed: a frozen set never changes; bytes deployed nodes send stay"
        )
        assert path != vector_writer.PATH  # `python -m protocol.codegen.vectors` never writes it
        cases = v1_decode_cases(path)
        assert len(cases) >= 50 and {c["direction"] for c in cases} == {"up", "down"}
    assert {c["fport"] for c in v1_decode_cases(FROZEN_PATHS[1])} > {
        c["fport"] for c in v1_decode_cases(V1_PATH)
    }  # v2 adds the compact fPort


def _v1_failures(decode: Any) -> list[str]:
    failures = []
    for case in _all_cases():
        try:
            got = decode(case["fport"], bytes.fromhex(case["hex"]))
        except ProtocolError as exc:
            failures.append(f"fPort {case['fport']} {case['hex']}: refused ({exc})")
            continue
        if got != codec.Decoded(case["message"], case["fields"]):
            failures.append(f"fPort {case['fport']} {case['hex']}: {got}")
    return failures


def test_v1_bytes_decode_with_the_cpython_codec() -> None:
    assert _v1_failures(lambda fport, data: codec.decode(fport, data, None)) == []


def test_a_changed_scale_would_fail_the_v1_check() -> None:
    """The check can fail: a decoder that reads battery_percent at another scale is caught."""

    def rescaled(fport: int, data: bytes) -> codec.Decoded:
        got = codec.decode(fport, data, None)
        if "battery_percent" in got.fields:
            got.fields["battery_percent"] = got.fields["battery_percent"] * 2
        return got

    failures = _v1_failures(rescaled)
    assert failures and all("battery_percent" in f for f in failures)


@pytest.mark.micropython
def test_v1_bytes_decode_on_the_micropython_unix_port(micropython: str, tmp_path: Path) -> None:
    cases = _all_cases()
    path = write_jsonl(tmp_path / "v1.jsonl", cases)
    report = procs.run_micropython_json(HERE / "mp_payloads_harness.py", args=[str(path)])
    assert report["failures"] == [] and report["checked"] == len(cases)


@pytest.mark.node
def test_v1_bytes_decode_with_the_chirpstack_codec_on_node(node: str, tmp_path: Path) -> None:
    cases = _all_cases()
    path = write_jsonl(tmp_path / "v1.jsonl", cases)
    result = subprocess.run(
        [node, str(HERE / "js_payloads_harness.js"), str(JS_TARGET), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failures"] == [] and report["checked"] == len(cases) + 8
