"""``citypack/devices/{devEui}/set`` (issue 14, hole 4), against a real broker.

- off by default: the gateway does not subscribe, a ``set`` queues nothing;
- a retained ``set`` (left on the broker by anyone) is never applied: not at the first start,
  not at the second; the first start clears it and says so with ``command_rejected``;
- oversized, nested too deep, or not the command shape: ``command_rejected``, nothing queued.

Ordering barrier: every negative check is followed by an uplink published by the same client
after the ``set``; the broker delivers one client's messages in order (MQTT 3.1.1 §4.6), so once
that uplink is processed the ``set`` was seen (or never delivered).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from protocol import codec
from tests.gateway import events as ev
from tests.gateway.harness import (
    Clock,
    Running,
    make_config,
    mqtt_client,
    running_gateway,
    start,
    wait_for,
)
from tests.helpers.procs import Broker

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

LAMP = "a84041000182e0c1"
OVERRIDE = json.dumps({"message": "lamp_override", "fields": {"dim_level": 40}}).encode()


async def _uplink(client: Any, gw: Running, f_cnt: int, processed: int = 1) -> None:
    f_port, data = codec.encode("lamp_status", {"dim_level": 70, "active_power_w": 42})
    doc = ev.up(gw.app, LAMP, f_cnt=f_cnt, f_port=f_port, data=data)
    await client.publish(ev.topic(gw.app, LAMP, "up"), ev.dumps(doc), qos=1)
    await wait_for(lambda: gw.counter("processed") >= processed, f"uplink {f_cnt}")


async def _register(gw: Running) -> None:
    response = await gw.http.put(f"/api/v1/devices/{LAMP}", json={"kind": "lamp"})
    assert response.status_code == 200


async def test_set_is_off_by_default(mosquitto_broker: Broker, tmp_path: Path) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        await _register(gw)
        async with mqtt_client(mosquitto_broker) as (client, _):
            await client.publish(f"{gw.base}/devices/{LAMP}/set", OVERRIDE, qos=1)
            await _uplink(client, gw, 1)
        assert gw.gateway.commands.for_device(LAMP) == []


async def test_retained_set_is_never_applied_across_two_restarts(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    app = str(uuid.uuid4())
    base = f"cp{uuid.uuid4().hex[:8]}"
    set_topic = f"{base}/devices/{LAMP}/set"
    config = make_config(
        mosquitto_broker, tmp_path / "gateway.db", app=app, base=base, publish={"accept_set": True}
    )
    async with mqtt_client(mosquitto_broker, f"{base}/events/command_rejected") as (client, got):
        await client.publish(set_topic, OVERRIDE, qos=1, retain=True)  # left for the gateway
        rejected_before = 0
        for start_no in (1, 2):
            gw = await start(config, Clock(), app, base)
            try:
                if start_no == 1:
                    await _register(gw)
                await _uplink(client, gw, start_no)  # after the subscription: the barrier
                assert gw.gateway.commands.for_device(LAMP) == [], f"start {start_no}"
                if start_no == 1:
                    await wait_for(lambda: len(got) == 1, "the retained set refused")
                    assert "retained" in json.loads(got[0][1])["error"]
                    rejected_before = len(got)
            finally:
                await gw.stop()
        assert len(got) == rejected_before  # the second start found nothing left to refuse
    async with mqtt_client(mosquitto_broker, set_topic, f"{base}/barrier") as (probe, seen):
        await probe.publish(f"{base}/barrier", b"x", qos=1)
        await wait_for(lambda: any(t == f"{base}/barrier" for t, _ in seen), "barrier")
        assert [t for t, p in seen if t == set_topic and p] == []  # cleared on the broker


async def test_oversized_nested_and_malformed_sets_are_rejected(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(
        mosquitto_broker, tmp_path, publish={"accept_set": True}, mqtt={"max_event_bytes": 4096}
    ) as gw:
        await _register(gw)
        topic = f"{gw.base}/devices/{LAMP}/set"
        bad = [
            json.dumps(
                {"message": "lamp_override", "fields": {"dim_level": 40, "pad": "x" * 5000}}
            ).encode(),  # over max_event_bytes
            b"[" * 2000 + b"]" * 2000,  # a nesting bomb for the JSON parser
            json.dumps(
                {"message": "lamp_override", "fields": {"dim_level": {"a": {"b": [[[[1]]]]}}}}
            ).encode(),
            json.dumps({"message": "lamp_override", "fields": {"dim_level": {"x": 1}}}).encode(),
            json.dumps({"message": "lamp_override", "fields": [1]}).encode(),
            json.dumps({"set": {"message": "lamp_override"}}).encode(),
        ]
        async with mqtt_client(mosquitto_broker, f"{gw.base}/events/command_rejected") as (
            client,
            got,
        ):
            for payload in bad:
                await client.publish(topic, payload, qos=1)
            await _uplink(client, gw, 1)
            await wait_for(lambda: len(got) == len(bad), "one rejection per bad set")
        assert gw.gateway.commands.for_device(LAMP) == []
        errors = [json.loads(p)["error"] for _, p in got]
        assert "bytes > 4096" in errors[0] and "nested deeper" in errors[1]
        assert "nested deeper" in errors[2]
        dead = await gw.http.get("/api/v1/dead_letters")
        assert not [d for d in dead.json()["dead_letters"] if "internal error" in d["reason"]]
