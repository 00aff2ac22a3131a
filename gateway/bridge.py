"""MQTT in and out with aiomqtt: QoS 1 on a persistent session, acknowledged after commit.

Invariant 3 (ARCHITECTURE.md: at-least-once in, exactly-once effect) is kept by *both* halves:

1. **Ack after commit.** The paho client under aiomqtt runs with ``manual_ack``: a QoS 1
   PUBLISH from ChirpStack is PUBACKed only after the store transaction holding its effects has
   committed (:meth:`Bridge.ack`, called by the service after each batch). A crash before the
   commit leaves the message unacknowledged, and the broker redelivers it on the next connection
   of the same persistent session (fixed ``client_id``, ``clean_session=False``; MQTT 3.1.1
   §4.4). This also bounds the inbound queue without dropping anything: the broker sends at most
   its in-flight window (mosquitto ``max_inflight_messages``) of unacknowledged messages.
2. **Idempotent processing.** Redelivery (and ChirpStack's own duplicates, reference §7) is
   harmless because processing is keyed on ``deduplicationId`` (persisted in the same
   transaction) and on (devEui, devAddr, fCnt).

What needs aiomqtt's or paho's private attributes (the paho client under aiomqtt, its incoming
queue, paho's packet queue, paho's socket factory for reads 64 KB at a time) is reached only
through :mod:`gateway.mqtt_internals`, which checks the installed versions and falls back to
public calls outside them.

Acks are in receive order (MQTT 3.1.1 §4.6) and only on the connection that received the
message: after a reconnect the old message ids mean nothing, and the broker redelivers instead.

Outgoing normalised topics wait in :class:`gateway.outbox.Outbox` (bounded and coalescing),
which hands them to this bridge: retained QoS 0 twins as one write per chunk
(:meth:`Bridge.send_retained_qos0`, while paho's write buffer is empty), QoS 1 messages through
:meth:`Bridge.publish_qos1`, which awaits the broker's PUBACK, so no more than the outbox's window
of packet identifiers is ever in use (they are 16 bits: past 65,535 outstanding messages paho
refuses new ones). Downlinks do not use the outbox:
:meth:`Bridge.publish_downlink` awaits the broker's PUBACK, and a failed publish leaves the
command queued for the next attempt.

Reconnects back off exponentially from ``reconnect_min_s`` to ``reconnect_max_s`` with full
jitter. Each instance has its own ``<base>/bridge/{client_id}/state`` (retained ``online``); its
last will sets ``offline``, and a graceful stop publishes it itself before disconnecting.

Several instances (``[mqtt] shared_group``, gateway/README.md "Running several instances")
subscribe ``$share/<group>/application/+/device/+/event/+`` over MQTT v5 (MQTT 5.0 §4.8.2), each
with its own ``client_id``, ``clean_start`` off and a session that never expires
(``Session Expiry Interval`` 0xFFFFFFFF, §3.1.2.11.2): what the broker sent an instance and it
did not acknowledge waits in that session until an instance with that client id returns.
:meth:`Bridge.reconnect` drops the connection on purpose so the broker sends again what was not
acknowledged (the service asks when it had to drop a batch it could not commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import struct
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import mqtt_internals as internals
from gateway.chirpstack import event_subscription
from gateway.config import MqttConfig, read_secret
from gateway.metrics import Metrics

__all__ = ["Bridge", "MessageHandler"]

_PUBACK = struct.Struct("!BBH")


def _publish_qos0_retained(topic: str, payload: bytes, *, mqtt5: bool = False) -> bytes:
    """One PUBLISH packet, QoS 0, retain. MQTT 3.1.1 §3.3: topic name, no packet identifier at
    QoS 0, payload; MQTT 5.0 §3.3.2.3 adds the property length after the topic (0: none)."""
    name = topic.encode()
    properties = b"\x00" if mqtt5 else b""
    length = 2 + len(name) + len(properties) + len(payload)
    header = bytearray(b"\x31")  # PUBLISH, DUP 0, QoS 0, RETAIN 1
    while True:  # §2.2.3 remaining length: 7 bits per byte, high bit = more
        byte, length = length & 0x7F, length >> 7
        header.append(byte | 0x80 if length else byte)
        if not length:
            break
    return b"".join((header, len(name).to_bytes(2, "big"), name, properties, payload))


MessageHandler = Callable[[aiomqtt.Message, int], Awaitable[None]]


class Bridge:
    def __init__(
        self,
        *,
        config: MqttConfig,
        publisher_base: str,
        handler: MessageHandler,
        on_connect: Callable[[], Awaitable[None]],
        on_stop: Callable[[], Awaitable[None]],
        accept_set: bool = False,
        metrics: Metrics,
        logger: logging.Logger,
        chirpstack_events: bool = True,
    ) -> None:
        self.config = config
        # False where uplinks come from an OS2iot data target instead (gateway/os2iot.py)
        self.chirpstack_events = chirpstack_events
        self.base = publisher_base
        self.handler = handler
        self.on_connect = on_connect
        self.on_stop = on_stop
        self.accept_set = accept_set  # subscribe to <base>/devices/+/set (gateway/setcommand.py)
        self.metrics = metrics
        self.log = logger
        self.connected = asyncio.Event()
        self.generation = 0
        self.client: aiomqtt.Client | None = None
        self._stop = asyncio.Event()
        self.drained_generation = 0  # the connection whose session backlog was processed
        self.on_drained: Callable[[], None] | None = None
        self._reconnect = asyncio.Event()
        self._dropped_logged = 0
        self.state_topic = f"{publisher_base}/bridge/{config.client_id}/state"
        # publishes what waits to go out before a graceful disconnect (the outbox sets it)
        self.drain: Callable[[], Awaitable[None]] | None = None

    # --- connection ------------------------------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        cfg = self.config
        url = urlsplit(cfg.url)
        tls = url.scheme in ("mqtts", "ssl") or bool(cfg.tls_ca_file)
        port = url.port or (8883 if tls else 1883)
        tls_context = None
        if tls:
            tls_context = ssl.create_default_context(cafile=cfg.tls_ca_file or None)
            if cfg.tls_cert_file:
                tls_context.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file or None)
        password = read_secret(cfg.password_file) if cfg.password_file else None
        session: dict[str, Any] = {
            "clean_session": False,  # the persistent session that survives our restarts
            "protocol": aiomqtt.ProtocolVersion.V311,
        }
        if cfg.shared_group:  # shared subscriptions are MQTT v5 (§4.8.2); see the docstring
            internals.lean_publish_properties()  # each PUBLISH's MQTT 5 properties, cheaper
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0xFFFFFFFF
            session = {
                "clean_start": False,
                "properties": properties,
                "protocol": aiomqtt.ProtocolVersion.V5,
            }
        client = aiomqtt.Client(
            url.hostname or "127.0.0.1",
            port,
            identifier=cfg.client_id,
            username=cfg.username or None,
            password=password,
            keepalive=cfg.keepalive_s,
            will=aiomqtt.Will(self.state_topic, b"offline", qos=1, retain=True),
            tls_context=tls_context,
            # QoS 0 has no redelivery, so only then does the local queue need its own bound
            max_queued_incoming_messages=cfg.queue_size if cfg.qos == 0 else None,
            timeout=10,
            **session,
        )
        paho_client = internals.paho_client(client)
        paho_client.manual_ack_set(True)  # PUBACK after commit: docstring
        # one readable event reads every packet that came with it (gateway/mqtt_internals.py)
        internals.buffered_reads(paho_client)
        # the outbox keeps up to 64 QoS 1 publishes waiting for their PUBACK by design
        # (gateway/outbox.py); aiomqtt's warning past 10 is a log line per publish then
        client.pending_calls_threshold = 256
        return client

    async def run(self) -> None:
        """Connect, subscribe and receive until :meth:`stop`; reconnect with back-off."""
        delay = self.config.reconnect_min_s
        while not self._stop.is_set():
            try:
                client = self._make_client()
                async with client:
                    self.client = client
                    self.generation += 1
                    delay = self.config.reconnect_min_s
                    if self.chirpstack_events:
                        await client.subscribe(
                            event_subscription(
                                self.config.application_id, self.config.shared_group
                            ),
                            qos=self.config.qos,
                        )
                    if self.accept_set:  # gateway/setcommand.py
                        await client.subscribe(f"{self.base}/devices/+/set", qos=1)
                    await client.publish(self.state_topic, b"online", qos=1, retain=True)
                    self.connected.set()
                    self.metrics.mqtt_connected.set(1)
                    self.log.info("mqtt connected", extra={"url": self._safe_url()})
                    await self.on_connect()
                    if await self._receive_until_stop(client):
                        await self.on_stop()
                        if self.drain is not None:
                            await self.drain()
                        with contextlib.suppress(aiomqtt.MqttError):
                            await client.publish(self.state_topic, b"offline", qos=1, retain=True)
                        return
            except aiomqtt.MqttError as exc:
                self.log.warning(
                    "mqtt disconnected",
                    extra={"error": str(exc), "retry_within_s": round(delay, 2)},
                )
            except OSError as exc:  # TLS files, DNS
                self.log.warning("mqtt connect failed", extra={"error": str(exc)})
            finally:
                self.connected.clear()
                self.metrics.mqtt_connected.set(0)
                self.client = None
            if self._stop.is_set():
                await self.on_stop()
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(random.uniform(0, delay)):  # not wait_for: gh-86296
                    await self._stop.wait()
            delay = min(delay * 2, self.config.reconnect_max_s)

    async def _receive_until_stop(self, client: aiomqtt.Client) -> bool:
        """Receive until the connection fails (raises) or stop is asked (returns True)."""
        generation = self.generation

        async def receive() -> None:
            # What paho has already put in aiomqtt's queue is taken without a task and an
            # asyncio.wait per message (aiomqtt's iterator); it waits only when the queue is empty
            queue = internals.incoming_queue(client)
            iterator = aiter(client.messages)
            while True:
                try:
                    if queue is None:
                        raise asyncio.QueueEmpty
                    message = queue.get_nowait()
                except asyncio.QueueEmpty:
                    if self.drained_generation != generation:
                        # what the session held for us is processed: ChirpStack's events about
                        # a command are known before that command is published again
                        self.drained_generation = generation
                        if self.on_drained is not None:
                            self.on_drained()
                    message = await anext(iterator)
                await self.handler(message, generation)

        receiver = asyncio.create_task(receive(), name="mqtt-receive")
        stopper = asyncio.create_task(self._stop.wait(), name="mqtt-stop")
        again = asyncio.create_task(self._reconnect.wait(), name="mqtt-reconnect")
        tasks = (receiver, stopper, again)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if receiver in done and not receiver.cancelled():
            exc = receiver.exception()
            if exc is not None:
                raise exc
        if again in done and not self._stop.is_set():
            self._reconnect.clear()
            raise aiomqtt.MqttError("reconnecting so the broker sends what was not acknowledged")
        return self._stop.is_set()

    def reconnect(self) -> None:
        """Drop the connection and connect again: the broker then sends again every QoS 1
        message this session received and did not acknowledge (MQTT 3.1.1 §4.4, 5.0 §4.4)."""
        self._reconnect.set()

    def backlog_drained(self) -> bool:
        """Connected, and the messages the broker held for our session were processed."""
        return self.connected.is_set() and self.drained_generation == self.generation

    def stop(self) -> None:
        self._stop.set()

    def take_waiting(self, generation: int, limit: int) -> list[aiomqtt.Message]:
        """Up to ``limit`` messages of connection ``generation`` already received and waiting
        in the incoming queue, taken out of it in receive order (the handler processes them
        itself, before it returns: gateway/service.py claims their devices in one round trip).
        Empty where the queue is not reachable (gateway/mqtt_internals.py)."""
        client = self.client
        if client is None or generation != self.generation or limit <= 0:
            return []
        queue = internals.incoming_queue(client)
        taken: list[aiomqtt.Message] = []
        while queue is not None and len(taken) < limit and not queue.empty():
            taken.append(queue.get_nowait())
        return taken

    def pending_messages(self) -> int:
        client = self.client
        return len(client.messages) if client is not None else 0

    def _safe_url(self) -> str:
        url = urlsplit(self.config.url)
        return f"{url.scheme}://{url.hostname}:{url.port or ''}"  # never user:password

    # --- acks and publishing ---------------------------------------------------------------------

    def ack(self, generation: int, mid: int, qos: int) -> None:
        client = self.client
        if client is None or generation != self.generation or qos == 0:
            return  # another connection: the broker redelivers, dedup absorbs it
        internals.paho_client(client).ack(mid, qos)

    def ack_many(self, generation: int, mids: list[int]) -> None:
        """PUBACK the QoS 1 messages ``mids`` (in receive order) of connection ``generation``,
        as one write: paho sends each packet it queues with its own ``send()`` call."""
        client = self.client
        if client is None or generation != self.generation or not mids:
            return
        paho_client = internals.paho_client(client)
        queue = internals.packet_writer(paho_client)
        if queue is None:
            for mid in mids:
                paho_client.ack(mid, 1)
            return
        # MQTT 3.1.1 §3.4: PUBACK is 0x40, remaining length 2, the packet identifier; the same
        # 4 bytes in MQTT 5 (§3.4.2.1: a Success PUBACK without properties may omit the reason
        # code and the property length), as paho itself sends it on both
        queue(paho.PUBACK, b"".join([_PUBACK.pack(0x40, 2, mid) for mid in mids]), 0, 1)

    def send_retained_qos0(self, messages: list[tuple[str, bytes]]) -> bool:
        """Publish retained QoS 0 messages (twins) as one write; False (nothing written) when
        not connected."""
        client = self.client
        if client is None or not self.connected.is_set():
            return False
        paho_client = internals.paho_client(client)
        queue = internals.packet_writer(paho_client)
        if queue is None:
            for topic, payload in messages:
                paho_client.publish(topic, payload, 0, True)  # QoS 0: no packet identifier
            return True
        mqtt5 = paho_client.protocol == paho.MQTTv5
        chunk = b"".join(
            [_publish_qos0_retained(topic, payload, mqtt5=mqtt5) for topic, payload in messages]
        )
        # queued with qos 1 in paho's bookkeeping only: its QoS 0 PUBLISH path expects one
        # message per packet (a MessageInfo to complete); these need none, like a PUBACK
        queue(paho.PUBLISH, chunk, 0, 1)
        return True

    def backlogged(self) -> bool:
        """Whether paho still has bytes to write (its public ``want_write``): the outbox hands
        over the next chunk only when it has not, so paho's buffer stays one chunk deep."""
        client = self.client
        return client is not None and internals.paho_client(client).want_write()

    async def publish_qos1(
        self, topic: str, payload: bytes, retain: bool, *, timeout_s: float = 60.0
    ) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK. ``aiomqtt.MqttError`` when paho
        did not take it or the connection failed before the PUBACK (publish again then); a
        PUBACK slower than ``timeout_s`` on a connection that is still up returns: paho keeps
        the message and sends it again itself if needed (MQTT 3.1.1 §4.4), so publishing it
        a second time would only duplicate it."""
        client = self.client
        if client is None or not self.connected.is_set():
            raise aiomqtt.MqttError("not connected")
        generation = self.generation
        try:
            await client.publish(topic, payload, qos=1, retain=retain, timeout=timeout_s)
        except aiomqtt.MqttCodeError:
            raise  # refused by paho: not handed over
        except aiomqtt.MqttError:
            if self.generation == generation and self.connected.is_set():
                return
            raise

    async def publish_downlink(self, topic: str, payload: bytes) -> None:
        """Publish a ``command/down`` at QoS 1 and wait for the broker's PUBACK."""
        await self.connected.wait()
        client = self.client
        if client is None:
            raise aiomqtt.MqttError("not connected")
        await client.publish(topic, payload, qos=1)
