"""A 100,000-device drain through the outbox (issue 14, hole 7).

100,000 devices, unknown to the registry, send one uplink each while the gateway runs: it
publishes a retained state and a retained ``online`` per device and a ``device_discovered``
event per device. Before, every QoS 1 message went straight into paho, whose 16-bit packet
identifiers run out at 65,535 outstanding messages: paho refused the rest, the bridge's
10,000-deep queue took some and dropped the others, and the broker never got some devices'
availability. Now (gateway/outbox.py) the broker ends with every device's last state and
availability, and each event is either published or counted as dropped
(``citypack_publish_dropped_total{kind="event"}``, the outbox holds ``[mqtt] queue_size``
events); the gateway's memory stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from pathlib import Path

import aiomqtt
import httpx
import pytest

from protocol import codec
from tests.gateway import events as ev
from tests.helpers import procs
from tests.helpers.faults import gateway_config, rss_kb, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(900)]

COUNT = 100_000
QUEUE = 5_000


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def test_100k_device_drain_leaves_every_last_state_on_the_broker(tmp_path: Path) -> None:
    if procs.find_program("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    (tmp_path / "broker").mkdir()
    broker = procs.start_mosquitto(directory=tmp_path / "broker")
    app = str(uuid.uuid4())
    base = f"cp{uuid.uuid4().hex[:8]}"
    gw = gateway_config(
        tmp_path,
        broker.url,
        application_id=app,
        base_topic=base,
        mqtt_extra=f"queue_size = {QUEUE}\n",
        extra=f"[fleet]\nmax_auto_registered = {COUNT}\n",
    )
    devices = [f"c0de{i:012x}" for i in range(COUNT)]
    peak = 0
    try:
        gw.start()
        assert gw.process is not None
        await asyncio.to_thread(
            wait_until, lambda: httpx.get(f"{gw.url}/readyz").status_code == 200, "ready"
        )
        events_seen = 0
        quiet = logging.getLogger("tests.chirpstack")  # aiomqtt warns at every pending publish
        quiet.setLevel(logging.ERROR)
        async with aiomqtt.Client(
            broker.host, broker.port, identifier=f"cs-{uuid.uuid4().hex[:8]}", logger=quiet
        ) as chirpstack:
            await chirpstack.subscribe(f"{base}/events/#", qos=1)

            async def count_events() -> None:
                nonlocal events_seen
                async for _ in chirpstack.messages:
                    events_seen += 1

            counter = asyncio.create_task(count_events())
            for start in range(0, COUNT, 1000):  # bounded: 100 chunks of 1,000 publishes
                batch = []
                for i in range(start, start + 1000):
                    f_port, data = codec.encode(
                        "bin_status",
                        {"fill_percent": i % 101, "temperature_c": 15, "battery_percent": 80},
                    )
                    doc = ev.up(app, devices[i], f_cnt=1, f_port=f_port, data=data)
                    batch.append(
                        chirpstack.publish(ev.topic(app, devices[i], "up"), ev.dumps(doc), qos=1)
                    )
                await asyncio.gather(*batch)
                peak = max(peak, rss_kb(gw.process.pid))

            def metrics() -> str:
                return httpx.get(f"{gw.url}/metrics", timeout=30).text

            def drained() -> bool:
                text = metrics()
                return _metric(text, 'citypack_uplinks_total{outcome="processed"}') >= COUNT

            for _ in range(600):  # bounded: until every uplink is processed
                if await asyncio.to_thread(drained):
                    break
                peak = max(peak, rss_kb(gw.process.pid))
                await asyncio.sleep(0.5)
            assert await asyncio.to_thread(drained)

            def counts() -> tuple[float, float]:
                """(events dropped, events derived), read together: the outbox may still be
                publishing, and dropping, after every uplink is processed, so both are read
                again each time rather than once (the drop counter read once went stale)."""
                text = metrics()
                derived = sum(
                    float(v)
                    for v in re.findall(r"^citypack_derived_events_total\{.*\} (\S+)$", text, re.M)
                )
                return _metric(text, 'citypack_publish_dropped_total{kind="event"}'), derived

            for _ in range(600):  # bounded: every event published or counted as dropped
                dropped, derived = await asyncio.to_thread(counts)
                if events_seen + dropped >= derived:
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)  # anything published twice would show up now
            dropped, derived = await asyncio.to_thread(counts)
            assert derived >= COUNT  # at least one device_discovered per device
            counter.cancel()
            await asyncio.gather(counter, return_exceptions=True)
        assert events_seen + dropped == derived, (events_seen, dropped, derived)
        assert dropped <= derived - QUEUE  # the outbox held its queue_size of events at least

        # a client that comes later gets every device's retained state and availability
        states: dict[str, int] = {}
        online: set[str] = set()
        async with aiomqtt.Client(
            broker.host, broker.port, identifier=f"probe-{uuid.uuid4().hex[:8]}", timeout=120
        ) as probe:
            await probe.subscribe(
                [(f"{base}/devices/+/state", 0), (f"{base}/devices/+/availability", 0)]
            )

            async def collect() -> None:
                async for message in probe.messages:
                    dev = message.topic.value.split("/")[2]
                    assert isinstance(message.payload, bytes)
                    if message.topic.value.endswith("/state"):
                        states[dev] = json.loads(message.payload)["reported"]["fill_percent"]
                    elif message.payload == b"online":
                        online.add(dev)

            collector = asyncio.create_task(collect())
            for _ in range(1200):  # bounded: 100,000 retained messages of each kind
                if len(states) == COUNT and len(online) == COUNT:
                    break
                await asyncio.sleep(0.25)
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)
        assert len(online) == COUNT, COUNT - len(online)  # no availability overwritten
        assert len(states) == COUNT
        assert all(states[dev] == i % 101 for i, dev in enumerate(devices))
        assert peak < 600 * 1024, peak  # bounded (the README's 100k figure is ~160 MB)
        assert gw.terminate() == 0
    finally:
        gw.kill()
        broker.stop()
