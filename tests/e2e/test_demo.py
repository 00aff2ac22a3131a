"""`citypack demo --duration 20` runs headless (stdout a pipe), exits 0, uplinks processed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.procs import ROOT

pytestmark = pytest.mark.slow


def test_demo_runs_headless_for_twenty_seconds_and_the_gateway_processes_uplinks(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "demo"
    capture = tmp_path / "air.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "CITYPACK_DEBUG"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.cli",
            "demo",
            "--duration",
            "20",
            "--bins",
            "12",
            "--lamps",
            "10",
            "--workdir",
            str(workdir),
            "--capture",
            str(capture),
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    # plain lines, not a live screen: no cursor-control escapes on a pipe
    assert "\x1b[" not in result.stdout
    assert "gateway: running" in result.stdout
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/ ", result.stdout, re.M), result.stdout
    summary = json.loads((workdir / "demo-summary.json").read_text())
    assert summary["uplinks_processed"] > 0
    stats = summary["gateway_stats"]
    assert stats is not None
    assert summary["counters"]["uplinks_on_air"] >= summary["uplinks_processed"]
    # issue 20: the nodes are registered before the fleet starts, so none is "discovered"
    assert "gateway_event_device_discovered" not in summary["counters"]
    # the counters reconcile: air, network server, gateway
    rec = summary["reconciliation"]
    assert rec["air"]["sent"] == rec["air"]["heard"] + rec["air"]["lost"]
    net = rec["network"]
    assert net["frames"] == net["join_requests"] + net["data_uplinks"] + net["dropped"]
    gw = rec["gateway"]
    assert gw["published"] <= net["data_uplinks"]
    assert 0 <= gw["in_flight"] <= gw["published"]
    assert gw["processed"] == summary["uplinks_processed"]
    # commands are folded into counts per kind and state, not one line each
    assert "lamp_profile" in summary["commands_by_kind"]
    assert "command lamp_override →" not in result.stdout
    assert re.search(r"^\[sim [0-9:]+\] commands: ", result.stdout, re.M), result.stdout
    assert re.search(r"^\[sim [0-9:]+\] uplinks sent \d+ = heard \d+ \+ lost", result.stdout, re.M)
    # demo.log holds the story as printed (and the in-process parts' warnings)
    story = (workdir / "demo.log").read_text()
    assert "citypack demo: 12 bins and 10 lamps" in story and "commands: " in story
    # issue 21: the city's outcomes, in the summary file and printed at the end
    outcomes = summary["outcomes"]
    assert {"truck_km", "stops", "emptied_under_half", "overflow_bin_hours"} <= set(
        outcomes["waste"]
    )
    assert {"energy_kwh", "lit_ahead_fraction", "below_minimum_s"} <= set(outcomes["light"])
    assert outcomes["light"]["energy_kwh"] > 0  # it starts after dusk: lamps burn
    assert "outcomes, waste: " in result.stdout and "outcomes, light: " in result.stdout
    # the work directory keeps what --workdir promises
    for kept in ("city/inventory.toml", "city/inventory.secrets.toml", "gateway.db", "gateway.log"):
        assert (workdir / kept).exists(), kept
    assert (workdir / "city/inventory.secrets.toml").stat().st_mode & 0o077 == 0
    # the air capture: one JSON object per frame with the documented fields
    frames = [json.loads(line) for line in capture.read_text().splitlines() if line.strip()]
    assert frames
    assert {"time", "direction", "phy", "dev_eui", "frequency", "datr", "gateway"} <= set(frames[0])
    assert {f["direction"] for f in frames} == {"up", "down"}
    # ... and every frame on the air decodes with `citypack frame decode`
    phys = "\n".join(f["phy"] for f in frames[:200]) + "\n"
    decoded = subprocess.run(
        [sys.executable, "-m", "tools.cli", "frame", "decode", "--json", "-"],
        cwd=ROOT,
        input=phys,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert decoded.returncode == 0, decoded.stderr[-2000:]
    kinds = {json.loads(line)["mtype"] for line in decoded.stdout.splitlines() if line.strip()}
    assert {"join_request", "join_accept", "unconfirmed_data_up"} <= kinds
    # keys never reach the output
    secrets = (workdir / "city/inventory.secrets.toml").read_text()
    for line in secrets.splitlines():
        if "=" in line and not line.startswith("#"):
            key = line.split("=", 1)[1].strip().strip('"')
            assert key not in result.stdout and key not in result.stderr
