"""The dashboard stream hub without a browser: the publisher listener, coalescing, backlog bound."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api import create_app
from gateway.config import PublishConfig, parse_config
from gateway.errors import ConfigError
from gateway.publish import Publisher
from gateway.service import Gateway
from gateway.store.base import Device, EventRecord
from gateway.web import router


class FakeGateway:
    """What the stream reads from a gateway: its publisher, devices, clock and stop flag."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.publisher = Publisher(PublishConfig(), lambda t, p, q, r: self.sent.append((t, p)))
        self.devices: dict[str, Device] = {}
        self.stopping = False

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


async def test_listener_keeps_mqtt_publishing_and_feeds_the_stream() -> None:
    gw: Any = FakeGateway()
    hub = router.hub_for(gw)
    assert router.hub_for(gw) is hub  # one listener, however many apps are built
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
    gw.publisher.states([(device, b"{}")])  # a batch's twins reach the stream too
    gw.publisher.availability(device)
    messages = parse(await asyncio.wait_for(anext(stream), 5))
    assert [k for k, _ in messages] == ["event", "device"]
    assert messages[0][1]["type"] == "bin_full" and messages[0][1]["data"]["fill_percent"] == 90
    assert messages[1][1]["derived"] == {"full": True}  # rule scratch state stays inside
    topics = [t for t, _ in gw.sent]
    assert topics.count(f"citypack/devices/{device.dev_eui}/state") == 4  # 3 state + 1 states
    assert "citypack/events/bin_full" in topics
    gw.stopping = True
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


def _app(tmp_path: Path, **web: Any) -> Any:
    config = parse_config(
        {"mqtt": {"url": "mqtt://127.0.0.1:1"}, "store": {"url": f"sqlite:///{tmp_path}/g.db"}}
        | ({"web": web} if web else {}),
        environ={},
    )
    return create_app(Gateway(config, api_token="t0ken"))


async def test_dashboard_config_switches_and_tile_origin(tmp_path: Path) -> None:
    app = _app(tmp_path, tile_url="https://tiles.example.org/{z}/{x}/{y}.png")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
        page = await http.get("/")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert (
            "img-src 'self' data: blob: https://tiles.example.org;"
            in (page.headers["content-security-policy"])
        )
        web = await http.get("/api/v1/web/config", headers={"Authorization": "Bearer t0ken"})
        assert web.json()["tile_url"] == "https://tiles.example.org/{z}/{x}/{y}.png"
    off = _app(tmp_path, enabled=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(off), base_url="http://t") as http:
        assert (await http.get("/")).status_code == 404
        stream = await http.get("/api/v1/stream", headers={"Authorization": "Bearer t0ken"})
        assert stream.status_code == 404


def test_tile_url_must_be_an_xyz_template() -> None:
    with pytest.raises(ConfigError, match=r"web\.tile_url"):
        parse_config(
            {"mqtt": {"url": "mqtt://h"}, "web": {"tile_url": "https://t.example.org/tiles.png"}},
            environ={},
        )


def test_the_publisher_is_watched_while_a_page_is_open() -> None:
    """With several instances, the change feed reads another instance's device changes at
    once only while someone watches (gateway/fleet_sync.py): the hub says so while a stream
    is open; a listener that does not say (a test's, a future one) always counts."""
    gateway = FakeGateway()
    assert not gateway.publisher.watched()  # no listener
    hub = router.hub_for(gateway)  # type: ignore[arg-type]
    assert not gateway.publisher.watched()  # a hub, but no page open
    sub = hub.subscribe()
    assert gateway.publisher.watched()
    hub.unsubscribe(sub)
    assert not gateway.publisher.watched()

    class Plain:
        def event(self, record: EventRecord) -> None: ...

        def device(self, device: Device) -> None: ...

    gateway.publisher.add_listener(Plain())
    assert gateway.publisher.watched()
