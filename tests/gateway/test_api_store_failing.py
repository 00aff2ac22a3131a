"""API changes against a store that cannot commit (tests/faults/test_store_full.py is the same
from the outside, with a full disk). Before, ``POST /devices/{eui}/commands`` answered 202 for a
command whose commit had failed: held in memory only, lost if the gateway stopped before the
disk had room again, and sent to the node later behind no acknowledgement at all.

Two cases, each made true inside the real SQLite commit (the store's ``_write`` raises what
SQLite raises on a full disk, ``database or disk is full``, before its transaction begins):

- the store fails *while* committing the change (the last commit before it was good): 503
  ``store_unavailable`` whose message says the change is not committed but kept; it is
  committed once the store has room, once;
- the store is already failing: 503 ``store_unavailable`` before anything is made, and nothing
  of the change is committed later.

And OS2iot's HTTP push against a failing store: a push has no broker to hold it (and OS2iot
never pushes one again), so the gateway holds what it can in memory, committed once the store
can, and past ``HELD_PUSHES_MAX`` refuses a push unprocessed: memory stays bounded however long
the outage.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway import os2iot
from protocol import codec
from tests.gateway import events as ev
from tests.gateway.harness import FullDisk, Running, os2iot_push, running_gateway, wait_for
from tests.helpers.procs import Broker

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

BIN = "a84041000181f0d1"
OTHER = "a84041000181f0d2"


async def _metric(gw: Running, name: str) -> float:
    """One sample of the gateway's ``/metrics``, as Prometheus scrapes it."""
    text = (await gw.http.get("/metrics")).text
    values = [float(line.split()[1]) for line in text.splitlines() if line.split(" ")[0] == name]
    assert len(values) == 1, (name, values)
    return values[0]


def _stored_commands(db: Path) -> list[tuple[str, str]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT dev_eui, fields FROM commands WHERE message = 'bin_config'")
        return sorted((dev, fields) for dev, fields in rows)
    finally:
        con.close()


def _stored_devices(db: Path) -> set[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {row[0] for row in con.execute("SELECT dev_eui FROM devices")}
    finally:
        con.close()


async def test_a_change_whose_commit_fails_is_not_answered_as_done(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    db = tmp_path / "gateway.db"
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        assert (await gw.http.put(f"/api/v1/devices/{BIN}", json={"kind": "bin"})).is_success
        disk = FullDisk(gw.gateway)

        # the store fails as the command is committed
        disk.once = True
        body = {"message": "bin_config", "fields": {"config_version": 7}}
        answer = await gw.http.post(f"/api/v1/devices/{BIN}/commands", json=body)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "store_unavailable"
        assert "not committed" in answer.json()["message"]
        assert "kept" in answer.json()["message"]
        assert answer.headers["retry-after"] == "1"
        assert disk.failed == 1
        assert _stored_commands(db) == []
        assert await _metric(gw, "citypack_store_failures_total") >= 1
        # kept, as the answer said: committed once the store commits again (the retry timer)
        await wait_for(lambda: len(_stored_commands(db)) == 1, "the kept command committed")
        assert gw.gateway.store_ok

        # the store fails and stays failing: a device change first finds it failing
        disk.full = True
        answer = await gw.http.put(f"/api/v1/devices/{OTHER}", json={"kind": "bin"})
        assert answer.status_code == 503, answer.text
        assert "not committed" in answer.json()["message"]
        assert not gw.gateway.store_ok
        assert await _metric(gw, "citypack_store_ok") == 0  # what an operator's alert reads
        active = len(gw.gateway.commands.for_device(BIN))
        body = {"message": "bin_config", "fields": {"config_version": 8}}
        answer = await gw.http.post(f"/api/v1/devices/{BIN}/commands", json=body)
        assert answer.status_code == 503, answer.text
        assert answer.json() == {
            "error": "store_unavailable",
            "message": "the store is unavailable; try again",
        }
        # refused before it was made: nothing in memory that a later commit would write
        assert len(gw.gateway.commands.for_device(BIN)) == active
        many = {"devices": [{"dev_eui": "a84041000181f0d3", "kind": "bin"}]}
        answer = await gw.http.put("/api/v1/devices", json=many)
        assert answer.status_code == 503, answer.text
        assert "a84041000181f0d3" not in gw.gateway.devices

        disk.full = False
        await wait_for(lambda: gw.gateway.store_ok, "the store commits again", 15)
        await gw.gateway.flush()
        assert await _metric(gw, "citypack_store_ok") == 1
        commands = _stored_commands(db)
        assert len(commands) == 1 and json.loads(commands[0][1])["config_version"] == 7
        assert OTHER in _stored_devices(db)  # the kept device change


async def test_pushed_uplinks_are_held_for_a_failing_store_up_to_a_bound(
    mosquitto_broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os2iot, "HELD_PUSHES_MAX", 5)
    config, push = os2iot_push(tmp_path)
    async with running_gateway(mosquitto_broker, tmp_path, os2iot=config) as gw:
        assert (await gw.http.put(f"/api/v1/devices/{BIN}", json={"kind": "bin"})).is_success

        def uplink(f_cnt: int) -> bytes:
            fields = {"fill_percent": f_cnt, "temperature_c": 9, "battery_percent": 80}
            _, data = codec.encode("bin_status", fields)
            return ev.dumps(ev.up(gw.app, BIN, f_cnt=f_cnt, f_port=10, data=data))

        async def stored() -> list[int]:
            rows = (await gw.http.get(f"/api/v1/devices/{BIN}/uplinks")).json()["uplinks"]
            return sorted(int(r["f_cnt"]) for r in rows)

        disk = FullDisk(gw.gateway)
        disk.full = True
        answers = [
            await gw.http.post("/api/v1/ingest/os2iot", content=uplink(n), headers=push)
            for n in range(1, 9)
        ]
        assert [a.status_code for a in answers] == [503] * 8
        assert {a.json()["error"] for a in answers} == {"not_committed"}
        assert all("kept in memory" in a.json()["message"] for a in answers[:5])
        assert all("not kept" in a.json()["message"] for a in answers[5:])
        disk.full = False
        await wait_for(lambda: gw.gateway.store_ok, "the store commits again", 15)
        await gw.gateway.flush()
        assert await stored() == [1, 2, 3, 4, 5]  # the held ones, once; the rest never taken
        answer = await gw.http.post("/api/v1/ingest/os2iot", content=uplink(9), headers=push)
        assert answer.status_code == 200, answer.text  # held count reset: taken again
        assert await stored() == [1, 2, 3, 4, 5, 9]


@pytest.mark.postgres
async def test_a_command_whose_postgres_commit_fails_says_so_and_is_kept_once(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str
) -> None:
    """The first case above on PostgreSQL, where the API's change is claimed and committed on
    its own (gateway/service.py ``_committed_on``): the commit fails inside its transaction
    with SQLSTATE 53100 ``disk_full`` (PostgreSQL 15 manual, appendix A), raised where the
    batch's rows are written. 503 says it is kept, and it is committed once afterwards."""
    import psycopg

    async with running_gateway(mosquitto_broker, tmp_path, store={"url": postgres_url}) as gw:
        assert (await gw.http.put(f"/api/v1/devices/{BIN}", json={"kind": "bin"})).is_success
        store: Any = gw.gateway.store
        real = type(store)._write_rest.__get__(store)
        failed: list[int] = []

        async def write_rest(cur: Any, batch: Any) -> None:
            if batch.commands and not failed:
                failed.append(len(batch.commands))
                raise psycopg.errors.DiskFull("could not extend file: No space left on device")
            await real(cur, batch)

        store._write_rest = write_rest
        body = {"message": "bin_config", "fields": {"config_version": 7}}
        answer = await gw.http.post(f"/api/v1/devices/{BIN}/commands", json=body)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "store_unavailable"
        assert "not committed" in answer.json()["message"], answer.text
        assert failed == [1]

        def stored() -> list[int]:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT fields FROM commands WHERE message = 'bin_config'"
                ).fetchall()
            return [json.loads(fields)["config_version"] for (fields,) in rows]

        await wait_for(lambda: stored() == [7], "the kept command committed", 15)
        await wait_for(lambda: gw.gateway.store_ok, "the store commits again", 15)
        assert stored() == [7]
