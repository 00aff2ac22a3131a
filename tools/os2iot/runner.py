"""One running OS2iot emulator: its HTTP API on a loopback socket and its MQTT listener.

::

    async with Netsim(devices=[], broker_url=url) as netsim:
        async with Os2iotEmulator(api_key=key, broker_url=url, netsim=netsim.server) as os2iot:
            os2iot.url  # http://127.0.0.1:PORT/api/v1
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from typing import Any

import uvicorn

from tools.netsim.server import NetworkServer
from tools.os2iot.app import PREFIX, create_app
from tools.os2iot.listener import Os2iotListener
from tools.os2iot.state import Faults, Os2iotState, Profile

__all__ = ["DEFAULT_PROFILES", "Os2iotEmulator"]

_NS = uuid.UUID("8f0b7a4e-3d1c-4e5f-9a2b-0c1d2e3f4a5b")  # names the default profiles' UUIDs
DEFAULT_PROFILES = (
    Profile(str(uuid.uuid5(_NS, "citypack-bin-eu868")), "citypack-bin-eu868", class_c=False),
    Profile(str(uuid.uuid5(_NS, "citypack-lamp-eu868")), "citypack-lamp-eu868", class_c=True),
)


class _Server(uvicorn.Server):
    def capture_signals(self) -> Any:  # the caller owns the signals
        return contextlib.nullcontext()


class Os2iotEmulator:
    def __init__(
        self,
        *,
        api_key: str,
        broker_url: str,
        netsim: NetworkServer | None,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        application_id: int = 1,
        application_name: str = "citypack",
        profiles: tuple[Profile, ...] = DEFAULT_PROFILES,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.state = Os2iotState(
            api_key=api_key,
            applications={application_id: application_name},
            profiles=list(profiles),
            netsim=netsim,
            faults=Faults(),
        )
        self.listener = Os2iotListener(self.state, broker_url)
        self.listen = listen
        self.connect_timeout_s = connect_timeout_s
        self.port = 0
        self._server: _Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        """The API base, ``http://HOST:PORT/api/v1``."""
        host = self.listen[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}{PREFIX}"

    async def __aenter__(self) -> Os2iotEmulator:
        host, port = self.listen
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            create_app(self.state), log_config=None, access_log=False, lifespan="off"
        )
        self._server = server = _Server(config)

        async def serve() -> None:
            try:
                await server.serve(sockets=[sock])
            finally:
                for listener in server.servers:
                    listener.close()
                sock.close()

        self._tasks = [
            asyncio.create_task(serve(), name="os2iot-api"),
            asyncio.create_task(self.listener.run(), name="os2iot-mqtt"),
        ]
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                while not server.started:  # uvicorn has no event for it
                    if self._tasks[0].done():
                        self._tasks[0].result()
                    await asyncio.sleep(0.01)
                await self.listener.connected.wait()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self.listener.stopping = True
        for task in self._tasks[1:]:  # the API task ends on should_exit
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5.0)
        self._tasks = []
