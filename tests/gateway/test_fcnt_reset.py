"""Redelivery or frame-counter reset (issue 14, hole 6).

An ABP node that loses its counters starts again at fCnt 1 on the same devAddr with new data.
Before, each such uplink was dropped as a "duplicate": 0 of 10 stored, no dead letter. Now the
gateway tells the two apart: the same deduplicationId, or the same fCnt with the same payload,
is a redelivery (``duplicate``); the same fCnt with another payload is a counter reset, kept as
a dead letter with reason ``fcnt_reset`` and announced by an ``fcnt_reset`` event. The same holds
for events without a deduplicationId.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocol import codec
from tests.gateway import events as ev
from tests.gateway.harness import Running, mqtt_client, running_gateway, wait_for
from tests.helpers.procs import Broker

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

BIN = "a84041000181f0c1"


def _doc(gw: Running, f_cnt: int, fill: int, dedup: str | None = None) -> dict[str, Any]:
    fields = {"fill_percent": fill, "temperature_c": 12, "battery_percent": 90}
    f_port, data = codec.encode("bin_status", fields)
    return ev.up(gw.app, BIN, f_cnt=f_cnt, f_port=f_port, data=data, dedup=dedup)


async def test_abp_counter_reset_is_kept_not_dropped(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        response = await gw.http.put(f"/api/v1/devices/{BIN}", json={"kind": "bin"})
        assert response.status_code == 200
        topic = ev.topic(gw.app, BIN, "up")
        before = [_doc(gw, f_cnt, fill=f_cnt) for f_cnt in range(1, 11)]
        after = [_doc(gw, f_cnt, fill=50 + f_cnt) for f_cnt in range(1, 11)]  # the reset
        async with mqtt_client(mosquitto_broker, f"{gw.base}/events/fcnt_reset") as (
            client,
            got,
        ):
            for doc in before:
                await client.publish(topic, ev.dumps(doc), qos=1)
            await wait_for(lambda: gw.counter("processed") == 10, "the first 10")
            for doc in after:
                await client.publish(topic, ev.dumps(doc), qos=1)
            # redeliveries: the same id; the same frame under a new id; both before and after
            await client.publish(topic, ev.dumps(before[3]), qos=1)
            await client.publish(topic, ev.dumps({**before[4], "deduplicationId": "x-1"}), qos=1)
            await client.publish(topic, ev.dumps(after[5]), qos=1)
            await wait_for(lambda: gw.counter("duplicate") == 3, "three redeliveries")
            await wait_for(lambda: len(got) == 10, "ten fcnt_reset events on MQTT")
        assert gw.counter("processed") == 10
        await gw.gateway.flush()
        letters = (await gw.http.get("/api/v1/dead_letters")).json()["dead_letters"]
        assert len(letters) == 10
        assert all(d["reason"].startswith("fcnt_reset:") for d in letters)
        kept = sorted(json.loads(bytes.fromhex(d["payload_hex"]))["fCnt"] for d in letters)
        assert kept == list(range(1, 11))  # every new uplink, raw, nothing lost
        events = (await gw.http.get("/api/v1/events", params={"type": "fcnt_reset"})).json()
        assert sorted(e["data"]["f_cnt"] for e in events["events"]) == list(range(1, 11))
        assert all(e["data"]["last_f_cnt"] == 10 for e in events["events"])
        history = (await gw.http.get(f"/api/v1/devices/{BIN}/uplinks")).json()["uplinks"]
        assert len(history) == 10  # the first session's data is untouched


async def test_reset_without_deduplication_id(mosquitto_broker: Broker, tmp_path: Path) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        response = await gw.http.put(f"/api/v1/devices/{BIN}", json={"kind": "bin"})
        assert response.status_code == 200
        topic = ev.topic(gw.app, BIN, "up")
        first = {**_doc(gw, 7, fill=20), "deduplicationId": ""}
        again = dict(first)
        reset = {**_doc(gw, 7, fill=80), "deduplicationId": ""}
        async with mqtt_client(mosquitto_broker) as (client, _):
            await client.publish(topic, ev.dumps(first), qos=1)
            await wait_for(lambda: gw.counter("processed") == 1, "first")
            await client.publish(topic, ev.dumps(again), qos=1)
            await client.publish(topic, ev.dumps(reset), qos=1)
            await wait_for(lambda: gw.counter("duplicate") == 1, "the redelivery")

            async def letters() -> list[dict[str, Any]]:
                await gw.gateway.flush()
                found = (await gw.http.get("/api/v1/dead_letters")).json()["dead_letters"]
                return list(found)

            kept = await wait_for(letters, "the fcnt_reset dead letter")
        assert len(kept) == 1 and kept[0]["reason"].startswith("fcnt_reset:")
        assert json.loads(bytes.fromhex(kept[0]["payload_hex"])) == reset
        assert gw.counter("processed") == 1
