"""ARCHITECTURE.md invariant 4: at most one downlink per device waits in ChirpStack's queue,
under any interleaving of submit, publish (PUBACK or failure), txack, ack, nack, log events,
expiry and restart.

The gateway runs for real (``Gateway.process`` for every event, ``Gateway._dispatch_one`` for
every dispatch, a SQLite file store) against a model of ChirpStack's device queue
(reference: ChirpStack ``storage/device_queue.rs``, ``downlink/tx_ack.rs``; summarised in
gateway/commands.py): an item enters the queue the moment the broker forwards the publish, which
can be before the gateway sees the PUBACK; unconfirmed items leave at txack, confirmed ones at
ack/nack; an item past ``expiresAt`` is never delivered (ChirpStack drops it with a ``log``
``EXPIRED`` at its next scheduling pass); ``DOWNLINK_PAYLOAD_SIZE`` deletes the item; the
queue-item id is the table's primary key, so a second command with the same ``id`` is refused.
Events reach the gateway in any order (ChirpStack gives no ordering between event types).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.config import parse_config
from gateway.service import Gateway
from tests.gateway import events as ev

APP = "0b8e3c2a-7d61-4f0e-9b8e-5c1d2a3f4e5d"
LAMPS = ("a84041000181d0b1", "a84041000181d0b2")
TIMEOUT_S = 600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_772_446_542.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Item:
    """One row of ChirpStack's ``device_queue_item`` table."""

    id: str
    confirmed: bool
    expires_at: float | None
    pending: bool = False  # confirmed and sent: waits for the ack


class ChirpStackQueue:
    """ChirpStack's side: the device queues and the events it emits (delivered in any order)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.queues: dict[str, list[Item]] = {dev: [] for dev in LAMPS}
        self.events: list[tuple[str, bytes]] = []  # in the broker, for the gateway's session

    def enqueue(self, topic: str, payload: bytes) -> bool:
        dev_eui = topic.split("/")[3]
        doc = json.loads(payload)
        queue = self.queues[dev_eui]
        if any(item.id == doc["id"] for item in queue):
            return False  # the id is the primary key: a repeated publish adds nothing
        expires = doc.get("expiresAt")
        expires_at = datetime.fromisoformat(expires).timestamp() if expires else None
        queue.append(Item(doc["id"], bool(doc.get("confirmed")), expires_at))
        return True

    def deliverable(self, dev_eui: str) -> list[Item]:
        now = self.clock()
        return [i for i in self.queues[dev_eui] if i.expires_at is None or i.expires_at > now]

    def emit(self, dev_eui: str, event: str, doc: dict[str, Any]) -> None:
        self.events.append((ev.topic(APP, dev_eui, event), ev.dumps(doc)))

    def txack(self, dev_eui: str) -> None:
        items = self.deliverable(dev_eui)
        if not items or items[0].pending:
            return
        item = items[0]
        if item.confirmed:
            item.pending = True
        else:
            self.queues[dev_eui].remove(item)
        self.emit(dev_eui, "txack", ev.txack(APP, dev_eui, item.id))

    def ack(self, dev_eui: str, acknowledged: bool) -> None:
        items = self.queues[dev_eui]
        if not items or not items[0].pending:
            return
        item = items.pop(0)
        self.emit(dev_eui, "ack", ev.ack(APP, dev_eui, item.id, acknowledged=acknowledged))

    def expire(self, dev_eui: str) -> None:
        now = self.clock()
        for item in list(self.queues[dev_eui]):
            if item.expires_at is not None and item.expires_at <= now:
                self.queues[dev_eui].remove(item)
                context = {"queue_item_id": item.id}
                self.emit(dev_eui, "log", ev.log(APP, dev_eui, "EXPIRED", context))

    def too_large(self, dev_eui: str) -> None:
        items = self.deliverable(dev_eui)
        if not items or items[0].pending:
            return
        item = items[0]
        self.queues[dev_eui].remove(item)
        context = {"queue_item_id": item.id, "max_payload_size": "11", "item_size": "20"}
        self.emit(dev_eui, "log", ev.log(APP, dev_eui, "DOWNLINK_PAYLOAD_SIZE", context))

    def gateway_error(self, dev_eui: str) -> None:
        items = self.deliverable(dev_eui)
        if items:  # the item stays queued for a retry
            context = {"queue_item_id": items[0].id}
            self.emit(dev_eui, "log", ev.log(APP, dev_eui, "DOWNLINK_GATEWAY", context))


class Broker:
    """The publish side of the bridge: a publish reaches ChirpStack before its PUBACK returns."""

    def __init__(self, chirpstack: ChirpStackQueue) -> None:
        self.chirpstack = chirpstack
        self.in_flight: list[tuple[str, str, bool, asyncio.Future[None]]] = []

    async def publish_downlink(self, topic: str, payload: bytes) -> None:
        added = self.chirpstack.enqueue(topic, payload)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.in_flight.append((topic, json.loads(payload)["id"], added, future))
        await future


class Harness:
    """A gateway on a SQLite file, restartable, with the broker and ChirpStack modelled."""

    def __init__(self, directory: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.chirpstack = ChirpStackQueue(self.clock)
        self.broker = Broker(self.chirpstack)
        self.config = parse_config(
            {
                "mqtt": {"url": "mqtt://127.0.0.1:1", "application_id": APP},
                "store": {"url": f"sqlite:///{directory / 'gateway.db'}"},
                "commands": {"timeout_s": TIMEOUT_S},
            },
            environ={},
        )
        self.tasks: list[asyncio.Task[None]] = []
        self.gateway = self._open()
        for dev_eui in LAMPS:
            self.gateway.upsert_device(dev_eui, {"kind": "lamp"})
        self.run(self.gateway.flush())

    def _open(self) -> Gateway:
        gateway = Gateway(self.config, clock=self.clock)
        gateway.bridge.publish_downlink = self.broker.publish_downlink  # type: ignore[method-assign]
        self.run(gateway.open())
        return gateway

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def settle(self) -> None:
        """Let every task run until it waits for a PUBACK or ends (a commit on the store's
        writer thread included)."""
        for _ in range(20):
            self.run(asyncio.sleep(0))
            self.wait_for_commit()
        for task in [t for t in self.tasks if t.done()]:
            self.tasks.remove(task)
            task.result()  # a dispatch that raised fails the test

    def wait_for_commit(self) -> None:
        for _ in range(10_000):  # bounded: a commit here takes milliseconds
            if not self.gateway.store.committing:  # type: ignore[attr-defined]
                return
            self.run(asyncio.sleep(0.001))
        raise AssertionError("the store's commit did not end")

    def dispatch(self, dev_eui: str) -> None:
        self.tasks.append(self.loop.create_task(self.gateway._dispatch_one(dev_eui)))
        self.settle()

    def puback(self, *, ok: bool = True, reached: bool = True) -> None:
        topic, item_id, added, future = self.broker.in_flight.pop(0)
        if ok:
            future.set_result(None)
        else:
            if not reached and added:  # the connection dropped before the broker had it
                # (unless ChirpStack already sent it: then it did arrive)
                queue = self.chirpstack.queues[topic.split("/")[3]]
                queue[:] = [item for item in queue if item.id != item_id or item.pending]
            future.set_exception(aiomqtt.MqttError("connection lost"))
        self.settle()

    def deliver(self, index: int) -> None:
        topic, raw = self.chirpstack.events.pop(index)
        self.run(self.gateway.process(topic, raw))
        self.run(self.gateway.flush())
        self.settle()

    def restart(self) -> None:
        """A crash: tasks die, what was staged but not committed is lost, in-flight publishes
        stay wherever they got to (here: ChirpStack has them). The broker then hands the new
        process its session's backlog, the events ChirpStack published before, and only then
        does it publish again what it was publishing when it died (gateway/commands.py: the
        one case MQTT cannot cover is a repeat racing the txack of its first copy)."""
        for task in self.tasks:
            task.cancel()
        for _ in range(3):
            self.run(asyncio.sleep(0))
        self.wait_for_commit()  # a crash lands before or after a transaction, never inside
        self.tasks.clear()
        self.broker.in_flight.clear()
        self.gateway.store.db.close()  # uncommitted work is gone
        self.gateway = self._open()
        while self.chirpstack.events:
            self.deliver(0)

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for _ in range(3):
            self.loop.run_until_complete(asyncio.sleep(0))
        self.run(self.gateway.close())
        self.loop.close()

    def commands(self, dev_eui: str) -> list[Any]:
        return self.gateway.commands.for_device(dev_eui)


# one device: the invariant is per device, and a second one only dilutes the interleavings
dev = st.just(LAMPS[0])


class OneDownlinkPerDevice(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.h = Harness(Path(self.directory.name))

    def teardown(self) -> None:
        self.h.close()
        self.directory.cleanup()

    # the same message twice is what replacement acts on, so lamp_override comes most often
    @rule(
        dev_eui=dev,
        message=st.sampled_from(["lamp_override", "lamp_override", "reboot"]),
        confirmed=st.booleans(),
    )
    def submit(self, dev_eui: str, message: str, confirmed: bool) -> None:
        fields = {"dim_level": 100} if message == "lamp_override" else {}
        self.h.gateway.submit_command(dev_eui, message, fields, confirmed=confirmed)

    @rule(dev_eui=dev)
    def dispatch(self, dev_eui: str) -> None:
        self.h.dispatch(dev_eui)

    @precondition(lambda self: self.h.broker.in_flight)
    @rule()
    def puback(self) -> None:
        self.h.puback()

    @precondition(lambda self: self.h.broker.in_flight)
    @rule(reached=st.booleans())
    def publish_fails(self, reached: bool) -> None:
        self.h.puback(ok=False, reached=reached)

    @rule(dev_eui=dev)
    def chirpstack_txack(self, dev_eui: str) -> None:
        self.h.chirpstack.txack(dev_eui)

    @rule(dev_eui=dev, acknowledged=st.booleans())
    def chirpstack_ack_or_nack(self, dev_eui: str, acknowledged: bool) -> None:
        self.h.chirpstack.ack(dev_eui, acknowledged)

    @rule(dev_eui=dev)
    def chirpstack_payload_size_log(self, dev_eui: str) -> None:
        self.h.chirpstack.too_large(dev_eui)

    @rule(dev_eui=dev)
    def chirpstack_gateway_error_log(self, dev_eui: str) -> None:
        self.h.chirpstack.gateway_error(dev_eui)

    @rule(dev_eui=dev)
    def chirpstack_expiry_log(self, dev_eui: str) -> None:
        self.h.chirpstack.expire(dev_eui)

    @precondition(lambda self: self.h.chirpstack.events)
    @rule(data=st.data())
    def deliver_event(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.h.chirpstack.events) - 1))
        self.h.deliver(index)

    @rule(seconds=st.sampled_from([1.0, TIMEOUT_S / 2, TIMEOUT_S + 1]))
    def time_passes_and_gateway_expires(self, seconds: float) -> None:
        self.h.clock.now += seconds
        self.h.gateway.tick()
        self.h.run(self.h.gateway.flush())
        self.h.settle()

    @rule()
    def restart(self) -> None:
        self.h.restart()

    @invariant()
    def at_most_one_downlink_per_device_in_chirpstack(self) -> None:
        for dev_eui in LAMPS:
            items = self.h.chirpstack.deliverable(dev_eui)
            assert len(items) <= 1, (dev_eui, items)

    @invariant()
    def nothing_replaced_was_handed_over(self) -> None:
        gateway = self.h.gateway
        for dev_eui in LAMPS:
            for item in self.h.chirpstack.deliverable(dev_eui):
                command = self.h.run(gateway.store.get_command(item.id))
                active = gateway.commands.active.get(item.id)
                state = (active or command).state if (active or command) else "unknown"
                assert state != "replaced", (dev_eui, item)


OneDownlinkPerDevice.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOneDownlinkPerDevice = OneDownlinkPerDevice.TestCase


def test_two_commands_back_to_back_leave_one_in_chirpstack(tmp_path: Path) -> None:
    """The defect as found: a presence boost while the previous boost's PUBACK is on its way."""
    h = Harness(tmp_path)
    try:
        lamp = LAMPS[0]
        first = h.gateway.submit_command(lamp, "lamp_override", {"dim_level": 100})
        h.dispatch(lamp)  # publishing: ChirpStack has it, the PUBACK is on its way
        second = h.gateway.submit_command(lamp, "lamp_override", {"dim_level": 100})
        h.puback()
        h.dispatch(lamp)
        assert len(h.chirpstack.queues[lamp]) == 1
        assert first.state == "queued" and first.published_at is not None
        assert second.state == "queued" and second.published_at is None
        h.chirpstack.txack(lamp)  # the first leaves ChirpStack's queue (confirmed: pending)
        h.chirpstack.ack(lamp, True)
        while h.chirpstack.events:
            h.deliver(0)
        h.dispatch(lamp)  # now the second goes out
        assert [i.id for i in h.chirpstack.queues[lamp]] == [second.id]
    finally:
        h.close()
