"""The OS2iot emulator keeps OS2iot's shapes and quirks (docs/os2iot.md), and what it is asked
reaches the ChirpStack emulator behind it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiomqtt
import httpx
import pytest

from tests.helpers import procs
from tests.os2iot.conftest import os2iot_stack, receiver
from tools.netsim.server import DEFAULT_APPLICATION_ID
from tools.os2iot.runner import DEFAULT_PROFILES

pytestmark = pytest.mark.broker

BIN, LAMP = DEFAULT_PROFILES
KEY = "2b7e151628aed2a6abf7158809cf4f3c"


def item(n: int, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": f"bin-{n:04d}",
        "type": "LORAWAN",
        "applicationId": 1,
        "latitude": 56.15,
        "longitude": 10.2,
        "metadata": json.dumps({"kind": "bin", "street": "Mejlgade"}),
        "lorawanSettings": {
            "devEUI": f"70b3d57ed0{n:06x}",
            "deviceProfileID": BIN.id,
            "activationType": "OTAA",
            "OTAAapplicationKey": KEY,
        },
    }
    doc.update(extra)
    return doc


async def test_api_key_batches_and_validation(
    mosquitto_broker: procs.Broker, headers: dict[str, str]
) -> None:
    async with os2iot_stack(mosquitto_broker) as (netsim, os2iot), httpx.AsyncClient() as http:
        url = os2iot.url
        refused = await http.post(f"{url}/iot-device/createMany", json={"data": [item(1)]})
        assert refused.status_code == 401
        assert refused.json()["message"] == "MESSAGE.API-KEY-AUTH-FAILED"

        too_many = {"data": [item(n) for n in range(51)]}
        r = await http.post(f"{url}/iot-device/createMany", json=too_many, headers=headers)
        assert r.status_code == 400 and os2iot.state.devices == {}

        # metadata as an object (not a JSON string) fails the whole batch, nothing created
        bad = item(2, metadata={"kind": "bin"})
        r = await http.post(
            f"{url}/iot-device/createMany", json={"data": [item(1), bad]}, headers=headers
        )
        assert r.status_code == 400
        body = r.json()
        assert body["error"] == "Bad Request"
        assert [e["property"] for e in body["message"]] == ["metadata"]
        assert os2iot.state.devices == {}
        assert KEY not in r.text

        r = await http.post(
            f"{url}/iot-device/createMany",
            json={"data": [item(1), item(2), item(1)]},
            headers=headers,
        )
        assert r.status_code == 201
        first, second, duplicate = r.json()
        assert first["data"]["deviceEUI"] == "70b3d57ed0000001" and "error" not in first
        assert second["idMetadata"] == {"name": "bin-0002", "applicationId": 1}
        assert duplicate["error"]["message"] == "MESSAGE.ID-INVALID-OR-ALREADY-IN-USE"
        assert sorted(netsim.server.device_ids()) == ["70b3d57ed0000001", "70b3d57ed0000002"]
        assert KEY not in r.text

        missing = await http.get(f"{url}/search", params={"q": "70b3d57ed0000001"}, headers=headers)
        assert missing.status_code == 400  # limit and offset are required
        found = await http.get(
            f"{url}/search",
            params={"q": "70B3D57ED0000001", "limit": 10, "offset": 0},
            headers=headers,
        )
        assert found.json()["count"] == 1
        device_id = found.json()["data"][0]["id"]

        r = await http.get(f"{url}/iot-device/{device_id}", headers=headers)
        assert r.json()["lorawanSettings"]["deviceProfileID"] == BIN.id
        assert json.loads(r.json()["metadata"]) == {"kind": "bin", "street": "Mejlgade"}

        r = await http.delete(f"{url}/iot-device/{device_id}", headers=headers)
        assert r.json() == {"affected": 1}
        assert netsim.server.device_ids() == ["70b3d57ed0000002"]


async def test_downlinks_are_an_empty_201_and_only_polled(
    mosquitto_broker: procs.Broker, headers: dict[str, str]
) -> None:
    async with os2iot_stack(mosquitto_broker) as (netsim, os2iot), httpx.AsyncClient() as http:
        url = os2iot.url
        r = await http.post(f"{url}/iot-device", json=item(7), headers=headers)
        assert r.status_code == 201
        device_id = r.json()["id"]
        down = {"data": "a1b2c", "port": 3, "confirmedDownlink": True}  # odd nibble dropped
        r = await http.post(f"{url}/iot-device/{device_id}/downlink", json=down, headers=headers)
        assert r.status_code == 201 and r.content == b""
        (queued,) = netsim.server.queue("70b3d57ed0000007")
        assert queued.data == bytes.fromhex("a1b2") and queued.f_port == 3 and queued.confirmed
        r = await http.get(f"{url}/iot-device/{device_id}/downlink", headers=headers)
        (row,) = r.json()
        assert row["payload"] == "a1b2" and row["sendAt"] is None and "id" not in row

        os2iot.state.faults.downlink_errors = 1
        r = await http.post(f"{url}/iot-device/{device_id}/downlink", json=down, headers=headers)
        assert r.status_code == 500
        assert r.json()["message"] == "Could not send to chirpstack, try again later."
        assert len(netsim.server.queue("70b3d57ed0000007")) == 1

        # the TX ack comes over ChirpStack's MQTT; the row moves to the history
        txack = {
            "queueItemId": queued.id,
            "time": "2026-12-06T01:00:00Z",
            "fCntDown": 4,
            "deviceInfo": {"devEui": "70b3d57ed0000007"},
        }
        broker = mosquitto_broker
        async with aiomqtt.Client(broker.host, broker.port) as client:
            topic = f"application/{DEFAULT_APPLICATION_ID}/device/70b3d57ed0000007/event/txack"
            await client.publish(topic, json.dumps(txack), qos=1)
        async with asyncio.timeout(10):
            while True:
                r = await http.get(
                    f"{url}/iot-device/{device_id}/historicalDownlink", headers=headers
                )
                if r.json():
                    break
                await asyncio.sleep(0.05)
        (sent,) = r.json()
        assert sent["sendAt"] == "2026-12-06T01:00:00Z" and sent["fCntDown"] == 4
        r = await http.get(f"{url}/iot-device/{device_id}/downlink", headers=headers)
        assert r.json() == []


async def test_http_push_sends_the_raw_up_once_with_the_header_verbatim(
    mosquitto_broker: procs.Broker, headers: dict[str, str]
) -> None:
    async with (
        os2iot_stack(mosquitto_broker) as (_, os2iot),
        receiver() as target,
        httpx.AsyncClient() as http,
    ):
        url = os2iot.url
        device_id = (await http.post(f"{url}/iot-device", json=item(9), headers=headers)).json()[
            "id"
        ]
        r = await http.post(
            f"{url}/data-target",
            json={
                "name": "citypack",
                "type": "HTTP_PUSH",
                "applicationId": 1,
                "url": target.url,
                "timeout": 5000,
                "authorizationHeader": "Bearer push-secret-for-tests",
            },
            headers=headers,
        )
        target_id = r.json()["id"]
        r = await http.post(
            f"{url}/iot-device-payload-decoder-data-target-connection",
            json={"iotDeviceIds": [device_id], "dataTargetId": target_id, "payloadDecoderId": None},
            headers=headers,
        )
        assert r.status_code == 201

        up = {
            "deduplicationId": "0b2c4d6e-1111-4222-8333-444455556666",
            "time": "2026-12-06T01:00:00Z",
            "deviceInfo": {"devEui": "70b3d57ed0000009"},
            "fCnt": 1,
            "fPort": 2,
            "data": "AQ==",
        }
        stranger = dict(up, deviceInfo={"devEui": "0000000000000bad"})
        broker = mosquitto_broker
        target.status = 503  # the first push fails: OS2iot logs it and does not retry
        async with aiomqtt.Client(broker.host, broker.port) as client:
            base = f"application/{DEFAULT_APPLICATION_ID}/device"
            await client.publish(f"{base}/0000000000000bad/event/up", json.dumps(stranger), qos=1)
            await client.publish(f"{base}/70b3d57ed0000009/event/up", json.dumps(up), qos=1)
        async with asyncio.timeout(10):
            await target.arrived.wait()
        await os2iot.listener.idle()
        ((got_headers, body),) = target.requests
        assert got_headers["authorization"] == "Bearer push-secret-for-tests"
        assert json.loads(body) == up
        assert os2iot.listener.dropped == 1
        log = (await http.get(f"{url}/datatarget-log/{target_id}", headers=headers)).json()
        assert [row["type"] for row in log] == ["ERROR"] and log[0]["statusCode"] == 503
        assert "push-secret" not in json.dumps(log)
