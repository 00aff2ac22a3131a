"""The apps, drivers, pin seams, boards and main.py type-check against micropython-esp32-stubs
(pyright, firmware/pyrightconfig.json), so wrong `machine`/`time` calls fail here, not on a pole."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import procs

FIRMWARE = procs.ROOT / "firmware"
FILES = [
    *sorted((FIRMWARE / "apps").glob("*.py")),
    *sorted((FIRMWARE / "lib" / "drivers").glob("*.py")),
    *sorted((FIRMWARE / "boards").glob("*.py")),
    FIRMWARE / "lib" / "hal" / "pins.py",
    FIRMWARE / "lib" / "hal" / "sim_pins.py",
    FIRMWARE / "main.py",
    FIRMWARE / "boot.py",
]


def test_apps_and_drivers_type_check_against_esp32_stubs() -> None:
    binary = procs.find_program("pyright")
    if binary is None:
        pytest.skip("pyright is not installed (pip install pyright)")
    result = subprocess.run(
        [binary, "-p", str(FIRMWARE / "pyrightconfig.json"), *map(str, FILES)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=procs.ROOT,
        check=False,
    )
    if "node" in result.stderr.lower() and "error" in result.stderr.lower() and not result.stdout:
        pytest.skip(f"pyright could not start its node runtime: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stdout[-4000:]
    assert "0 errors" in result.stdout
