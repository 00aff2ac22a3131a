"""What waits to be published on the normalised topics: bounded, coalescing, never lost silently.

Issue 14 found that after draining 100,000 devices paho held exactly 65,535 outgoing QoS 1
messages. paho numbers them with a 16-bit packet identifier that wraps after 65,535
(``Client._mid_generate``); paho-mqtt 2.2 then refuses a message whose identifier is still taken
(``publish`` returns ``MQTT_ERR_QUEUE_SIZE``, it overwrites nothing). The old bridge put each
refused message in its 10,000-deep queue and dropped the rest: counted, logged at the 1st, 10th,
100th and every 1,000th, but the broker never got those devices' ``online`` (retained QoS 1),
while twins (QoS 0, no identifier) all arrived. Nothing bounded what was handed to paho.

The outbox sits between :class:`gateway.publish.Publisher` and :class:`gateway.bridge.Bridge`:

- **state** (``devices/{devEui}/state``, retained QoS 0) and every other **retained** topic
  (``availability``, Home Assistant discovery, the clearing of a retained ``set``) keep only the
  latest payload per topic: a newer one replaces the waiting one in place and is counted in
  ``citypack_publish_coalesced_total{kind}``. They are bounded by the number of topics (devices
  are capped by ``[fleet]``), and the broker ends with every device's last state;
- **events** (``events/{type}``, QoS 1) wait in a FIFO of at most ``[mqtt] queue_size``; past it
  the oldest is dropped, counted in ``citypack_publish_dropped_total{kind="event"}`` (and
  ``citypack_dropped_messages_total{queue="outbox"}``) and logged a few times a second at most.
  Each event is also in the store (``GET /api/v1/events``), so a dropped publish loses no data;
- the drain task hands twins to paho in chunks only while paho's write buffer is empty, and
  runs at most ``window`` QoS 1 publishes at once, each awaiting its PUBACK: at most ``window``
  packet identifiers are in use, so none is ever reused while taken. A publish cut off by a
  disconnect is retried after the reconnect (unless a newer payload for the topic superseded
  it): at least once, like the inbound side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

import aiomqtt

from gateway.logs import RateLimit
from gateway.metrics import Metrics

if TYPE_CHECKING:
    from gateway.bridge import Bridge

__all__ = ["KINDS", "STATES_BACKLOG", "Outbox"]

KINDS = ("state", "availability", "event", "retained")
_CHUNK = 1000  # twins per write
_BACKLOG_WAIT_S = 0.002  # while paho's buffer drains
STATES_BACKLOG = 2 * _CHUNK  # states waiting before a commit's flush waits for them


def _retained_kind(topic: str) -> str:
    return "availability" if topic.endswith("/availability") else "retained"


class Outbox:
    """``Outbox(bridge, max_events=..., window=..., metrics=..., logger=...)``; :meth:`send`
    and :meth:`send_retained` are the publisher's send functions, :meth:`run` the task."""

    def __init__(
        self,
        bridge: Bridge,
        *,
        max_events: int,
        metrics: Metrics,
        logger: logging.Logger,
        window: int = 64,
    ) -> None:
        self.bridge = bridge
        self.max_events = max_events
        self.window = window
        self.metrics = metrics
        self.log = logger.getChild("outbox")
        self._quiet = RateLimit(2.0)
        self._states: OrderedDict[str, bytes] = OrderedDict()  # retained QoS 0
        self._retained: OrderedDict[str, bytes] = OrderedDict()  # retained QoS 1
        self._events: deque[tuple[str, bytes]] = deque()  # QoS 1, in order
        self._wake = asyncio.Event()
        self._qos1_ready = asyncio.Event()
        self._busy = 0  # QoS 1 publishes awaiting their PUBACK
        self._coalesced = {k: metrics.publish_coalesced.labels(k) for k in KINDS}
        self._dropped = {k: metrics.publish_dropped.labels(k) for k in KINDS}
        self._dropped_outbox = metrics.dropped.labels("outbox")

    # --- the publisher's side --------------------------------------------------------------------

    def send(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Queue one message (``SendFn`` of :class:`gateway.publish.Publisher`)."""
        if retain and qos == 0:
            self._supersede(self._retained, topic)
            self._put(self._states, topic, payload, "state")
            self._wake.set()
        elif retain:
            self._supersede(self._states, topic)  # e.g. a state cleared (Publisher.clear)
            self._put(self._retained, topic, payload, _retained_kind(topic))
            self._qos1_ready.set()
        else:
            if len(self._events) >= self.max_events:
                dropped_topic, _ = self._events.popleft()
                self._dropped["event"].inc()
                self._dropped_outbox.inc()
                record = logging.makeLogRecord({})
                if self._quiet.filter(record):
                    self.log.warning(
                        "outbox full: oldest event dropped (it is in the store)",
                        extra={"topic": dropped_topic, "max_events": self.max_events},
                    )
            self._events.append((topic, payload))
            self._qos1_ready.set()

    def send_retained(self, messages: list[tuple[str, bytes]]) -> None:
        """Queue a batch's twins (``SendRetainedFn``)."""
        for topic, payload in messages:
            self._supersede(self._retained, topic)
            self._put(self._states, topic, payload, "state")
        self._wake.set()

    def _supersede(self, other: OrderedDict[str, bytes], topic: str) -> None:
        """A retained topic's newer message at the other QoS replaces the one waiting there,
        so the two cannot go out in the wrong order."""
        if other.pop(topic, None) is not None:
            self._coalesced["state" if topic.endswith("/state") else "retained"].inc()

    def _put(self, table: OrderedDict[str, bytes], topic: str, payload: bytes, kind: str) -> None:
        if topic in table:
            self._coalesced[kind].inc()  # the waiting payload is superseded; position kept
        table[topic] = payload

    async def wait_states_below(self, limit: int, timeout_s: float = 1.0) -> None:
        """While connected, wait up to ``timeout_s`` for the waiting states to be ``limit`` or
        fewer. The gateway calls it after each commit: processing that outruns publishing
        holds its next batch (its messages wait unacknowledged at the broker) instead of a
        payload per device here. Draining 1.2 million uplinks of 100,000 devices without it,
        100,000 states (one per device) waited at once and RSS reached 351 MB
        (tools/bench/gateway_throughput.py, issue 17)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self._states) > limit and self.bridge.connected.is_set():
            if asyncio.get_running_loop().time() >= deadline:
                return
            await asyncio.sleep(_BACKLOG_WAIT_S)  # the drain task runs meanwhile

    def pending(self) -> int:
        """Messages waiting or awaiting their PUBACK."""
        return len(self._states) + len(self._retained) + len(self._events) + self._busy

    # --- the drain -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Hand what waits to the bridge while connected (the task named ``publish``)."""
        async with asyncio.TaskGroup() as group:
            for index in range(self.window):
                group.create_task(self._qos1_worker(), name=f"publish-qos1-{index}")
            while True:
                if not self._states:
                    self._wake.clear()
                    await self._wake.wait()
                await self.bridge.connected.wait()
                await self._write_states()

    async def _write_states(self) -> None:
        while self._states:
            while self.bridge.backlogged():  # noqa: ASYNC110 - paho offers no event for it
                await asyncio.sleep(_BACKLOG_WAIT_S)  # paho writes when the socket takes it
            count = min(_CHUNK, len(self._states))
            chunk = [self._states.popitem(last=False) for _ in range(count)]
            if not self.bridge.send_retained_qos0(chunk):
                for topic, payload in reversed(chunk):  # not connected: back, unless newer
                    if topic not in self._states:
                        self._states[topic] = payload
                        self._states.move_to_end(topic, last=False)
                return
            await asyncio.sleep(0)  # let paho's writer and the uplink path run
        # drained: a new, empty table. A dict never shrinks as items are popped, so the one
        # that took every device's first state or ``online`` (100,000 at city scale) would
        # stay that size for good (issue 17: several MB, tools/bench/gateway_throughput_memory.py)
        self._states = OrderedDict()

    def _take_qos1(self) -> tuple[str, bytes, bool] | None:
        if self._events:  # derived events first: alarms are what people wait for
            topic, payload = self._events.popleft()
            return topic, payload, False
        if self._retained:
            topic, payload = self._retained.popitem(last=False)
            if not self._retained:
                self._retained = OrderedDict()  # drained: a new table (_write_states)
            return topic, payload, True
        return None

    async def _qos1_worker(self) -> None:
        while True:
            item = self._take_qos1()
            if item is None:
                self._qos1_ready.clear()
                await self._qos1_ready.wait()
                continue
            self._busy += 1
            try:
                await self._publish(*item)
            finally:
                self._busy -= 1

    async def _publish(self, topic: str, payload: bytes, retain: bool) -> None:
        while True:
            await self.bridge.connected.wait()
            try:
                await self.bridge.publish_qos1(topic, payload, retain)
                return
            except aiomqtt.MqttError:
                if retain and topic in self._retained:
                    return  # superseded while it was out: the newer one goes instead
                # the connection failed under it: again after the reconnect (at least once)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):  # not wait_for: CPython gh-86296
                        await self._disconnected()

    async def _disconnected(self) -> None:
        while self.bridge.connected.is_set():  # noqa: ASYNC110 - the bridge has no such event
            await asyncio.sleep(0.05)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Before a graceful disconnect: wait (bounded) until everything went out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._wake.set()
        self._qos1_ready.set()
        while self.pending() and loop.time() < deadline:  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.01)
        if self.pending():
            self.log.warning("stopping with messages not published", extra={"n": self.pending()})
