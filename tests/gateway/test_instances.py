"""``GET /api/v1/instances`` on a shared store (issue 16): an instance that stopped is listed as
down, one silent for longer than ``FORGET_AFTER_S`` is no longer listed at all.

The two other instances are rows written before the gateway starts (as their last heartbeats
left them), so their ages are made, not waited for."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
import pytest

from gateway.fleet_sync import FORGET_AFTER_S, UP_WITHIN_S
from gateway.store import PostgresStore
from tests.gateway.harness import Clock, make_config, start, wait_for
from tests.helpers.procs import Broker

pytestmark = [pytest.mark.postgres, pytest.mark.broker]


async def test_instances_silent_past_the_bound_are_forgotten(
    mosquitto_broker: Broker, postgres_url: str, tmp_path: Path
) -> None:
    store = PostgresStore(postgres_url)
    await store.open()  # the schema, for the rows below
    await store.close()
    now = time.time()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for client_id, silent_s in (
            ("gw-retired", FORGET_AFTER_S + 60),
            ("gw-down", UP_WITHIN_S + 60),
        ):
            conn.execute(
                "INSERT INTO instances (client_id, started_at, heartbeat_at, host)"
                " VALUES (%s, %s, %s, 'elsewhere')",
                (client_id, now - silent_s - 3600, now - silent_s),
            )
    app, base = str(uuid.uuid4()), f"cp{uuid.uuid4().hex[:8]}"
    config = make_config(mosquitto_broker, tmp_path / "unused.db", app=app, base=base,
                         store={"url": postgres_url})  # fmt: skip
    running = await start(config, Clock(), app, base)
    try:
        me = config.mqtt.client_id

        async def heard() -> bool:
            view = (await running.http.get("/api/v1/instances")).json()
            return me in {row["client_id"] for row in view["instances"]}

        await wait_for(heard, "this instance's heartbeat")
        view = (await running.http.get("/api/v1/instances")).json()
        rows = {row["client_id"]: row for row in view["instances"]}
        assert set(rows) == {me, "gw-down"}  # the retired one is gone
        assert rows[me]["up"] and not rows["gw-down"]["up"]
        assert view["up"] == 1
    finally:
        await running.stop()
