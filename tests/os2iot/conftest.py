"""An OS2iot emulator with the ChirpStack emulator behind it, on a private mosquitto, and an
HTTP receiver that plays an OS2iot data target's endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.helpers import procs
from tests.provision.conftest import cli  # noqa: F401 - the provisioning CLI fixture
from tools.netsim.runner import Netsim
from tools.os2iot.runner import Os2iotEmulator

API_KEY = "6c0f1f0e-6f4e-4d43-9a7b-2f1d3c4b5a69"


@dataclass
class Receiver:
    """A data target's endpoint: records every request, answers ``status``."""

    url: str = ""
    status: int = 200
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    box = Receiver()

    async def take(request: Request) -> Response:
        box.requests.append((dict(request.headers), await request.body()))
        box.arrived.set()
        return Response(status_code=box.status)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    box.url = f"http://127.0.0.1:{sock.getsockname()[1]}/push"
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/push", take, methods=["POST"])]),
            log_config=None,
            lifespan="off",
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn has no event for it
                await asyncio.sleep(0.01)
        yield box
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def os2iot_stack(broker: procs.Broker) -> AsyncIterator[tuple[Netsim, Os2iotEmulator]]:
    async with (
        Netsim([], broker_url=broker.url) as netsim,
        Os2iotEmulator(api_key=API_KEY, broker_url=broker.url, netsim=netsim.server) as os2iot,
    ):
        yield netsim, os2iot


@pytest.fixture
def headers() -> dict[str, Any]:
    return {"X-API-KEY": API_KEY}


@dataclass
class Running:
    """An OS2iot emulator (with netsim behind it) served from a thread, for sync clients."""

    url: str
    os2iot: Os2iotEmulator
    netsim: Netsim
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Any) -> Any:
        """Run ``fn()`` on the emulator's loop (its state is not thread-safe)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)


@pytest.fixture
def os2iot_thread(mosquitto_broker: procs.Broker) -> Iterator[Running]:
    ready: queue.Queue[Running | BaseException] = queue.Queue()
    stop = threading.Event()

    async def main() -> None:
        try:
            async with os2iot_stack(mosquitto_broker) as (netsim, os2iot):
                ready.put(Running(os2iot.url, os2iot, netsim, asyncio.get_running_loop()))
                while not stop.is_set():  # noqa: ASYNC110 - the stop comes from another thread
                    await asyncio.sleep(0.05)
        except BaseException as exc:  # reported to the test thread
            ready.put(exc)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    running = ready.get(timeout=30)
    if isinstance(running, BaseException):
        raise running
    try:
        yield running
    finally:
        stop.set()
        thread.join(30)
