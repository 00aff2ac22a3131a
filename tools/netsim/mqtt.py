"""The MQTT integration: events out, ``command/down`` in, exactly as ChirpStack v4 does it.

Source: reference/chirpstack.md §1 (topics, QoS, retain=false), §2 (event JSON), §3 (commands),
§4 (``json=false`` → binary protobuf both ways); chirpstack ``src/integration/mqtt.rs``.

- Events go to ``application/{applicationId}/device/{devEui}/event/{up|join|ack|txack|status|log}``
  at QoS 1 (ChirpStack's ``qos`` setting, here 1 as the gateway needs), retain false.
- Commands are read from ``application/{applicationId}/device/+/command/down`` and handed to
  :meth:`NetworkServer.handle_command`, which applies the devEui-must-match-topic rule.
- The client reconnects with a growing back-off (0.5 s … 10 s); events produced while the broker
  is away wait in a bounded queue (``queue_size``; overflow is counted in ``dropped`` and logged).

MQTT 3.1.1 is the default protocol because the embedded broker (amqtt) of ``citypack demo`` speaks
only 3.1.1; pass ``mqtt_v5=True`` to connect like ChirpStack (v5).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
from google.protobuf.message import Message

from tools.netsim.events import Marshaler, encode_event
from tools.netsim.server import NetworkServer

__all__ = ["BrokerURL", "MqttIntegration", "event_topic", "parse_broker_url"]

log = logging.getLogger("citypack.netsim.mqtt")

_SCHEMES = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883, "tls": 8883}


class BrokerURLError(ValueError):
    """A broker URL the integration cannot use."""


@dataclass(frozen=True)
class BrokerURL:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


def parse_broker_url(url: str) -> BrokerURL:
    """``mqtt://[user[:pass]@]host[:port]`` (also tcp://, and mqtts:// / ssl:// for TLS)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise BrokerURLError(
            f"broker URL must start with mqtt://, tcp://, mqtts:// or ssl://: {url}"
        )
    try:
        port = parts.port or _SCHEMES[scheme]
    except ValueError as exc:
        raise BrokerURLError(f"bad port in broker URL: {exc}") from None
    if not parts.hostname:
        raise BrokerURLError(f"broker URL has no host: {url}")
    return BrokerURL(
        host=parts.hostname,
        port=port,
        tls=scheme in ("mqtts", "ssl", "tls"),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def event_topic(application_id: str, dev_eui: str, event: str) -> str:
    """ChirpStack's default ``event_topic`` template."""
    return f"application/{application_id}/device/{dev_eui}/event/{event}"


class MqttIntegration:
    """Publishes the emulator's events and feeds it ``command/down`` messages."""

    def __init__(
        self,
        server: NetworkServer,
        broker_url: str,
        *,
        marshaler: Marshaler = "json",
        qos: int = 1,
        client_id: str | None = None,
        queue_size: int = 10_000,
        mqtt_v5: bool = False,
    ) -> None:
        if marshaler not in ("json", "protobuf"):
            raise ValueError(f"marshaler must be json or protobuf, got {marshaler!r}")
        self.server = server
        self.broker = parse_broker_url(broker_url)
        self.marshaler: Marshaler = marshaler
        self.qos = qos
        self.client_id = client_id or f"citypack-netsim-{uuid.uuid4().hex[:12]}"
        self.mqtt_v5 = mqtt_v5
        self.application_id = server.config.application_id
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=queue_size)
        self.connected = asyncio.Event()
        self.was_connected = False
        self.last_error = ""
        self._pending: tuple[str, bytes] | None = None  # taken from the outbox, not yet sent
        self.published = 0
        self.dropped = 0
        self.commands = 0
        self.stopping = False  # set before the run task is cancelled (see run)
        server.add_event_sink(self._on_event)

    @property
    def command_topic(self) -> str:
        return f"application/{self.application_id}/device/+/command/down"

    def _on_event(self, event: str, dev_eui: str, message: Message) -> None:
        topic = event_topic(self.application_id, dev_eui, event)
        try:
            self._outbox.put_nowait((topic, encode_event(message, self.marshaler)))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("netsim: event queue full, dropped %s for %s", event, dev_eui)

    def _client(self) -> aiomqtt.Client:
        tls_context = ssl.create_default_context() if self.broker.tls else None
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=self.broker.username,
            password=self.broker.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if self.mqtt_v5 else aiomqtt.ProtocolVersion.V311,
            tls_context=tls_context,
            keepalive=30,
            timeout=10,
        )

    async def run(self) -> None:
        """Connect, subscribe and pump until cancelled; reconnect after broker errors."""
        backoff = 0.5
        while True:
            try:
                async with self._client() as client:
                    await client.subscribe(self.command_topic, qos=self.qos)
                    self.connected.set()
                    self.was_connected = True
                    backoff = 0.5
                    # Either task failing (connection lost) cancels the other.
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._read(client), name="netsim-mqtt-commands")
                        tasks.create_task(self._publish(client), name="netsim-mqtt-events")
            except* aiomqtt.MqttError as group:
                # Python 3.11's TaskGroup drops a cancellation that meets a child's error, and
                # aiomqtt may turn a cancelled disconnect into an MqttError: a stop that arrives
                # then must still stop this loop (it hung Netsim.close() for good before)
                if self.stopping:
                    raise asyncio.CancelledError from None
                self.connected.clear()
                self.last_error = str(group.exceptions[0])
                broker = f"{self.broker.host}:{self.broker.port}"
                # Before the first connection the caller reports the failure in one line.
                level = logging.WARNING if self.was_connected else logging.DEBUG
                log.log(level, "netsim: MQTT %s: %s (reconnecting)", broker, self.last_error)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    async def _publish(self, client: aiomqtt.Client) -> None:
        while True:
            if self._pending is None:
                self._pending = await self._outbox.get()
            topic, payload = self._pending
            await client.publish(topic, payload, qos=self.qos, retain=False)
            self._pending = None  # published: a reconnect does not send it again
            self.published += 1
            self._outbox.task_done()

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if not message.topic.matches(self.command_topic):
                # amqtt (the demo's embedded broker) also hands a new subscriber retained
                # messages of topics outside its filter (citypack/devices/+/state): not ours
                log.debug("netsim: ignored %s (not a command topic)", message.topic)
                continue
            self.commands += 1
            self.server.handle_command(
                str(message.topic), _payload(message.payload), self.marshaler
            )

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait until every queued event has been published (or ``timeout_s`` passes)."""
        async with asyncio.timeout(timeout_s):
            await self._outbox.join()


def _payload(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if value is None:
        return b""
    return str(value).encode()
