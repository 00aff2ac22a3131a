"""The gateway's start-up on a shared store (issue 16): the API answers before the store is
open, and the one wait on another instance (its schema migration) is bounded.

The precondition is made, not waited for: the test holds the migration lock
(``gateway.store.pg_schema.MIGRATION_LOCK``) on a session of its own, as an instance in the
middle of a migration does, and starts a gateway on that database.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

import gateway.store.postgres as pg_store
from gateway.errors import StoreError
from gateway.service import Gateway
from gateway.store import PostgresStore
from gateway.store.pg_schema import MIGRATION_LOCK
from tests.gateway.harness import TOKEN, Clock, make_config, wait_for
from tests.helpers.procs import Broker

pytestmark = [pytest.mark.postgres, pytest.mark.broker]


async def _status(http: httpx.AsyncClient, path: str) -> tuple[int, dict[str, object]]:
    response = await http.get(path)
    return response.status_code, response.json()


async def test_api_answers_starting_while_another_instance_migrates(
    mosquitto_broker: Broker, postgres_url: str, tmp_path: Path
) -> None:
    app, base = str(uuid.uuid4()), f"cp{uuid.uuid4().hex[:8]}"
    config = make_config(mosquitto_broker, tmp_path / "unused.db", app=app, base=base,
                         store={"url": postgres_url})  # fmt: skip
    holder = await psycopg.AsyncConnection.connect(postgres_url, autocommit=True)
    await holder.execute("SELECT pg_advisory_lock(%s, %s)", MIGRATION_LOCK)
    gateway = Gateway(config, api_token=TOKEN, clock=Clock())
    task = asyncio.create_task(gateway.run(), name="gateway")
    http: httpx.AsyncClient | None = None
    try:
        await wait_for(lambda: gateway.api_port is not None or task.done(), "api bound")
        assert not task.done()
        http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{gateway.api_port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )

        async def answers() -> bool:
            try:
                return (await http.get("/healthz")).status_code == 200  # type: ignore[union-attr]
            except httpx.TransportError:
                return False

        await wait_for(answers, "api listening")
        # the store cannot open while the lock is held: the process is live, not ready
        assert await _status(http, "/healthz") == (200, {"status": "starting"})
        code, ready = await _status(http, "/readyz")
        assert code == 503 and ready["store"] is False
        response = await http.get("/api/v1/devices")
        assert response.status_code == 503 and response.json()["error"] == "starting"
        assert response.headers["retry-after"] == "1"
        assert gateway.starting and not gateway.started.is_set()
        bare = await http.get("/api/v1/devices", headers={"Authorization": ""})
        assert bare.status_code == 401  # the token is still checked first

        await holder.execute("SELECT pg_advisory_unlock(%s, %s)", MIGRATION_LOCK)
        await wait_for(lambda: gateway.started.is_set() or task.done(), "gateway start", 30)
        assert not task.done()
        assert await _status(http, "/healthz") == (200, {"status": "ok"})
        assert (await http.get("/api/v1/devices")).status_code == 200
    finally:
        await holder.close()
        gateway.stop()
        async with asyncio.timeout(20):
            await asyncio.gather(task, return_exceptions=True)
        await gateway.close()
        if http is not None:
            await http.aclose()


async def test_migration_lock_wait_is_bounded(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_store, "MIGRATION_WAIT_S", 1)
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as holder:
        await holder.execute("SELECT pg_advisory_lock(%s, %s)", MIGRATION_LOCK)
        store = PostgresStore(postgres_url)
        with pytest.raises(StoreError, match="schema migration lock for over 1 s"):
            await store.open()
        await holder.execute("SELECT pg_advisory_unlock(%s, %s)", MIGRATION_LOCK)
        await store.open()  # once it is free the same store opens
        await store.close()
