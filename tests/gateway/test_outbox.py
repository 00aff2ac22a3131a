"""gateway.outbox without a broker: coalescing per retained topic, bounded events with counted
drops, at most ``window`` QoS 1 publishes out at once, retries after a lost connection."""

from __future__ import annotations

import asyncio
import logging

import aiomqtt

from gateway.metrics import Metrics, read
from gateway.outbox import Outbox


class FakeBridge:
    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.generation = 1
        self.states: list[tuple[str, bytes]] = []
        self.qos1: list[tuple[str, bytes, bool]] = []
        self.out = 0
        self.most_out = 0
        self.release = asyncio.Event()
        self.fail_once: set[str] = set()

    def send_retained_qos0(self, messages: list[tuple[str, bytes]]) -> bool:
        if not self.connected.is_set():
            return False
        self.states.extend(messages)
        return True

    def backlogged(self) -> bool:
        return False

    async def publish_qos1(self, topic: str, payload: bytes, retain: bool) -> None:
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        try:
            await self.release.wait()
            if topic in self.fail_once:
                self.fail_once.discard(topic)
                raise aiomqtt.MqttError("connection lost")
            self.qos1.append((topic, payload, retain))
        finally:
            self.out -= 1


def _outbox(bridge: FakeBridge) -> Outbox:
    return Outbox(
        bridge,  # type: ignore[arg-type]
        max_events=10,
        metrics=Metrics(),
        logger=logging.getLogger("test"),
    )


def _value(metrics: Metrics, counter: str, kind: str) -> float:
    return read(getattr(metrics, counter), kind=kind)


async def test_coalesces_bounds_and_drains() -> None:
    bridge = FakeBridge()
    metrics = Metrics()
    outbox = Outbox(
        bridge,  # type: ignore[arg-type]
        max_events=3,
        metrics=metrics,
        logger=logging.getLogger("test"),
        window=4,
    )
    for i in range(10):  # while disconnected: only the latest per topic waits
        outbox.send_retained([("c/devices/a/state", b"%d" % i), ("c/devices/b/state", b"x")])
        outbox.send("c/devices/a/availability", b"online" if i % 2 else b"offline", 1, True)
    for i in range(5):
        outbox.send(f"c/events/e{i}", b"{}", 1, False)
    assert _value(metrics, "publish_coalesced", "state") == 18
    assert _value(metrics, "publish_coalesced", "availability") == 9
    assert _value(metrics, "publish_dropped", "event") == 2  # the two oldest
    assert read(metrics.dropped, queue="outbox") == 2
    assert outbox.pending() == 2 + 1 + 3
    bridge.fail_once.add("c/events/e3")
    task = asyncio.create_task(outbox.run())
    try:
        bridge.connected.set()
        for _ in range(100):
            await asyncio.sleep(0)
        assert sorted(bridge.states) == [("c/devices/a/state", b"9"), ("c/devices/b/state", b"x")]
        assert bridge.out == 4 and bridge.most_out == 4  # the window, not more
        for i in range(20):  # more while the window is full
            outbox.send("c/devices/z/availability", b"%d" % i, 1, True)
        bridge.release.set()
        await asyncio.wait_for(outbox.drain(5.0), 10)
        assert outbox.pending() == 0
        topics = [t for t, _, _ in bridge.qos1]
        assert sorted(t for t in topics if "/events/" in t) == [
            "c/events/e2",
            "c/events/e3",
            "c/events/e4",
        ]
        assert ("c/devices/a/availability", b"online", True) in bridge.qos1
        assert [p for t, p, _ in bridge.qos1 if t.endswith("z/availability")][-1] == b"19"
        assert bridge.most_out <= 4
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_drained_tables_do_not_keep_their_peak_size() -> None:
    """A dict never shrinks as items are popped: after every device's first state and
    ``online`` went out, the tables are new ones (issue 17: MBs at 100,000 devices)."""
    import sys

    bridge = FakeBridge()
    outbox = _outbox(bridge)
    empty = sys.getsizeof(outbox._states)
    outbox.send_retained([(f"c/devices/{i}/state", b"{}") for i in range(5000)])
    for i in range(5000):
        outbox.send(f"c/devices/{i}/availability", b"online", 1, True)
    assert sys.getsizeof(outbox._states) > 50 * empty  # the precondition: peak-sized tables
    assert sys.getsizeof(outbox._retained) > 50 * empty
    bridge.release.set()
    task = asyncio.create_task(outbox.run())
    try:
        bridge.connected.set()
        await asyncio.wait_for(outbox.drain(5.0), 10)
        assert outbox.pending() == 0 and len(bridge.states) == 5000 and len(bridge.qos1) == 5000
        assert sys.getsizeof(outbox._states) <= empty
        assert sys.getsizeof(outbox._retained) <= empty
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_flush_waits_for_the_states_to_catch_up_while_connected() -> None:
    bridge = FakeBridge()
    outbox = _outbox(bridge)
    outbox.send_retained([(f"c/devices/{i}/state", b"{}") for i in range(3000)])
    # disconnected: nothing can drain, so nothing waits (the states stay for the reconnect)
    await asyncio.wait_for(outbox.wait_states_below(100, timeout_s=30.0), 1.0)
    assert outbox.pending() == 3000
    bridge.connected.set()
    # connected, and no drain task yet: the wait ends at its timeout, not before
    loop = asyncio.get_running_loop()
    started = loop.time()
    await outbox.wait_states_below(100, timeout_s=0.2)
    assert loop.time() - started >= 0.2 and outbox.pending() == 3000
    task = asyncio.create_task(outbox.run())
    try:  # with the drain running, it returns once at most the limit waits
        await asyncio.wait_for(outbox.wait_states_below(100, timeout_s=30.0), 10)
        assert len(outbox._states) <= 100 and len(bridge.states) >= 2900
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
