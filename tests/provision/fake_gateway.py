"""A stand-in for the gateway's registry routes (docs/interfaces.md), served for real by uvicorn.

Used only while the real ``gateway.api`` app is not in the tree: the same routes, bearer token,
body fields and lower-case DevEUI storage as the interface document fixes. Counts PUTs so a test
can prove that a second registration run wrote nothing.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
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
