"""The generated OS2iot payload decoder (protocol/generated/os2iot_decoder.js) on node: every
uplink vector decodes to the same fields as protocol.codec, wrapped in the device's identity,
and every invalid payload answers with errors instead of throwing (OS2iot would drop it)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from protocol import codegen
from tests.protocol.payload_cases import harness_cases, write_jsonl

HERE = Path(__file__).resolve().parent
TARGET = codegen.ROOT / "protocol" / "generated" / "os2iot_decoder.js"


@pytest.mark.node
def test_uplink_vectors_decode_in_the_os2iot_decoder(node: str, tmp_path: Path) -> None:
    cases = harness_cases(fuzz=1500)
    path = write_jsonl(tmp_path / "cases.jsonl", cases)
    result = subprocess.run(
        [node, str(HERE / "js_os2iot_harness.js"), str(TARGET), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failures"] == []
    uplink_decodes = [c for c in cases if c["op"] == "decode" and c["direction"] == "up"]
    assert len(uplink_decodes) > 100
    assert report["checked"] == len(uplink_decodes) + 4


def test_the_os2iot_decoder_defines_decode_and_needs_no_modules() -> None:
    text = TARGET.read_text(encoding="utf-8")
    assert "function decode(payload, metadata)" in text
    assert "require(" not in text and "module.exports" not in text and "Buffer" not in text
    # OS2iot fetches lorawanSettings (with the AppKey) only for decoders that mention it
    assert "lorawanSettings" not in text
