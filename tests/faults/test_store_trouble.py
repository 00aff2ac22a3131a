"""Store trouble (issue 8): another process takes the gateway's SQLite file with ``BEGIN
EXCLUSIVE`` while uplinks keep coming. The gateway reports unready (``/readyz`` 503,
``"store": false``), keeps its memory bounded (nothing is acknowledged, so the broker's in-flight
window bounds what it holds), says in its log that commits fail, and once the lock is released
recovers: ready again, every uplink stored exactly once.

A full disk is tests/faults/test_store_full.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import procs
from tests.helpers.faults import (
    gateway_config,
    publish_uplinks,
    readyz,
    rss_kb,
    stored_dedup_ids,
    uplink_stream,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]

DEVICES = [f"a840410001a{i:05x}" for i in range(10)]
LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
print("released", flush=True)
"""


async def _locked_run(tmp_path: Path, before: int, during: int, locked_s: float) -> None:
    if procs.find_program("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    (tmp_path / "broker").mkdir()
    broker = procs.start_mosquitto(directory=tmp_path / "broker")
    app = str(uuid.uuid4())
    gw = gateway_config(
        tmp_path,
        broker.url,
        application_id=app,
        base_topic=f"cp{uuid.uuid4().hex[:8]}",
        maintenance_s=2.0,  # the maintenance tick also retries a failed commit
    )
    db = tmp_path / "gateway.db"
    stream = uplink_stream(app, DEVICES, before + during)
    locker: subprocess.Popen[str] | None = None
    try:
        gw.start()
        await asyncio.to_thread(wait_until, lambda: readyz(gw.url)[0] == 200, "ready")
        await publish_uplinks(broker, stream[:before])
        await asyncio.to_thread(wait_until, lambda: len(stored_dedup_ids(db)) == before, "before")
        assert gw.process is not None
        rss_before = rss_kb(gw.process.pid)

        locker = subprocess.Popen(  # noqa: ASYNC220 - a plain child that holds the lock
            [sys.executable, "-c", LOCKER, str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert locker.stdout is not None and locker.stdin is not None
        assert locker.stdout.readline().strip() == "locked"
        publisher = asyncio.create_task(publish_uplinks(broker, stream[before:]))
        _, body = await asyncio.to_thread(
            wait_until,
            lambda: (r := readyz(gw.url))[0] == 503 and r,
            "readyz reporting the store",
            60,
        )
        assert body == {"ready": False, "mqtt": True, "store": False}
        await asyncio.sleep(locked_s)
        await publisher  # the broker took every one; the gateway holds its in-flight window
        rss_locked = rss_kb(gw.process.pid)
        assert readyz(gw.url)[0] == 503
        assert gw.process.poll() is None  # still up
        assert len(stored_dedup_ids(db)) == before  # nothing got through the lock

        locker.stdin.write("\n")
        locker.stdin.flush()
        assert locker.stdout.readline().strip() == "released"
        await asyncio.to_thread(wait_until, lambda: readyz(gw.url)[0] == 200, "ready again", 60)
        await asyncio.to_thread(
            wait_until, lambda: len(stored_dedup_ids(db)) >= before + during, "every uplink", 90
        )
        assert gw.terminate() == 0
        stored = stored_dedup_ids(db)
        assert [d for d, n in Counter(stored).items() if n > 1] == []
        assert set(stored) == {dedup for _, _, dedup in stream}
        # bounded: what it holds while the store is away is the broker's in-flight window
        assert rss_locked - rss_before < 30 * 1024, (rss_before, rss_locked)
        failures = [line for line in gw.log_lines() if line.get("msg", "").startswith("store")]
        assert any(
            line["level"] == "error" and "locked" in str(line.get("error")) for line in failures
        ), failures
    finally:
        if locker is not None:
            if locker.poll() is None:
                locker.kill()
            locker.wait(timeout=10)
            for pipe in (locker.stdin, locker.stdout):
                if pipe is not None:
                    pipe.close()
        gw.kill()
        broker.stop()


async def test_store_locked_by_another_process(tmp_path: Path) -> None:
    await _locked_run(tmp_path, before=100, during=1000, locked_s=1.0)


@pytest.mark.soak
@pytest.mark.timeout(1200)
async def test_store_locked_for_a_while_soak(tmp_path: Path) -> None:
    await _locked_run(tmp_path, before=1000, during=50_000, locked_s=60.0)
