"""One running emulator: the network server, its MQTT integration, GWMP on UDP, the capture.

``citypack netsim`` and ``citypack demo`` both use :class:`Netsim`; see the package docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from tools.netsim.capture import Capture
from tools.netsim.devices import Device
from tools.netsim.events import Marshaler
from tools.netsim.gwmp import GwmpServer
from tools.netsim.mqtt import MqttIntegration
from tools.netsim.server import NetsimConfig, NetworkServer

__all__ = ["Netsim"]

log = logging.getLogger("citypack.netsim")


class Netsim:
    """Network server + MQTT integration (+ GWMP UDP endpoint, + capture file).

    ::

        async with Netsim(devices, broker_url="mqtt://127.0.0.1:1883",
                          udp=("127.0.0.1", 1700), capture_path=Path("air.jsonl")) as netsim:
            netsim.server.attach_gateway(...)   # in-process gateways, if any
            ...
    """

    def __init__(
        self,
        devices: list[Device],
        *,
        broker_url: str | None,
        config: NetsimConfig | None = None,
        marshaler: Marshaler = "json",
        udp: tuple[str, int] | None = None,
        capture_path: Path | None = None,
        connect_timeout_s: float = 10.0,
        mqtt_options: dict[str, Any] | None = None,
    ) -> None:
        self.capture = Capture(capture_path) if capture_path is not None else None
        self.server = NetworkServer(devices, config, capture=self.capture)
        self.mqtt = (
            MqttIntegration(self.server, broker_url, marshaler=marshaler, **(mqtt_options or {}))
            if broker_url
            else None
        )
        self.udp = udp
        self.gwmp: GwmpServer | None = None
        self.connect_timeout_s = connect_timeout_s
        self._mqtt_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Netsim:
        await self.server.start()
        try:
            if self.udp is not None:
                self.gwmp = await GwmpServer.start(self.server, *self.udp)
            if self.mqtt is not None:
                self._mqtt_task = asyncio.create_task(self.mqtt.run(), name="netsim-mqtt")
                connected = asyncio.create_task(self.mqtt.connected.wait())
                done, _ = await asyncio.wait(
                    {connected, self._mqtt_task},
                    timeout=self.connect_timeout_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if connected not in done:
                    connected.cancel()
                    reason = f": {self.mqtt.last_error}" if self.mqtt.last_error else ""
                    raise ConnectionError(
                        f"no MQTT connection to {self.mqtt.broker.host}:{self.mqtt.broker.port}"
                        f" within {self.connect_timeout_s:g} s{reason}"
                    )
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.mqtt is not None and self._mqtt_task is not None and self.mqtt.connected.is_set():
            with contextlib.suppress(TimeoutError):
                await self.mqtt.drain(2.0)
        if self._mqtt_task is not None:
            assert self.mqtt is not None
            self.mqtt.stopping = True
            self._mqtt_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._mqtt_task
            self._mqtt_task = None
        if self.gwmp is not None:
            self.gwmp.close()
            self.gwmp = None
        await self.server.stop()
        if self.capture is not None:
            self.capture.close()
