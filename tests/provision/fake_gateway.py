"""Gateway registry servers for the tests, served for real by uvicorn on 127.0.0.1.

- :func:`serve_real_gateway`: the real ``gateway.api`` app on a real ``Gateway`` (SQLite).
- :func:`make_app`: a small stand-in with the routes of docs/interfaces.md, which counts PUTs so a
  test can prove a second registration run wrote nothing, and lets a test set the radio fields
  (``last_seen``, ``last_rssi``…) the install check reads without running MQTT uplinks.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, HTTPException

from tests.helpers.procs import free_port

_EUI = re.compile(r"^[0-9a-fA-F]{16}$")
FIELDS = (
    "kind",
    "name",
    "join_eui",
    "latitude",
    "longitude",
    "street",
    "group",
    "neighbours",
    "board",
    "serial",
    "report_interval_s",
)


def make_app(token: str) -> tuple[FastAPI, dict[str, dict[str, Any]], Counter[str]]:
    app = FastAPI()
    devices: dict[str, dict[str, Any]] = {}
    writes: Counter[str] = Counter()

    def check(authorization: str | None) -> None:
        if authorization != f"Bearer {token}":
            raise HTTPException(status_code=401, detail="bad token")

    @app.get("/api/v1/devices/{dev_eui}")
    def get_device(dev_eui: str, authorization: str | None = Header(default=None)) -> Any:
        check(authorization)
        device = devices.get(dev_eui.lower())
        if device is None:
            raise HTTPException(status_code=404, detail="unknown device")
        return device

    @app.put("/api/v1/devices/{dev_eui}")
    def put_device(
        dev_eui: str, body: dict[str, Any], authorization: str | None = Header(default=None)
    ) -> Any:
        check(authorization)
        if not _EUI.match(dev_eui) or body.get("kind") not in ("bin", "lamp"):
            raise HTTPException(status_code=422, detail="bad devEui or kind")
        unknown = set(body) - set(FIELDS)
        if unknown:
            raise HTTPException(status_code=422, detail=f"unknown fields {sorted(unknown)}")
        device = devices.setdefault(dev_eui.lower(), {"dev_eui": dev_eui.lower()})
        device.update(body)
        writes["put"] += 1
        return device

    return app, devices, writes


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1:<free port> in a thread; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve_real_gateway(db: Path, token: str) -> Iterator[str]:
    """The real ``gateway.api`` app over a real ``gateway.service.Gateway`` (SQLite store, no MQTT
    connection: the registry routes do not need one), served by uvicorn in its own thread and loop.
    """
    from gateway.api import create_app
    from gateway.config import parse_config
    from gateway.service import Gateway

    config = parse_config(
        {
            "mqtt": {"url": "mqtt://127.0.0.1:1"},  # never connected: only the API runs
            "store": {"url": f"sqlite:///{db}"},
            "api": {"listen": "127.0.0.1:0"},
        },
        environ={},
    )
    port = free_port()
    holder: dict[str, Any] = {}
    failed: list[BaseException] = []

    async def main() -> None:
        gateway = Gateway(config, api_token=token)
        await gateway.open()
        server = uvicorn.Server(
            uvicorn.Config(create_app(gateway), host="127.0.0.1", port=port, log_level="warning")
        )
        holder["server"] = server
        try:
            await server.serve()
        finally:
            await gateway.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test below
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not (holder.get("server") and holder["server"].started):
        if failed or time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the gateway API did not start: {failed!r}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        holder["server"].should_exit = True
        thread.join(timeout=15)
