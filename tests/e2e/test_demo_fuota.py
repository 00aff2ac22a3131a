"""`citypack demo --fuota`: one street's lamps take an update while the city runs; the summary's
``fuota`` object says so and the air capture holds the multicast frames, each of which verifies
and decrypts with the group's session keys derived here independently (TS004 §3.1.2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.multicast import derive_group_keys
from protocol.fuota import fragmentation
from protocol.lorawan.data import DataFrame
from tests.helpers.procs import ROOT

pytestmark = pytest.mark.slow


def test_demo_fuota_updates_a_street_and_captures_the_multicast_frames(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    capture = tmp_path / "air.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "CITYPACK_DEBUG"}
    result = subprocess.run(
        [
            sys.executable, "-m", "tools.cli", "demo", "--fuota", "--bins", "2", "--lamps", "8",
            "--workdir", str(workdir), "--capture", str(capture),
        ],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    summary = json.loads((workdir / "demo-summary.json").read_text())
    fuota = summary["fuota"]
    assert fuota["state"] == "done", fuota
    assert fuota["devices"] >= 1 and fuota["applied"] == fuota["devices"], fuota
    assert fuota["failed"] == 0 and fuota["versions"] == ["0.2.0"]
    assert fuota["fragments_sent"] > 0 and fuota["airtime_s"] > 0 and fuota["seconds"] > 0
    secret = bytes.fromhex((workdir / "multicast-key").read_text().strip())
    keys = derive_group_keys(secret, f"citypack:street:{fuota['street']}")
    frames = []
    for line in capture.read_text().splitlines():
        entry = json.loads(line)
        phy = bytes.fromhex(entry["phy"])
        if entry["direction"] != "down" or phy[0] >> 5 not in (3, 5):  # data downlinks only
            continue
        frame = DataFrame.from_bytes(phy)
        if frame.dev_addr.value == keys.mc_addr:
            frames.append(frame)
    fragments = set()
    for frame in frames:
        frame.verify_mic(keys.mc_nwk_s_key)  # MICError fails the test
        assert frame.fport == fragmentation.FPORT
        for command in fragmentation.decode_downlink(frame.decrypt(app_s_key=keys.mc_app_s_key)):
            if isinstance(command, fragmentation.DataFragment):
                fragments.add(command.n)
    assert len(fragments) == fuota["fragments_sent"]  # every fragment is on the air, once
