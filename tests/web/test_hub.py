"""The dashboard stream hub without a browser: the publisher tap, coalescing, backlog bound."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.config import PublishConfig
from gateway.publish import Publisher
from gateway.store.base import Device, EventRecord
from gateway.web import router


class FakeGateway:
    """What the stream reads from a gateway: its publisher, devices, clock and stop flag."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.publisher = Publisher(PublishConfig(), lambda t, p, q, r: self.sent.append((t, p)))
        self.devices: dict[str, Device] = {}
        self._stopping = asyncio.Event()

    def clock(self) -> float:
        return 1_772_446_542.0


def parse(raw: bytes) -> list[tuple[str, Any]]:
    out = []
    for block in raw.decode().split("\n\n"):
        kind = next((ln[7:] for ln in block.split("\n") if ln.startswith("event: ")), None)
        data = next((ln[6:] for ln in block.split("\n") if ln.startswith("data: ")), None)
        if kind and data:
            out.append((kind, json.loads(data)))
    return out


async def test_tap_keeps_mqtt_publishing_and_feeds_the_stream() -> None:
    gw: Any = FakeGateway()
    hub = router.hub_for(gw)
    assert router.hub_for(gw) is hub  # tapped once, however many apps are built
    device = Device(
        dev_eui="a84041000181c001", kind="bin", derived={"_samples": [[1, 2]], "full": True}
    )
    gw.devices[device.dev_eui] = device
    stream = router._stream(gw, hub, keepalive_s=60)
    hello = parse(await anext(stream))
    assert hello[0][0] == "hello" and hello[0][1]["devices"] == 1
    for _ in range(3):  # three twin updates of one device become one message
        gw.publisher.state(device)
    gw.publisher.event(EventRecord("bin_full", device.dev_eui, 5.0, {"fill_percent": 90}))
    messages = parse(await asyncio.wait_for(anext(stream), 5))
    assert [k for k, _ in messages] == ["event", "device"]
    assert messages[0][1]["type"] == "bin_full" and messages[0][1]["data"]["fill_percent"] == 90
    assert messages[1][1]["derived"] == {"full": True}  # rule scratch state stays inside
    topics = [t for t, _ in gw.sent]
    assert topics.count(f"citypack/devices/{device.dev_eui}/state") == 3
    assert "citypack/events/bin_full" in topics
    gw._stopping.set()
    assert [chunk async for chunk in stream] == []
    assert hub.subscribers == 0


async def test_a_slow_reader_is_told_what_it_missed() -> None:
    gw: Any = FakeGateway()
    hub = router.hub_for(gw)
    stream = router._stream(gw, hub, keepalive_s=60)
    await anext(stream)
    total = router._EVENT_BACKLOG + 25
    for i in range(total):
        gw.publisher.event(EventRecord("bin_pickup", "a84041000181c001", float(i), {}))
    messages = parse(await asyncio.wait_for(anext(stream), 5))
    assert messages[0] == ("lagged", {"dropped": 25})
    events = [doc for kind, doc in messages if kind == "event"]
    assert len(events) == router._EVENT_BACKLOG and events[-1]["at"] == total - 1
    assert hub.events_dropped == 25
    await stream.aclose()
    assert hub.subscribers == 0
