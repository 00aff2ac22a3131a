"""The install check on recorded ChirpStack events (ChirpStack v4 docs, Events) through a real
private mosquitto, and on the gateway API; thresholds and exit codes."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.helpers.procs import Broker, free_port
from tests.provision.conftest import Run
from tests.provision.fake_gateway import make_app, serve
from tools.provision import verify
from tools.provision.verify import FAIL, MARGINAL, PASS, VerifyError

DEV_EUI = "70b3d57ed0051a2f"
APP_ID = "0b8e3c2a-7d61-4f0e-9b8e-5c1d2a3f4e5d"
DEVICE_INFO = {
    "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
    "tenantName": "Aarhus",
    "applicationId": APP_ID,
    "applicationName": "citypack",
    "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
    "deviceProfileName": "citypack-bin-eu868",
    "deviceName": "bin-0001",
    "devEui": DEV_EUI,
    "deviceClassEnabled": "CLASS_A",
    "tags": {"kind": "bin"},
}
# an `up` event in ChirpStack v4's JSON (docs, Integrations › Events), for our device
UP = {
    "deduplicationId": "5b3c0f2e-9a41-4e57-8f3c-2d7b1a9e6c10",
    "time": "2026-03-02T10:15:42.120384+00:00",
    "deviceInfo": DEVICE_INFO,
    "devAddr": "01f3a2c4",
    "adr": True,
    "dr": 5,
    "fCnt": 0,
    "fPort": 2,
    "confirmed": False,
    "data": "AQLEAA==",
    "rxInfo": [
        {
            "gatewayId": "0016c001f153a14c",
            "uplinkId": 2873641109,
            "nsTime": "2026-03-02T10:15:42.102217+00:00",
            "rssi": -87,
            "snr": 7.25,
            "channel": 3,
            "rfChain": 1,
            "context": "qP3kXw==",
            "crcStatus": "CRC_OK",
        }
    ],
    "txInfo": {
        "frequency": 867100000,
        "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}},
    },
    "regionConfigId": "eu868",
}
JOIN = {
    "deduplicationId": "7d1c3a90-2b44-4f1e-a0a3-6b0cf2d1e111",
    "time": "2026-03-02T10:15:42.120384+00:00",
    "deviceInfo": DEVICE_INFO,
    "devAddr": "01f3a2c4",
    "regionConfigId": "eu868",
}
LOG = {
    "time": "2026-03-02T10:15:40.000000+00:00",
    "deviceInfo": DEVICE_INFO,
    "level": "ERROR",
    "code": "UPLINK_MIC",
    "description": "MIC of join-request is invalid, make sure keys are correct",
    "context": {},
}


def weak_up(snr: float, sf: int, *, gateways: int = 1) -> dict[str, Any]:
    event = copy.deepcopy(UP)
    event["dr"] = 12 - sf
    event["txInfo"]["modulation"]["lora"]["spreadingFactor"] = sf
    event["rxInfo"] = [
        {**UP["rxInfo"][0], "gatewayId": f"0016c001f153a1{i:02x}", "snr": snr - i, "rssi": -121 - i}
        for i in range(gateways)
    ]
    return event


# --- margins and verdicts (no I/O) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("sf", "snr", "margin"),
    [(7, 7.25, 14.75), (8, -2.0, 8.0), (9, 0.0, 12.5), (10, -15.0, 0.0), (12, -14.0, 6.0)],
)
def test_link_margin_is_snr_above_the_sf_floor(sf: int, snr: float, margin: float) -> None:
    assert verify.link_margin(snr, sf) == pytest.approx(margin)


def test_verdicts_follow_the_documented_thresholds() -> None:
    assert verify.judge(DEV_EUI, verify.uplink_quality(UP), joined=True, logs=[]).status == PASS
    marginal = verify.judge(
        DEV_EUI, verify.uplink_quality(weak_up(-14.0, 12)), joined=True, logs=[]
    )
    assert marginal.status == MARGINAL and marginal.exit_code == 0
    assert any("SF12" in r for r in marginal.reasons)
    assert any("RSSI -121 dBm" in r for r in marginal.reasons)
    failed = verify.judge(DEV_EUI, verify.uplink_quality(weak_up(-17.0, 12)), joined=True, logs=[])
    assert failed.status == FAIL and failed.exit_code == 1
    # two gateways: the best one decides
    two = verify.uplink_quality(weak_up(-3.0, 9, gateways=2))
    assert [g.margin_db for g in two.gateways] == [9.5, 8.5]
    assert verify.judge(DEV_EUI, two, joined=True, logs=[]).status == MARGINAL
    nothing = verify.judge(DEV_EUI, None, joined=False, logs=["ERROR UPLINK_MIC: x"])
    assert nothing.status == FAIL and "no uplink before the timeout" in nothing.reasons[0]


def test_uplink_quality_reads_the_event_and_refuses_garbage() -> None:
    quality = verify.uplink_quality(UP)
    assert (quality.dr, quality.spreading_factor, quality.frequency_hz) == (5, 7, 867100000)
    assert quality.gateways[0].rssi == -87 and quality.gateways[0].snr == 7.25
    no_tx = {k: v for k, v in UP.items() if k != "txInfo"}
    assert verify.uplink_quality(no_tx).spreading_factor == 7  # DR5 in EU868
    assert verify.uplink_quality({**no_tx, "dr": 0}, region="US915").spreading_factor == 10
    with pytest.raises(VerifyError, match="rxInfo"):
        verify.uplink_quality({**UP, "rxInfo": "x"})
    with pytest.raises(VerifyError, match=r"rxInfo\.rssi"):
        verify.uplink_quality({**UP, "rxInfo": [{"rssi": "loud"}]})


# --- over a real broker -------------------------------------------------------------------------


def _topic(event: str) -> str:
    return f"application/{APP_ID}/device/{DEV_EUI}/event/{event}"


async def _publish_until(
    broker: Broker, messages: list[tuple[str, dict[str, Any]]], done: Callable[[], bool]
) -> None:
    """Publish the recorded events every 50 ms (a subscriber may come late) until ``done``."""
    async with aiomqtt.Client(broker.host, broker.port, identifier="recorded-chirpstack") as client:
        for _ in range(400):  # bounded: 20 s at most
            if done():
                return
            for event, payload in messages:
                await client.publish(_topic(event), json.dumps(payload).encode(), qos=1)
            await asyncio.sleep(0.05)


@pytest.mark.broker
async def test_check_mqtt_passes_on_join_and_first_uplink(mosquitto_broker: Broker) -> None:
    task = asyncio.create_task(
        verify.check_mqtt(
            mosquitto_broker.url, DEV_EUI, timeout_s=15, application_id=APP_ID, require_join=True
        )
    )
    await _publish_until(mosquitto_broker, [("log", LOG), ("join", JOIN), ("up", UP)], task.done)
    result = await task
    assert result.status == PASS and result.joined is True
    assert result.uplink is not None and result.uplink.best is not None
    assert result.uplink.best.rssi == -87 and result.uplink.best.margin_db == 14.75
    text = result.render()
    assert "PASS" in text and "RSSI -87 dBm" in text and "link margin +14.8 dB" in text
    assert "gateways:  1" in text and "DR5 (SF7)" in text


@pytest.mark.broker
async def test_check_mqtt_fails_on_a_weak_link(mosquitto_broker: Broker) -> None:
    task = asyncio.create_task(verify.check_mqtt(mosquitto_broker.url, DEV_EUI, timeout_s=15))
    await _publish_until(mosquitto_broker, [("up", weak_up(-18.5, 12))], task.done)
    result = await task
    assert result.status == FAIL and result.exit_code == 1
    assert any("below 5 dB" in r for r in result.reasons)


@pytest.mark.broker
async def test_check_mqtt_times_out_with_the_chirpstack_log(mosquitto_broker: Broker) -> None:
    task = asyncio.create_task(
        verify.check_mqtt(mosquitto_broker.url, DEV_EUI, timeout_s=1.5, require_join=True)
    )
    # only the MIC error ChirpStack logs when the node has the wrong key: no join, no uplink
    await _publish_until(mosquitto_broker, [("log", LOG)], task.done)
    result = await task
    assert result.status == FAIL and result.joined is False and result.uplink is None
    assert any("UPLINK_MIC" in line for line in result.logs)
    assert "chirpstack log: ERROR UPLINK_MIC" in result.render()


def _in_background(broker: Broker, messages: list[tuple[str, dict[str, Any]]]) -> threading.Event:
    stop = threading.Event()
    threading.Thread(
        target=lambda: asyncio.run(_publish_until(broker, messages, stop.is_set)), daemon=True
    ).start()
    return stop


@pytest.mark.broker
def test_cli_verify_exit_codes(mosquitto_broker: Broker, cli: Callable[..., Run]) -> None:
    stop = _in_background(mosquitto_broker, [("join", JOIN), ("up", UP)])
    try:
        passed = cli("verify", DEV_EUI, "--mqtt", mosquitto_broker.url, "--timeout", "15",
                     "--require-join", "--json")  # fmt: skip
    finally:
        stop.set()
    assert passed.code == 0, passed.err
    doc = json.loads(passed.out)
    assert doc["status"] == "pass" and doc["joined"] is True and doc["gateways"] == 1
    assert (doc["rssi"], doc["snr"], doc["dr"], doc["link_margin_db"]) == (-87, 7.25, 5, 14.75)
    timed_out = cli("verify", DEV_EUI, "--mqtt", mosquitto_broker.url, "--timeout", "0.5")
    assert timed_out.code == 1 and timed_out.out.startswith(f"FAIL  {DEV_EUI}")
    assert cli("verify", "70b3", "--mqtt", mosquitto_broker.url).code == 2
    assert cli("verify", DEV_EUI, "--mqtt", "http://x").code == 2
    assert cli("verify", DEV_EUI).code == 2
    nobody = f"mqtt://127.0.0.1:{free_port()}"
    refused = cli("verify", DEV_EUI, "--mqtt", nobody, "--timeout", "5")
    assert refused.code == 1 and "cannot use the MQTT broker at 127.0.0.1" in refused.err
    assert refused.err.splitlines()[-1].startswith("citypack: error: cannot use the MQTT broker")
    assert "Traceback" not in refused.err


def test_cli_verify_on_the_gateway_api(cli: Callable[..., Run], tmp_path: Path) -> None:
    token = tmp_path / "gw-token"
    token.write_text("gw-token-value\n")
    app, devices, _ = make_app("gw-token-value")
    devices[DEV_EUI] = {
        "dev_eui": DEV_EUI,
        "kind": "bin",
        "last_seen": time.time() + 60,  # an uplink after the check started
        "last_f_cnt": 0,
        "last_dr": 3,
        "last_rssi": -101,
        "last_snr": 2.5,
    }
    with serve(app) as url:
        run = cli("verify", DEV_EUI, "--gateway-api", url, "--gateway-token-file", str(token),
                  "--timeout", "5", "--json")  # fmt: skip
        assert run.code == 0, run.err
        doc = json.loads(run.out)
        assert doc["status"] == "pass" and doc["spreading_factor"] == 9
        assert doc["link_margin_db"] == 15.0 and doc["joined"] is None
        devices[DEV_EUI]["last_seen"] = time.time() - 3600
        stale = cli("verify", DEV_EUI, "--gateway-api", url, "--gateway-token-file", str(token),
                    "--timeout", "0.3")  # fmt: skip
        assert stale.code == 1 and "no uplink before the timeout" in stale.out
        unknown = cli("verify", "0011223344556677", "--gateway-api", url, "--gateway-token-file",
                      str(token), "--timeout", "0.2")  # fmt: skip
        assert unknown.code == 1 and "the gateway does not know this device" in unknown.out


def _protobuf(kind: str, event: dict[str, Any]) -> bytes:
    from chirpstack_api import integration
    from google.protobuf import json_format

    message = {"up": integration.UplinkEvent, "join": integration.JoinEvent}[kind]()
    json_format.ParseDict(event, message, ignore_unknown_fields=True)
    return bytes(message.SerializeToString())


def test_protobuf_events_decode_like_json() -> None:
    """ChirpStack with ``json=false`` publishes the same events as protobuf (chirpstack.md §4)."""
    as_json = verify.uplink_quality(UP)
    decoded = verify.decode_event("up", _protobuf("up", UP))
    assert decoded is not None
    assert verify.uplink_quality(decoded) == as_json
    join = verify.decode_event("join", _protobuf("join", JOIN))
    assert join is not None and join["deviceInfo"]["devEui"] == DEV_EUI
    assert verify.decode_event("up", json.dumps(UP).encode()) == UP
    assert verify.decode_event("up", b"\xff\xfe garbage") is None
    assert verify.decode_event("status", b"\x08\x01") is None


@pytest.mark.broker
async def test_check_mqtt_reads_the_protobuf_marshaler(mosquitto_broker: Broker) -> None:
    async with aiomqtt.Client(mosquitto_broker.host, mosquitto_broker.port) as client:
        task = asyncio.create_task(
            verify.check_mqtt(mosquitto_broker.url, DEV_EUI, timeout_s=15, require_join=True)
        )
        for _ in range(300):  # bounded: 15 s at most
            if task.done():
                break
            await client.publish(_topic("join"), _protobuf("join", JOIN), qos=1)
            await client.publish(_topic("up"), _protobuf("up", UP), qos=1)
            await asyncio.sleep(0.05)
    result = await task
    assert result.status == PASS and result.joined is True
    assert result.uplink is not None and result.uplink.best is not None
    assert result.uplink.best.margin_db == 14.75 and result.uplink.f_cnt == 0
