"""PostgreSQL ends every connection of a running gateway, again and again (as a database
restart or a failover does): the mission's "a store that vanishes", on the shared store.

By construction, not by timing: each round the gateway is frozen (SIGSTOP), ChirpStack publishes
the round's uplinks into the broker, and every backend of the gateway's database is terminated
(``pg_terminate_backend``: its pool, the connections that hold its job leaderships with advisory
locks, and its LISTEN connection); only then does the gateway go on (SIGCONT). So every round's
uplinks meet connections that are gone, whatever the machine's load.

What must hold: every uplink stored exactly once; the gateway ready again after each round; the
once-per-fleet jobs taken again (a command posted at the end is handed to ChirpStack's queue,
once, by the ``dispatch`` job's new holder); the log says what happened.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import postgres, procs
from tests.helpers.faults import (
    chirpstack_client,
    gateway_config,
    readyz,
    uplink_stream,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.timeout(240)]

DEVICES = [f"a840410001d{i:05x}" for i in range(10)]
ROUNDS = 3
PER_ROUND = 200


def _sql(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, args)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _terminate(url: str) -> int:
    """End every other session on the gateway's database; how many there were."""
    database = url.rsplit("/", 1)[1]
    rows = _sql(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        database,
    )
    return sum(1 for (ended,) in rows if ended)


def _leading(gw: Any) -> set[str]:
    return {str(line.get("job")) for line in gw.log_lines() if line.get("msg") == "leading"}


def _listening(url: str) -> bool:
    rows = _sql(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query LIKE 'LISTEN %%'",
        url.rsplit("/", 1)[1],
    )
    return bool(rows and rows[0][0])


def _stored(url: str) -> list[str]:
    return [str(row[0]) for row in _sql(url, "SELECT deduplication_id FROM uplinks")]


def _api(url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


async def test_every_connection_ended_mid_stream_loses_nothing(tmp_path: Path) -> None:
    if procs.find_program("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    (tmp_path / "broker").mkdir()
    broker = procs.start_mosquitto(directory=tmp_path / "broker")
    app = str(uuid.uuid4())
    stream = uplink_stream(app, DEVICES, ROUNDS * PER_ROUND)
    downlinks: list[dict[str, Any]] = []
    with postgres.database() as store:
        gw = gateway_config(
            tmp_path,
            broker.url,
            application_id=app,
            base_topic=f"cp{uuid.uuid4().hex[:8]}",
            maintenance_s=2.0,
            store_url=store,
        )
        try:
            gw.start()
            assert gw.process is not None
            await asyncio.to_thread(wait_until, lambda: readyz(gw.url)[0] == 200, "ready", 60)
            async with _api(gw.url, gw.token) as api:
                for dev in DEVICES:
                    response = await api.put(f"/api/v1/devices/{dev}", json={"kind": "bin"})
                    assert response.is_success, response.text
            async with chirpstack_client(broker, app, downlinks) as chirpstack:
                # the first round meets every kind of session: both jobs led, the feed listening
                await asyncio.to_thread(
                    wait_until,
                    lambda: _leading(gw) == {"dispatch", "maintenance"} and _listening(store),
                    "the jobs led and the change feed listening",
                    60,
                )
                ended: list[int] = []
                for round_ in range(ROUNDS):
                    part = stream[round_ * PER_ROUND : (round_ + 1) * PER_ROUND]
                    gw.freeze()
                    for topic, payload, _ in part:
                        await chirpstack.publish(topic, payload, qos=1)
                    ended.append(await asyncio.to_thread(_terminate, store))
                    gw.process.send_signal(signal.SIGCONT)
                    done = (round_ + 1) * PER_ROUND
                    await asyncio.to_thread(
                        wait_until, lambda d=done: len(_stored(store)) >= d, "the round stored", 90
                    )
                    await asyncio.to_thread(
                        wait_until, lambda: readyz(gw.url)[0] == 200, "ready", 60
                    )
                # every round ended sessions (the pool's at least; the leaderships and the LISTEN
                # connection when they were back from the round before: the log below says
                # they were lost)
                assert all(n >= 1 for n in ended), ended

                async with _api(gw.url, gw.token) as api:
                    body = {"message": "bin_config", "fields": {"config_version": 9}}
                    answer = await api.post(f"/api/v1/devices/{DEVICES[0]}/commands", json=body)
                    assert answer.status_code == 202, answer.text
                    command_id = answer.json()["id"]
                await asyncio.to_thread(
                    wait_until, lambda: len(downlinks) >= 1, "the command at ChirpStack", 60
                )
                await asyncio.sleep(1.0)  # a second hand-over would show now
            assert gw.terminate() == 0
            stored = _stored(store)
            assert [d for d, n in Counter(stored).items() if n > 1] == []
            assert set(stored) == {dedup for _, _, dedup in stream}
            assert [d.get("id") for d in downlinks] == [command_id], downlinks
            said = {line.get("msg") for line in gw.log_lines()}
            assert {"leadership connection lost", "change feed connection lost"} <= said, said
        finally:
            gw.kill()
            broker.stop()
