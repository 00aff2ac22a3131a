"""A gateway running in the test's event loop against the session's private mosquitto."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import httpx

from gateway.config import Config, parse_config
from gateway.errors import StoreError
from gateway.metrics import read
from gateway.service import Gateway
from tests.helpers.procs import Broker

TOKEN = "test-token-not-a-secret"

# The store the behaviour tests run on: a test module sets it from the `store_url` fixture
# (tests/gateway/conftest.py) to run the same body on SQLite and PostgreSQL; None: SQLite file
STORE_URL: list[str] = []


class Clock:
    """A settable clock for availability and expiry (the MQTT path still runs for real)."""

    def __init__(self, start: float = 1_772_446_542.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_config(broker: Broker, db: Path, *, app: str, base: str, **sections: Any) -> Config:
    doc: dict[str, Any] = {
        "mqtt": {
            "url": broker.url,
            "client_id": f"gw-{uuid.uuid4().hex[:12]}",
            "application_id": app,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
        },
        "store": {"url": STORE_URL[-1] if STORE_URL else f"sqlite:///{db}"},
        "api": {"listen": "127.0.0.1:0"},
        "publish": {"base_topic": base},
        "commands": {"check_interval_s": 3600.0},
        "availability": {"check_interval_s": 3600.0},
    }
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    return parse_config(doc, environ={})


async def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = 10.0) -> Any:
    """Poll until ``predicate()`` is truthy (a bound on waiting, not a speed assertion)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Running:
    gateway: Gateway
    config: Config
    app: str
    base: str
    http: httpx.AsyncClient
    task: asyncio.Task[None]
    clock: Clock
    received: list[tuple[str, bytes]] = field(default_factory=list)

    def counter(self, outcome: str) -> float:
        return read(self.gateway.metrics.uplinks, outcome=outcome)

    async def stop(self) -> None:
        self.gateway.stop()
        await asyncio.wait_for(self.task, 20)
        await self.gateway.close()
        await self.http.aclose()


async def start(config: Config, clock: Clock, app: str, base: str) -> Running:
    gateway = Gateway(config, api_token=TOKEN, clock=clock)
    task = asyncio.create_task(gateway.run(), name="gateway")
    await wait_for(lambda: gateway.started.is_set() or task.done(), "gateway start")
    if task.done():
        task.result()
    await wait_for(gateway.bridge.connected.is_set, "mqtt connection")
    http = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.api_port or 9}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    return Running(gateway, config, app, base, http, task, clock)


@asynccontextmanager
async def running_gateway(
    broker: Broker, tmp_path: Path, *, clock: Clock | None = None, **sections: Any
) -> AsyncIterator[Running]:
    app = str(uuid.uuid4())
    base = f"cp{uuid.uuid4().hex[:8]}"
    config = make_config(broker, tmp_path / "gateway.db", app=app, base=base, **sections)
    running = await start(config, clock or Clock(), app, base)
    try:
        yield running
    finally:
        await running.stop()


@asynccontextmanager
async def mqtt_client(
    broker: Broker, *topics: str
) -> AsyncIterator[tuple[aiomqtt.Client, list[tuple[str, bytes]]]]:
    """A plain client (ChirpStack's side); collects messages on ``topics``."""
    got: list[tuple[str, bytes]] = []
    async with aiomqtt.Client(
        broker.host, broker.port, identifier=f"t-{uuid.uuid4().hex[:10]}"
    ) as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                payload = message.payload
                got.append((message.topic.value, payload if isinstance(payload, bytes) else b""))

        task = asyncio.create_task(collect())
        try:
            yield client, got
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def json_of(got: list[tuple[str, bytes]], topic: str) -> list[Any]:
    return [json.loads(p) for t, p in got if t == topic]


def os2iot_push(directory: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """An ``[os2iot]`` section that takes uplinks by HTTP push only (no downlinks through
    OS2iot, so its URL is never called), its push secret written to ``directory``; and the
    headers a data target sends with each push."""
    secret = directory / "push.auth"
    secret.write_text("Bearer push-test\n")
    secret.chmod(0o600)
    section = {
        "url": "http://127.0.0.1:9/api/v1",  # never called: no downlinks through OS2iot
        "ingest": "http_push",
        "push_authorization_file": str(secret),
        "downlinks": False,
    }
    return section, {"authorization": "Bearer push-test"}


class FullDisk:
    """The gateway's SQLite store fails its commits as on a full disk: its ``_write`` raises
    what SQLite's ``database or disk is full`` becomes, before the transaction begins.
    ``full`` while True: every commit; ``once``: the next one. ``failed`` counts them."""

    def __init__(self, gateway: Gateway) -> None:
        self.full = False
        self.once = False
        self.failed = 0
        store: Any = gateway.store
        real = type(store)._write.__get__(store)  # the store's own, not an earlier wrap

        def write(db: Any, rows: dict[str, list[Any]]) -> None:
            if self.full or self.once:
                self.once = False
                self.failed += 1
                raise StoreError("commit failed: database or disk is full")
            real(db, rows)

        store._write = write


def refuse_commits(
    gateway: Gateway,
    refused: list[Any],
    when: Callable[[Any], Any],
    *,
    times: int = 1,
    hold: Callable[[], Any] | None = None,
) -> None:
    """The gateway's PostgreSQL store refuses (StoreConflict) its next ``times`` commits whose
    batch ``when`` picks, inside the real commit's transaction: at the check for devices held
    by another instance (gateway/store/postgres.py ``_claim_at_commit``), as a device held
    elsewhere would. Each refusal appends the store to ``refused`` (one list may serve several
    stores). ``hold``, when given, is awaited just before a refusal, so a test can order
    something between the commit and its refusal."""
    from gateway.errors import StoreConflict

    store: Any = gateway.store
    real = type(store)._claim_at_commit.__get__(store)  # the store's own, not an earlier wrap

    async def refuse(cur: Any, touched: Any, claimed: Any) -> None:
        batch = store._writing
        if refused.count(store) < times and batch is not None and when(batch):
            refused.append(store)
            if hold is not None:
                await hold()
            raise StoreConflict("refused by the test")
        await real(cur, touched, claimed)

    store._claim_at_commit = refuse
