"""`citypack sim`: a bounded run against the in-process emulator, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.procs import ROOT


def _citypack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_sim_runs_a_bounded_fleet_and_reports_its_counters(tmp_path: Path) -> None:
    result = _citypack(
        "sim", "--bins", "3", "--lamps", "2", "--duration", "4", "--speed", "100",
        "--report-interval", "120", "--workdir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["counters"]["nodes_joined"] == 5
    assert summary["counters"]["uplinks_on_air"] >= 10  # five joins and their first reports
    assert summary["simulated_s"] > 100 * summary["wall_s"] * 0.5
    assert (tmp_path / "inventory.toml").exists() and (tmp_path / "inventory.secrets.toml").exists()


def test_sim_and_demo_refuse_bad_arguments_in_one_line() -> None:
    for args in (
        ("sim", "--udp", "no-port"),
        ("sim", "--speed", "0"),
        ("sim", "--bins", "0", "--lamps", "0"),
        ("sim", "--udp", "127.0.0.1:1700", "--capture", "x.jsonl"),
        ("demo", "--speed", "-1"),
        ("demo", "--bins", "0", "--lamps", "0"),
        ("demo", "--broker", "http://example.org"),
    ):
        result = _citypack(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and errors[0].startswith("citypack"), result.stderr
