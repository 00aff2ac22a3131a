"""Run firmware harness scripts (tests/firmware/mpy/) under CPython, like procs.run_micropython.

The firmware must run unmodified under CPython too (the fleet simulator); these helpers run the
same harness in a CPython subprocess with firmware/lib importable, so test processes never put
the firmware's top-level packages (``hal``, ``lorawan``) on pytest's own ``sys.path``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers.procs import FIRMWARE_LIB, ROOT

HARNESS = ROOT / "tests" / "firmware" / "mpy"


def run_cpython_json(
    script: str | Path, *, args: list[str] | None = None, timeout_s: float = 120.0
) -> Any:
    """Run a harness under this CPython; return its last stdout line as JSON, fail loudly."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FIRMWARE_LIB), str(HARNESS)])}
    result = subprocess.run(
        [sys.executable, str(script), *(args or [])],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"python {script} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])
