"""The OS2iot emulator's ChirpStack MQTT listener and its HTTP-push data targets.

As OS2iot's ``chirpstack-mqtt-listener.service.ts`` does (docs/os2iot.md §4): a clean session,
client id ``os2iot-backend``, QoS 0 subscriptions to ``event/up``, ``event/txack`` and
``event/ack``; an uplink of a DevEUI it does not know is dropped; ``txack``/``ack`` update the
downlink row with the same ``queueItemId`` (an event before the row exists is skipped). Each
uplink is pushed to every HTTP-push target connected to the device: ``POST`` of the raw ``up``
JSON (re-serialised), ``Authorization`` sent verbatim, one try, **no retry** (at most once); the
outcome goes to the target's log (an ERROR always, an OK only after an ERROR).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import aiomqtt
import httpx

from tools.netsim.mqtt import parse_broker_url
from tools.os2iot.model import DataTarget, IotDevice, iso_now
from tools.os2iot.state import RECEIVED_TIMES, Os2iotState

__all__ = ["Os2iotListener"]

log = logging.getLogger("citypack.os2iot")

_EVENTS = ("up", "txack", "ack")


class Os2iotListener:
    """``run()`` until cancelled; ``pushes`` / ``push_failures`` / ``dropped`` count outcomes."""

    def __init__(
        self, state: Os2iotState, broker_url: str, *, client_id: str = "os2iot-backend"
    ) -> None:
        self.state = state
        self.broker = parse_broker_url(broker_url)
        self.client_id = client_id
        self.connected = asyncio.Event()
        self.pushes = 0
        self.push_failures = 0
        self.dropped = 0
        self.stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient()

    async def run(self) -> None:
        backoff = 0.5
        try:
            while True:
                try:
                    async with aiomqtt.Client(
                        self.broker.host,
                        self.broker.port,
                        username=self.broker.username,
                        password=self.broker.password,
                        identifier=self.client_id,
                        clean_session=True,
                    ) as client:
                        for event in _EVENTS:
                            await client.subscribe(f"application/+/device/+/event/{event}", qos=0)
                        self.connected.set()
                        backoff = 0.5
                        async for message in client.messages:
                            self.handle(str(message.topic), _bytes(message.payload))
                except aiomqtt.MqttError as exc:
                    if self.stopping:  # a stop that met a disconnect (see close())
                        raise asyncio.CancelledError from exc
                    self.connected.clear()
                    log.warning("os2iot: MQTT %s (reconnecting)", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        finally:
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._http.aclose()

    def handle(self, topic: str, payload: bytes) -> None:
        event = topic.rsplit("/", 1)[-1]
        try:
            doc = json.loads(payload)
        except ValueError:
            return  # OS2iot JSON.parse()s and logs; nothing reaches a data target
        if not isinstance(doc, dict):
            return
        if event == "up":
            self._on_up(doc)
        elif event == "txack" and isinstance(doc.get("queueItemId"), str):
            self.state.on_txack(doc["queueItemId"], str(doc.get("time") or iso_now()), _int(doc))
        elif event == "ack" and isinstance(doc.get("queueItemId"), str):
            self.state.on_ack(
                doc["queueItemId"],
                str(doc.get("time") or iso_now()),
                bool(doc.get("acknowledged")),
                _int(doc),
            )

    def _on_up(self, doc: dict[str, Any]) -> None:
        info = doc.get("deviceInfo")
        dev_eui = info.get("devEui") if isinstance(info, dict) else None
        device = self.state.by_dev_eui(dev_eui) if isinstance(dev_eui, str) else None
        if device is None:
            self.dropped += 1  # an unknown deviceInfo.devEui is dropped (docs/os2iot.md §4.1)
            return
        device.latest_received = doc
        device.received_times = [*device.received_times, iso_now()][-RECEIVED_TIMES:]
        body = json.dumps(doc, separators=(",", ":")).encode()
        for target in self.state.targets_of(device.id):
            task = asyncio.create_task(self._push(target, device, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _push(self, target: DataTarget, device: IotDevice, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        if target.authorization_header:
            headers["Authorization"] = target.authorization_header
        faults = self.state.faults
        if faults.push_losses > 0:
            faults.push_losses -= 1
            self.push_failures += 1
            self.state.log_push(target, device.id, None, "injected loss: no answer")
            return
        try:
            response = await self._http.post(
                target.url, content=body, headers=headers, timeout=target.timeout_ms / 1000
            )
        except httpx.HTTPError as exc:
            self.push_failures += 1
            self.state.log_push(target, device.id, None, f"{type(exc).__name__}: {exc}")
            return
        ok = 200 <= response.status_code < 300
        self.pushes += ok
        self.push_failures += not ok
        self.state.log_push(target, device.id, response.status_code, response.text[:200])

    async def idle(self, timeout_s: float = 5.0) -> None:
        """Wait until no push is in flight (bounded)."""
        async with asyncio.timeout(timeout_s):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _int(doc: dict[str, Any]) -> int | None:
    value = doc.get("fCntDown")
    return value if isinstance(value, int) else None


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return b"" if value is None else str(value).encode()
