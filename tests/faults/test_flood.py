"""A flood of malformed MQTT messages with good uplinks interleaved (issue 8).

ChirpStack's topics get malformed events at full speed (QoS 0, what a misbehaving integration or
an attacker with broker access would send): bytes that are not JSON, JSON of the wrong shape,
events of unknown types, oversized documents, and well-formed events whose payload does not
decode. One good uplink (QoS 1) is interleaved every 50 messages. The gateway process stays up,
counts every bad message in ``citypack_uplinks_total{outcome="invalid_event"|"undecodable"}``,
and stores every good uplink exactly once.

`make test` sends 20,000 messages; the soak variant sends 100,000.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from collections import Counter
from pathlib import Path

import aiomqtt
import httpx
import pytest

from protocol import codec
from tests.gateway.events import dumps, up
from tests.helpers import procs
from tests.helpers.faults import gateway_config, stored_dedup_ids, uplink_stream, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]

DEVICES = [f"a840410001c{i:05x}" for i in range(50)]
_METRIC = re.compile(r'^citypack_uplinks_total\{outcome="(\w+)"\} ([0-9.e+]+)$', re.M)


def _bad_messages(app: str, count: int, seed: int) -> tuple[list[tuple[str, bytes]], Counter[str]]:
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    expected: Counter[str] = Counter()
    good_data = codec.encode("bin_status", {"fill_percent": 1, "temperature_c": 1,
                                            "battery_percent": 85})[1]  # fmt: skip
    for i in range(count):
        dev = DEVICES[i % len(DEVICES)]
        topic = f"application/{app}/device/{dev}/event/up"
        kind = i % 6
        if kind == 0:
            payload = rng.randbytes(rng.randrange(1, 80))
            if payload[:1] in (b"{", b"[", b'"') or payload.strip()[:1].isdigit():
                payload = b"\xff" + payload
            expected["invalid_event"] += 1
        elif kind == 1:
            payload = json.dumps(rng.choice([[], 1, "x", None, {"fCnt": "many"}])).encode()
            expected["invalid_event"] += 1
        elif kind == 2:
            topic = f"application/{app}/device/{dev}/event/bogus{i % 3}"
            payload = b"{}"
            expected["invalid_event"] += 1
        elif kind == 3:
            payload = b'{"x": "' + b"a" * 70_000 + b'"}'  # > max_event_bytes (64 KiB)
            expected["invalid_event"] += 1
        else:
            data = bytearray(good_data)
            data[0] = rng.choice([0x00, 0x1F, 0xFF, 0x5B])  # not a CBOR map
            doc = up(app, dev, f_cnt=10_000_000 + i, f_port=10, data=bytes(data))
            payload = dumps(doc)
            expected["undecodable"] += 1
        out.append((topic, payload))
    return out, expected


def _counts(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {outcome: float(value) for outcome, value in _METRIC.findall(text)}


async def _flood(tmp_path: Path, total: int) -> None:
    if procs.find_program("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    (tmp_path / "broker").mkdir()
    broker = procs.start_mosquitto(directory=tmp_path / "broker")
    app = str(uuid.uuid4())
    gw = gateway_config(
        tmp_path, broker.url, application_id=app, base_topic=f"cp{uuid.uuid4().hex[:8]}"
    )
    good_every = 50
    good = uplink_stream(app, DEVICES, total // good_every)
    bad, expected = _bad_messages(app, total - len(good), seed=total)
    try:
        gw.start()
        await asyncio.to_thread(
            wait_until, lambda: httpx.get(f"{gw.url}/readyz").status_code == 200, "ready"
        )
        async with aiomqtt.Client(
            broker.host, broker.port, identifier=f"flood-{uuid.uuid4().hex[:6]}",
            max_queued_outgoing_messages=None,
        ) as chirpstack:  # fmt: skip
            g = 0
            for i, (topic, payload) in enumerate(bad):
                await chirpstack.publish(topic, payload, qos=0)
                if i % good_every == 0 and g < len(good):
                    await chirpstack.publish(good[g][0], good[g][1], qos=1)
                    g += 1
            for topic, payload, _ in good[g:]:
                await chirpstack.publish(topic, payload, qos=1)

        def all_counted() -> bool:
            counts = _counts(gw.url)
            return (
                counts.get("processed", 0) >= len(good)
                and counts.get("invalid_event", 0) >= expected["invalid_event"]
                and counts.get("undecodable", 0) >= expected["undecodable"]
            )

        await asyncio.to_thread(wait_until, all_counted, "every message counted", 400)
        counts = _counts(gw.url)
        assert counts["processed"] == len(good)
        assert counts["duplicate"] == 0
        assert counts["invalid_event"] == expected["invalid_event"]
        assert counts["undecodable"] == expected["undecodable"]
        assert gw.process is not None and gw.process.poll() is None  # still up
        ready = await asyncio.to_thread(httpx.get, f"{gw.url}/readyz", timeout=10)
        assert ready.status_code == 200
        assert gw.terminate() == 0
        stored = stored_dedup_ids(tmp_path / "gateway.db")
        assert sorted(stored) == sorted(dedup for _, _, dedup in good)
    finally:
        gw.kill()
        broker.stop()


async def test_flood_of_malformed_messages_20k(tmp_path: Path) -> None:
    await _flood(tmp_path, 20_000)


@pytest.mark.soak
async def test_flood_of_malformed_messages_100k_soak(tmp_path: Path) -> None:
    await _flood(tmp_path, 100_000)
