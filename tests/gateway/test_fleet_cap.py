"""Unknown DevEUIs are registered up to ``[fleet] max_auto_registered`` (issue 14, hole 5).

5,000 devices the registry does not know send an uplink each against a cap of 1,000: the first
1,000 are auto-registered (kind ``unknown``), the other 4,000 uplinks are dead letters with
reason ``unknown_device_cap``, counted in ``citypack_unknown_devices_rejected_total``; the broker
holds at most 1,000 retained state topics. A redelivery makes no second dead letter, and
registering a device properly makes room for another unknown one. With ``auto_register = false``
every unknown device is a dead letter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.metrics import read
from protocol import codec
from tests.gateway import events as ev
from tests.gateway.harness import Running, mqtt_client, running_gateway, wait_for
from tests.helpers.procs import Broker

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]

UNKNOWN = [f"b0b0{i:012x}" for i in range(5000)]


def _up(gw: Running, dev: str, f_cnt: int = 1, dedup: str | None = None) -> tuple[str, bytes]:
    fields = {"fill_percent": 10, "temperature_c": 9, "battery_percent": 80}
    f_port, data = codec.encode("bin_status", fields)
    doc = ev.up(gw.app, dev, f_cnt=f_cnt, f_port=f_port, data=data, dedup=dedup)
    return ev.topic(gw.app, dev, "up"), ev.dumps(doc)


def _rejected(gw: Running, reason: str) -> float:
    return read(gw.gateway.metrics.unknown_rejected, reason=reason)


async def test_5000_unknown_devices_against_a_cap_of_1000(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(
        mosquitto_broker, tmp_path, fleet={"max_auto_registered": 1000}
    ) as gw:
        messages = [_up(gw, dev, dedup=f"dedup-{dev}") for dev in UNKNOWN]
        async with mqtt_client(mosquitto_broker) as (client, _):
            for topic, payload in messages:
                await client.publish(topic, payload, qos=1)
            await wait_for(
                lambda: gw.counter("processed") + _rejected(gw, "unknown_device_cap") == 5000,
                "5,000 uplinks handled",
                120,
            )
            # a redelivery of a refused uplink is a duplicate, not a second dead letter
            await client.publish(*messages[-1], qos=1)
            await wait_for(lambda: gw.counter("duplicate") == 1, "redelivery")
        await gw.gateway.flush()
        unknown = [d for d in gw.gateway.devices.values() if not d.registered]
        assert len(unknown) == 1000 and {d.dev_eui for d in unknown} == set(UNKNOWN[:1000])
        assert gw.counter("processed") == 1000
        assert _rejected(gw, "unknown_device_cap") == 4000
        stats = (await gw.http.get("/api/v1/stats")).json()
        assert stats["dead_letters"] == 4000 and stats["uplinks_stored"] == 1000
        letters = (await gw.http.get("/api/v1/dead_letters", params={"limit": 5000})).json()
        reasons = {d["reason"].split(":")[0] for d in letters["dead_letters"]}
        assert reasons == {"unknown_device_cap"}
        assert {d["dev_eui"] for d in letters["dead_letters"]} == set(UNKNOWN[1000:])
        metrics = (await gw.http.get("/metrics")).text
        assert 'citypack_unknown_devices_rejected_total{reason="unknown_device_cap"} 4000.0' in (
            metrics
        )

        # retained state topics on the broker: only for the devices let in
        state = f"{gw.base}/devices/+/state"
        async with mqtt_client(mosquitto_broker, state) as (probe, got):
            await wait_for(lambda: len(got) >= 1000, "retained states", 60)
            await probe.subscribe(f"{gw.base}/barrier", qos=1)
            await probe.publish(f"{gw.base}/barrier", b"x", qos=1)
            await wait_for(lambda: any(t.endswith("/barrier") for t, _ in got), "barrier")
        states = {t for t, p in got if t.endswith("/state") and p}
        assert len(states) == 1000

        # registering one makes room for one more unknown device
        response = await gw.http.put(f"/api/v1/devices/{UNKNOWN[0]}", json={"kind": "bin"})
        assert response.status_code == 200
        async with mqtt_client(mosquitto_broker) as (client, _):
            await client.publish(*_up(gw, UNKNOWN[1000], f_cnt=2), qos=1)
            await client.publish(*_up(gw, UNKNOWN[1001], f_cnt=2), qos=1)
            await wait_for(lambda: _rejected(gw, "unknown_device_cap") == 4001, "one more refused")
        assert UNKNOWN[1000] in gw.gateway.devices and UNKNOWN[1001] not in gw.gateway.devices


async def test_auto_register_off(mosquitto_broker: Broker, tmp_path: Path) -> None:
    async with running_gateway(mosquitto_broker, tmp_path, fleet={"auto_register": False}) as gw:
        known = "b0b1000000000001"
        assert (await gw.http.put(f"/api/v1/devices/{known}", json={"kind": "bin"})).status_code
        async with mqtt_client(mosquitto_broker) as (client, _):
            await client.publish(*_up(gw, "b0b1000000000002"), qos=1)
            join = ev.dumps(ev.join(gw.app, "b0b1000000000003"))
            await client.publish(ev.topic(gw.app, "b0b1000000000003", "join"), join, qos=1)
            await client.publish(*_up(gw, known), qos=1)
            await wait_for(lambda: gw.counter("processed") == 1, "the known device")
            await wait_for(lambda: _rejected(gw, "unknown_device") == 2, "uplink and join refused")
        assert set(gw.gateway.devices) == {known}
        letters = (await gw.http.get("/api/v1/dead_letters")).json()["dead_letters"]
        assert all(json.loads(bytes.fromhex(d["payload_hex"])) for d in letters)
        assert {d["reason"] for d in letters} == {"unknown_device: fleet.auto_register is off"}
