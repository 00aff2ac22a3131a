"""The database file deleted under a running gateway (issue 14, hole 3).

Before: SQLite kept writing into the unlinked file, ``/readyz`` stayed 200 and 1,000 uplinks were
acknowledged to the broker and lost. Now the store compares the file at its path with the one it
has open before and after each commit (gateway/store/sqlite.py): the gateway reports unready,
acknowledges nothing that went into the dead file, reopens (a new database at the same path),
writes its registry and active commands into it again, and stores what the broker redelivers.

By construction: the first half of the stream is stored in full before the files are deleted,
and the second half is published only after, so every uplink of the second half must end up in
the new file, once, and none of the first half may appear there.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.helpers import procs
from tests.helpers.faults import (
    gateway_config,
    publish_uplinks,
    readyz,
    stored_dedup_ids,
    uplink_stream,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]

DEVICES = [f"a840410001b{i:05x}" for i in range(10)]


def _stored(db: Path) -> list[str]:
    try:
        return stored_dedup_ids(db)
    except sqlite3.Error:
        return []  # not there yet


def _registered(db: Path) -> set[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {row[0] for row in con.execute("SELECT dev_eui FROM devices WHERE kind = 'bin'")}
    finally:
        con.close()


async def test_database_deleted_mid_stream(tmp_path: Path) -> None:
    if procs.find_program("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    (tmp_path / "broker").mkdir()
    broker = procs.start_mosquitto(directory=tmp_path / "broker")
    app = str(uuid.uuid4())
    gw = gateway_config(
        tmp_path, broker.url, application_id=app, base_topic=f"cp{uuid.uuid4().hex[:8]}"
    )
    db = tmp_path / "gateway.db"
    half = 500
    stream = uplink_stream(app, DEVICES, 2 * half)
    try:
        gw.start()
        await asyncio.to_thread(wait_until, lambda: readyz(gw.url)[0] == 200, "ready")
        async with httpx.AsyncClient(
            base_url=gw.url, headers={"Authorization": f"Bearer {gw.token}"}, timeout=20
        ) as api:
            for dev in DEVICES:
                answer = await api.put(f"/api/v1/devices/{dev}", json={"kind": "bin"})
                assert answer.status_code == 200
        await publish_uplinks(broker, stream[:half])
        await asyncio.to_thread(wait_until, lambda: len(_stored(db)) == half, "the first half")
        first = set(_stored(db))

        for name in ("gateway.db", "gateway.db-wal", "gateway.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        status, body = readyz(gw.url)
        assert (status, body["store"]) == (503, False)  # noticed before anything is lost

        await publish_uplinks(broker, stream[half:])
        await asyncio.to_thread(
            wait_until, lambda: len(_stored(db)) >= half, "the second half in a new file", 90
        )
        await asyncio.to_thread(wait_until, lambda: readyz(gw.url)[0] == 200, "ready again")
        assert gw.terminate() == 0
        second = _stored(db)
        assert [d for d, n in Counter(second).items() if n > 1] == []  # none twice
        assert set(second) == {dedup for _, _, dedup in stream[half:]}  # none lost
        assert first | set(second) == {dedup for _, _, dedup in stream}  # stored == published
        assert _registered(db) == set(DEVICES)  # the registry was written into the new file
        messages = [line.get("msg") for line in gw.log_lines()]
        assert "store reopened; devices and active commands written again" in messages
        assert any(
            line.get("msg") == "store commit failed; will retry" and "gone" in line["error"]
            for line in gw.log_lines()
        )
    finally:
        gw.kill()
        broker.stop()
