"""The gateway against a real mosquitto: uplinks, duplicates, bad input, commands, restart."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.metrics import read
from protocol import codec
from tests.gateway import events as ev
from tests.gateway.harness import Clock, Running, mqtt_client, running_gateway, wait_for
from tests.helpers.procs import Broker

# every test here runs on SQLite and on PostgreSQL (tests/gateway/conftest.py)
pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("each_store")]


BIN = "a84041000181c0a1"
LAMP1 = "a84041000181d0b1"
LAMP2 = "a84041000181d0b2"
LAMP3 = "a84041000181d0b3"


def payload(message: str, fields: dict[str, Any]) -> tuple[int, bytes]:
    return codec.encode(message, fields)


def bin_status(fill: int, **extra: Any) -> tuple[int, bytes]:
    fields = {"fill_percent": fill, "temperature_c": 18, "battery_percent": 85, **extra}
    return payload("bin_status", fields)


def lamp_status(**extra: Any) -> tuple[int, bytes]:
    return payload("lamp_status", {"dim_level": 70, "active_power_w": 42, **extra})


async def register(gw: Running, dev_eui: str, **body: Any) -> dict[str, Any]:
    response = await gw.http.put(f"/api/v1/devices/{dev_eui}", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def send_up(
    client: Any, gw: Running, dev_eui: str, f_cnt: int, port_data: tuple[int, bytes], **kw: Any
) -> dict[str, Any]:
    f_port, data = port_data
    doc = ev.up(gw.app, dev_eui, f_cnt=f_cnt, f_port=f_port, data=data, **kw)
    await client.publish(ev.topic(gw.app, dev_eui, "up"), ev.dumps(doc), qos=1)
    return doc


async def stats(gw: Running) -> dict[str, Any]:
    response = await gw.http.get("/api/v1/stats")
    assert response.status_code == 200
    return dict(response.json())


async def test_uplink_to_twin_history_and_retained_state(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        await register(
            gw, BIN, kind="bin", name="Bin 1", street="Åboulevarden", latitude=56.15, longitude=10.2
        )
        async with mqtt_client(mosquitto_broker, f"{gw.base}/#") as (client, got):
            await send_up(client, gw, BIN, 10, bin_status(42), gateways=2, rssi=-101, snr=-3.5)
            await wait_for(lambda: gw.counter("processed") == 1, "uplink processed")
            state_topic = f"{gw.base}/devices/{BIN}/state"
            # the uplink's state, not the one the registration retained: the retained twin
            # (QoS 0) and availability (QoS 1) leave on separate paths (gateway/outbox.py), so
            # neither tells that the other has arrived
            await wait_for(
                lambda: any(t == state_topic and b"fill_percent" in p for t, p in got),
                "retained state of the uplink",
            )
            await wait_for(
                lambda: (f"{gw.base}/devices/{BIN}/availability", b"online") in got,
                "availability online",
            )
        state = [json.loads(p) for t, p in got if t == state_topic][-1]
        assert state["reported"]["fill_percent"] == 42
        assert state["availability"] == "online"
        history = (await gw.http.get(f"/api/v1/devices/{BIN}/uplinks")).json()["uplinks"]
        assert len(history) == 1
        row = history[0]
        assert (row["f_cnt"], row["message"], row["gateways"], row["rssi"], row["snr"]) == (
            10,
            "bin_status",
            2,
            -101,
            -3.5,
        )
        assert row["fields"]["fill_percent"] == 42 and row["dr"] == 5
        device = (await gw.http.get(f"/api/v1/devices/{BIN}")).json()
        assert device["reported"]["temperature_c"] == 18 and device["last_rssi"] == -101
        s = await stats(gw)
        assert s["uplinks_stored"] == 1 and s["devices_by_kind"] == {"bin": 1}
        assert s["devices_by_availability"] == {"online": 1}
        assert s["devices_by_kind_and_availability"] == {"bin": {"online": 1}}
        assert s["commands_by_state"]["queued"] == 0 and s["dead_letters"] == 0
        metrics = (await gw.http.get("/metrics", headers={"Authorization": ""})).text
        assert 'citypack_uplinks_total{outcome="processed"} 1.0' in metrics
        assert 'citypack_devices{availability="online",kind="bin"} 1.0' in metrics
        assert "citypack_uplink_seconds_count 1.0" in metrics


async def test_reference_example_and_every_event_type(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        app, dev = gw.app, ev.REFERENCE_DEV
        reference = json.loads(ev.REFERENCE_UP)
        reference["deviceInfo"]["applicationId"] = app
        async with mqtt_client(mosquitto_broker) as (client, _):
            # the reference uplink: fPort 2 carries 01 02 c4 00, not a citypack command_result
            await client.publish(ev.topic(app, dev, "up"), json.dumps(reference).encode(), qos=1)
            for name, doc in (
                ("join", ev.join(app, dev)),
                ("status", ev.status(app, dev)),
                ("log", ev.log(app, dev, "UPLINK_CODEC", {"deduplication_id": "x"})),
                ("txack", ev.txack(app, dev, str(uuid.uuid4()))),
                ("ack", ev.ack(app, dev, str(uuid.uuid4()))),
                (
                    "location",
                    {"deviceInfo": ev.device_info(app, dev), "location": {"latitude": 1.0}},
                ),
                ("integration", {"deviceInfo": ev.device_info(app, dev)}),
            ):
                await client.publish(ev.topic(app, dev, name), ev.dumps(doc), qos=1)
            await wait_for(
                lambda: read(gw.gateway.metrics.events, event="integration") == 1,
                "all events",
            )
        for name in ("up", "join", "status", "log", "txack", "ack", "location", "integration"):
            assert read(gw.gateway.metrics.events, event=name) == 1, name
        device = gw.gateway.devices[dev]
        assert device.kind == "unknown" and device.registered is False  # kept, not dropped
        assert device.reported["lorawan_margin_db"] == 7
        kinds = {e["type"] for e in (await gw.http.get("/api/v1/events")).json()["events"]}
        assert {"device_discovered", "device_joined", "chirpstack_log"} <= kinds
        assert gw.counter("undecodable") == 1  # the reference bytes are not CBOR we know
        letters = (await gw.http.get("/api/v1/dead_letters")).json()["dead_letters"]
        assert json.loads(bytes.fromhex(letters[0]["payload_hex"]))["fCnt"] == 1287


async def test_duplicates_are_processed_once(mosquitto_broker: Broker, tmp_path: Path) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        await register(gw, BIN, kind="bin")
        async with mqtt_client(mosquitto_broker) as (client, _):
            doc = await send_up(client, gw, BIN, 5, bin_status(10))
            await client.publish(ev.topic(gw.app, BIN, "up"), ev.dumps(doc), qos=1)  # redelivery
            # same frame, new deduplicationId (skipFcntCheck / two frequencies, reference §7)
            await send_up(client, gw, BIN, 5, bin_status(10))
            await send_up(client, gw, BIN, 6, bin_status(11))
            await wait_for(lambda: gw.counter("processed") + gw.counter("duplicate") == 4, "all")
        assert (gw.counter("processed"), gw.counter("duplicate")) == (2, 2)
        assert (await stats(gw))["uplinks_stored"] == 2


async def test_bad_input_is_kept_counted_and_survived(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        await register(gw, BIN, kind="bin")
        app = gw.app
        good = ev.up(app, BIN, f_cnt=1, f_port=10, data=b"")
        wrong_type = dict(good, fCnt="seven")
        bad_b64 = dict(good, data="%%%")
        garbage_cbor = ev.up(app, BIN, f_cnt=2, f_port=10, data=b"\xff\x00\x13\x37garbage")
        unknown_port = ev.up(app, BIN, f_cnt=3, f_port=99, data=b"\xa0")
        oversized = ev.up(app, BIN, f_cnt=4, f_port=10, data=bytes(300))
        huge_event = b'{"pad": "' + b"x" * 70_000 + b'"}'
        async with mqtt_client(mosquitto_broker) as (client, _):
            topic = ev.topic(app, BIN, "up")
            for raw in (
                b"{not json",
                b"\x00\x01\x02",
                ev.dumps(wrong_type),
                ev.dumps(bad_b64),
                huge_event,
            ):
                await client.publish(topic, raw, qos=1)
            for doc in (garbage_cbor, unknown_port, oversized):
                await client.publish(topic, ev.dumps(doc), qos=1)
            await send_up(client, gw, "a84041000181ffff", 1, bin_status(5))  # unknown device
            await send_up(client, gw, BIN, 9, bin_status(33))  # still alive afterwards
            await wait_for(lambda: gw.counter("processed") == 2, "good uplinks")
        assert gw.counter("invalid_event") == 5
        assert gw.counter("undecodable") == 3
        s = await stats(gw)
        assert s["dead_letters"] == 8 and s["uplinks_stored"] == 2
        letters = (await gw.http.get("/api/v1/dead_letters?limit=20")).json()["dead_letters"]
        raws = {bytes.fromhex(d["payload_hex"]) for d in letters}
        assert b"{not json" in raws and ev.dumps(garbage_cbor) in raws
        assert any("undecodable" in d["reason"] for d in letters)
        assert gw.gateway.devices["a84041000181ffff"].kind == "unknown"
        assert gw.gateway.devices[BIN].reported["fill_percent"] == 33


async def test_protobuf_marshaler(mosquitto_broker: Broker, tmp_path: Path) -> None:
    from chirpstack_api import integration
    from google.protobuf import json_format

    async with running_gateway(mosquitto_broker, tmp_path, mqtt={"marshaler": "protobuf"}) as gw:
        await register(gw, LAMP1, kind="lamp")
        f_port, data = lamp_status()
        doc = ev.up(gw.app, LAMP1, f_cnt=3, f_port=f_port, data=data)
        message = json_format.ParseDict(doc, integration.UplinkEvent(), ignore_unknown_fields=True)
        down = f"application/{gw.app}/device/{LAMP1}/command/down"
        async with mqtt_client(mosquitto_broker, down) as (client, got):
            await client.publish(ev.topic(gw.app, LAMP1, "up"), message.SerializeToString(), qos=1)
            await wait_for(lambda: gw.counter("processed") == 1, "protobuf uplink")
            response = await gw.http.post(
                f"/api/v1/devices/{LAMP1}/commands", json={"message": "reboot", "fields": {}}
            )
            assert response.status_code == 202
            await wait_for(lambda: got, "protobuf downlink")
        command = integration.DownlinkCommand.FromString(got[0][1])
        assert command.id == response.json()["id"] and command.dev_eui == LAMP1
        assert gw.gateway.devices[LAMP1].reported["dim_level"] == 70


async def test_command_from_api_to_applied(mosquitto_broker: Broker, tmp_path: Path) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        await register(gw, LAMP1, kind="lamp")
        down = f"application/{gw.app}/device/{LAMP1}/command/down"
        async with mqtt_client(mosquitto_broker, down, f"{gw.base}/events/#") as (client, got):
            await send_up(client, gw, LAMP1, 1, lamp_status())  # learn app id and DR
            await wait_for(lambda: gw.counter("processed") == 1, "first uplink")
            response = await gw.http.post(
                f"/api/v1/devices/{LAMP1}/commands",
                json={"message": "lamp_override", "fields": {"dim_level": 100, "duration_s": 60}},
            )
            assert response.status_code == 202, response.text
            command = response.json()
            assert command["state"] == "queued" and 0 <= command["command_id"] <= 255
            await wait_for(lambda: any(t == down for t, _ in got), "command/down")
            doc = json.loads(next(p for t, p in got if t == down))
            assert doc["id"] == command["id"] and doc["devEui"] == LAMP1
            assert doc["fPort"] == 120 and doc["confirmed"] is True and "expiresAt" in doc
            decoded = codec.decode(doc["fPort"], base64.b64decode(doc["data"]), "down")
            assert decoded.fields["command_id"] == command["command_id"]
            assert decoded.fields["dim_level"] == 100

            async def state() -> str:
                return str((await gw.http.get(f"/api/v1/commands/{command['id']}")).json()["state"])

            await client.publish(
                ev.topic(gw.app, LAMP1, "txack"),
                ev.dumps(ev.txack(gw.app, LAMP1, command["id"])),
                qos=1,
            )

            async def sent() -> bool:
                return await state() == "sent"

            await wait_for(sent, "sent")  # (waited for any state before: a race)
            await client.publish(
                ev.topic(gw.app, LAMP1, "ack"),
                ev.dumps(ev.ack(gw.app, LAMP1, command["id"])),
                qos=1,
            )
            await wait_for(lambda: _is(state, "acknowledged"), "acknowledged")
            await send_up(
                client,
                gw,
                LAMP1,
                2,
                payload(
                    "command_result", {"command_id": command["command_id"], "outcome": "applied"}
                ),
            )
            await wait_for(lambda: _is(state, "applied"), "applied")
            await wait_for(
                lambda: any(t == f"{gw.base}/events/command_applied" for t, _ in got), "event"
            )
        final = (await gw.http.get(f"/api/v1/commands/{command['id']}")).json()
        assert final["sent_at"] and final["acknowledged_at"] and final["applied_at"]
        assert final["f_cnt_down"] == 7
        metrics = (await gw.http.get("/metrics")).text
        for state_name in ("queued", "sent", "acknowledged", "applied"):
            assert f'citypack_downlinks_total{{state="{state_name}"}} 1.0' in metrics


async def _is(get: Any, wanted: str) -> bool:
    return bool(await get() == wanted)


async def test_out_of_order_events_only_move_forward(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        await register(gw, LAMP1, kind="lamp")
        gwy = gw.gateway
        async with mqtt_client(mosquitto_broker) as (client, _):
            await send_up(client, gw, LAMP1, 1, lamp_status())
            await wait_for(lambda: gw.counter("processed") == 1, "uplink")
            cmd = gwy.submit_command(LAMP1, "reboot", {})
            await wait_for(lambda: cmd.published_at is not None, "published")
            # ack first, then the late txack: acknowledged stays
            await client.publish(
                ev.topic(gw.app, LAMP1, "ack"), ev.dumps(ev.ack(gw.app, LAMP1, cmd.id)), qos=1
            )
            await wait_for(lambda: cmd.state == "acknowledged", "acknowledged")
            await client.publish(
                ev.topic(gw.app, LAMP1, "txack"),
                ev.dumps(ev.txack(gw.app, LAMP1, cmd.id, f_cnt_down=11)),
                qos=1,
            )
            await wait_for(lambda: cmd.f_cnt_down == 11, "late txack seen")
            assert cmd.state == "acknowledged" and cmd.sent_at is not None
            # the result before any txack: applied at once
            cmd2 = gwy.submit_command(LAMP1, "status_request", {})
            await wait_for(lambda: cmd2.published_at is not None, "second published")
            await send_up(
                client,
                gw,
                LAMP1,
                2,
                payload("command_result", {"command_id": cmd2.command_id, "outcome": "applied"}),
            )
            await wait_for(lambda: cmd2.state == "applied", "applied before txack")
            await client.publish(
                ev.topic(gw.app, LAMP1, "txack"), ev.dumps(ev.txack(gw.app, LAMP1, cmd2.id)), qos=1
            )
            await send_up(client, gw, LAMP1, 3, lamp_status())
            await wait_for(lambda: gw.counter("processed") == 3, "later uplink")
        assert cmd2.state == "applied"
        stored = await gwy.store.get_command(cmd2.id)
        assert stored is not None and stored.state == "applied"


async def test_replacement_one_per_device_and_failures(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        await register(gw, LAMP1, kind="lamp")
        gwy = gw.gateway
        down = f"application/{gw.app}/device/{LAMP1}/command/down"
        async with mqtt_client(mosquitto_broker, down) as (client, got):
            await send_up(client, gw, LAMP1, 1, lamp_status())
            await wait_for(lambda: gw.counter("processed") == 1, "uplink")
            first = gwy.submit_command(LAMP1, "lamp_override", {"dim_level": 10}, confirmed=False)
            await wait_for(lambda: first.published_at is not None, "first published")
            second = gwy.submit_command(LAMP1, "lamp_override", {"dim_level": 20}, confirmed=False)
            third = gwy.submit_command(LAMP1, "lamp_override", {"dim_level": 30}, confirmed=False)
            other = gwy.submit_command(LAMP1, "time_sync", {"unix_time": 1790000000})
            assert second.state == "replaced" and second.replaced_by == third.id
            await gwy.flush()
            # one downlink in ChirpStack's queue at a time: nothing else went out yet
            await wait_for(lambda: len(got) >= 1, "first downlink")
            assert [json.loads(p)["id"] for _, p in got] == [first.id]
            await client.publish(
                ev.topic(gw.app, LAMP1, "txack"), ev.dumps(ev.txack(gw.app, LAMP1, first.id)), qos=1
            )
            await wait_for(lambda: len(got) >= 2, "next downlink after txack")
            assert json.loads(got[1][1])["id"] == third.id
            await client.publish(
                ev.topic(gw.app, LAMP1, "log"),
                ev.dumps(
                    ev.log(
                        gw.app,
                        LAMP1,
                        "DOWNLINK_PAYLOAD_SIZE",
                        {"queue_item_id": third.id, "max_payload_size": "11", "item_size": "20"},
                    )
                ),
                qos=1,
            )
            await wait_for(lambda: third.state == "failed", "payload size failure")
            await wait_for(lambda: len(got) >= 3, "time_sync goes out")
            assert json.loads(got[2][1])["id"] == other.id
            await client.publish(
                ev.topic(gw.app, LAMP1, "txack"), ev.dumps(ev.txack(gw.app, LAMP1, other.id)), qos=1
            )
            await client.publish(
                ev.topic(gw.app, LAMP1, "ack"),
                ev.dumps(ev.ack(gw.app, LAMP1, other.id, acknowledged=False)),
                qos=1,
            )
            await wait_for(lambda: other.state == "failed", "nack")
            last = gwy.submit_command(LAMP1, "reboot", {})
            await wait_for(lambda: last.published_at is not None, "reboot published")
            await client.publish(
                ev.topic(gw.app, LAMP1, "log"),
                ev.dumps(ev.log(gw.app, LAMP1, "EXPIRED", {"queue_item_id": last.id})),
                qos=1,
            )
            await wait_for(lambda: last.state == "expired", "expired")
        assert "nack" in other.error and "DOWNLINK_PAYLOAD_SIZE" in third.error
        s = (await stats(gw))["commands_by_state"]
        assert (s["replaced"], s["failed"], s["expired"], s["sent"]) == (1, 2, 1, 1), s


async def test_api_rejects_bad_commands(mosquitto_broker: Broker, tmp_path: Path) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        await register(gw, BIN, kind="bin")
        post = gw.http.post
        cases = [
            (BIN, {"message": "lamp_override", "fields": {"dim_level": 5}}, 422, "lamp"),
            (BIN, {"message": "bin_status", "fields": {}}, 422, "uplink"),
            (BIN, {"message": "nonsense"}, 422, "unknown message"),
            (
                BIN,
                {"message": "bin_config", "fields": {"config_version": "x"}},
                422,
                "config_version",
            ),
            ("a84041000181eeee", {"message": "reboot"}, 404, "not registered"),
            (BIN, {"fields": {}}, 422, "message"),
        ]
        for dev, body, status, words in cases:
            response = await post(f"/api/v1/devices/{dev}/commands", json=body)
            assert response.status_code == status, (body, response.text)
            assert words in response.json()["message"]
        big = {"message": "lamp_profile"}
        assert (await post(f"/api/v1/devices/{BIN}/commands", json=big)).status_code == 422


async def test_payload_size_checked_against_data_rate(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    # EU868 DR0 allows 51 bytes (RP002 §2.1.6); with 15 bytes kept for FOpts MAC commands, 36
    async with running_gateway(
        mosquitto_broker, tmp_path, commands={"mac_headroom_bytes": 15}
    ) as gw:
        await register(gw, LAMP1, kind="lamp")
        steps = [{"anchor": "clock", "offset_min": 1400 - i, "dim_level": 100} for i in range(4)]
        body = {
            "message": "lamp_profile",
            "fields": {
                "config_version": 60000,
                "base_level": 100,
                "boost_level": 100,
                "hold_time_s": 3600,
                "steps": steps,
            },
        }
        fields: dict[str, Any] = {**body["fields"], "command_id": 255}  # type: ignore[dict-item]
        assert 36 < len(codec.encode("lamp_profile", fields)[1]) <= 242 - 15
        async with mqtt_client(mosquitto_broker) as (client, _):
            await send_up(client, gw, LAMP1, 1, lamp_status(), dr=0)  # SF12
            await wait_for(lambda: gw.counter("processed") == 1, "uplink at DR0")
            response = await gw.http.post(f"/api/v1/devices/{LAMP1}/commands", json=body)
            assert response.status_code == 422 and response.json()["error"] == "payload_too_large"
            await send_up(client, gw, LAMP1, 2, lamp_status(), dr=5)
            await wait_for(lambda: gw.counter("processed") == 2, "uplink at DR5")
            response = await gw.http.post(f"/api/v1/devices/{LAMP1}/commands", json=body)
            assert response.status_code == 202


async def test_set_topic_queues_a_command(mosquitto_broker: Broker, tmp_path: Path) -> None:
    async with running_gateway(mosquitto_broker, tmp_path, publish={"accept_set": True}) as gw:
        await register(gw, LAMP1, kind="lamp")
        async with mqtt_client(mosquitto_broker, f"{gw.base}/events/command_rejected") as (c, got):
            set_topic = f"{gw.base}/devices/{LAMP1}/set"
            await c.publish(
                set_topic,
                json.dumps({"message": "lamp_override", "fields": {"dim_level": 40}}).encode(),
                qos=1,
            )
            await c.publish(set_topic, b"not json", qos=1)
            await wait_for(lambda: gw.gateway.commands.for_device(LAMP1), "command from set")
            await wait_for(lambda: got, "rejection event")
        command = gw.gateway.commands.for_device(LAMP1)[0]
        assert command.message == "lamp_override" and command.source == "mqtt"


async def test_availability_transitions(mosquitto_broker: Broker, tmp_path: Path) -> None:
    clock = Clock()
    async with running_gateway(
        mosquitto_broker, tmp_path, clock=clock, availability={"factor": 2.0}
    ) as gw:
        await register(gw, BIN, kind="bin", report_interval_s=600)
        topic = f"{gw.base}/devices/{BIN}/availability"
        async with mqtt_client(mosquitto_broker, topic, f"{gw.base}/events/#") as (client, got):
            await send_up(client, gw, BIN, 1, bin_status(10))
            await wait_for(lambda: (topic, b"online") in got, "online")
            clock.advance(1199)
            gw.gateway.tick()
            assert gw.gateway.devices[BIN].availability == "online"  # 1199 s < 600 s x 2
            clock.advance(2)
            gw.gateway.tick()
            await gw.gateway.flush()
            await wait_for(lambda: (topic, b"offline") in got, "offline")
            await wait_for(lambda: any(t.endswith("/events/device_offline") for t, _ in got), "ev")
            await send_up(client, gw, BIN, 2, bin_status(12))
            await wait_for(lambda: got.count((topic, b"online")) == 2, "back online")
            await wait_for(lambda: any(t.endswith("/events/device_online") for t, _ in got), "ev")
        s = await stats(gw)
        assert s["devices_by_availability"] == {"online": 1}


async def test_bin_rules_through_the_service(mosquitto_broker: Broker, tmp_path: Path) -> None:
    clock = Clock()
    async with running_gateway(mosquitto_broker, tmp_path, clock=clock) as gw:
        await register(gw, BIN, kind="bin", name="B", latitude=56.1, longitude=10.2, street="S")
        async with mqtt_client(mosquitto_broker, f"{gw.base}/events/#") as (client, got):
            for i, fill in enumerate((50, 60, 70, 85)):
                await send_up(client, gw, BIN, i + 1, bin_status(fill))
                await wait_for(lambda n=i: gw.counter("processed") == n + 1, "uplink")
                clock.advance(3600)
            await send_up(client, gw, BIN, 5, bin_status(86, fire=True, tilt=True))
            await send_up(client, gw, BIN, 6, bin_status(5))
            await wait_for(lambda: gw.counter("processed") == 6, "all")
            await wait_for(lambda: any(t.endswith("bin_pickup") for t, _ in got), "pickup")
        types = [t.rsplit("/", 1)[1] for t, _ in got]
        assert types.count("bin_full") == 1 and "bin_fire" in types and "bin_tilt" in types
        # before the pickup the bin was on the list; now forecast from the new samples only
        assert gw.gateway.devices[BIN].derived["fill_percent"] == 5
        csv_text = (await gw.http.get("/api/v1/collection?format=csv")).text
        assert csv_text.splitlines()[0].startswith("dev_eui,")


async def test_collection_formats(mosquitto_broker: Broker, tmp_path: Path) -> None:
    clock = Clock()
    async with running_gateway(mosquitto_broker, tmp_path, clock=clock) as gw:
        await register(gw, BIN, kind="bin", name="Full", latitude=56.1, longitude=10.2)
        other = "a84041000181c0a2"
        await register(gw, other, kind="bin", name="Empty")
        async with mqtt_client(mosquitto_broker) as (client, _):
            await send_up(client, gw, BIN, 1, bin_status(90))
            await send_up(client, gw, other, 1, bin_status(10))
            await wait_for(lambda: gw.counter("processed") == 2, "uplinks")
        doc = (await gw.http.get("/api/v1/collection")).json()
        assert [b["dev_eui"] for b in doc["bins"]] == [BIN] and doc["bins"][0]["reason"] == "full"
        geo = (await gw.http.get("/api/v1/collection", params={"format": "geojson"})).json()
        assert geo["type"] == "FeatureCollection"
        assert geo["features"][0]["geometry"] == {"type": "Point", "coordinates": [10.2, 56.1]}
        csv_text = (await gw.http.get("/api/v1/collection?format=csv")).text
        assert BIN in csv_text and other not in csv_text
        bad = await gw.http.get("/api/v1/collection?format=xml")
        assert bad.status_code == 422 and "message" in bad.json()


async def test_lamp_rules_presence_profile_failure(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    profile = {
        "config_version": 3,
        "base_level": 20,
        "boost_level": 100,
        "hold_time_s": 60,
        "steps": [{"anchor": "sunset", "offset_min": 0, "dim_level": 80}],
    }
    clock = Clock(1_772_400_000.0)  # 21:20 UTC: night
    async with running_gateway(
        mosquitto_broker, tmp_path, clock=clock, lamps={"profiles": {"harbour": profile}}
    ) as gw:
        for eui, neighbours in ((LAMP1, [LAMP2, BIN]), (LAMP2, [LAMP1, LAMP3]), (LAMP3, [LAMP2])):
            await register(
                gw, eui, kind="lamp", street="Havnegade", group="harbour", neighbours=neighbours
            )
        await register(gw, BIN, kind="bin")
        downs = f"application/{gw.app}/device/+/command/down"
        async with mqtt_client(mosquitto_broker, downs, f"{gw.base}/events/#") as (client, got):
            for eui in (LAMP2, LAMP3):
                await send_up(client, gw, eui, 1, lamp_status(config_version=3))
            await wait_for(lambda: gw.counter("processed") == 2, "lamps heard")
            await send_up(client, gw, LAMP1, 1, lamp_status(config_version=1))
            await wait_for(
                lambda: any(
                    c.message == "lamp_profile" for c in gw.gateway.commands.for_device(LAMP1)
                ),
                "profile",
            )
            await send_up(
                client, gw, LAMP2, 2, payload("lamp_presence", {"road_users": 2, "dim_level": 100})
            )
            await wait_for(
                lambda: (
                    gw.gateway.commands.for_device(LAMP1) and gw.gateway.commands.for_device(LAMP3)
                ),
                "overrides",
            )
            await send_up(
                client, gw, LAMP3, 2, lamp_status(dim_level=80, active_power_w=0, config_version=3)
            )
            await wait_for(lambda: any(t.endswith("/lamp_failure") for t, _ in got), "failure")
        lamp1 = gw.gateway.devices[LAMP1]
        assert lamp1.desired_version == 3 and lamp1.reported_version == 1
        assert lamp1.to_json()["config_in_sync"] is False
        messages1 = [c.message for c in gw.gateway.commands.for_device(LAMP1)]
        assert "lamp_profile" in messages1 and "lamp_override" in messages1
        override3 = [
            c for c in gw.gateway.commands.for_device(LAMP3) if c.message == "lamp_override"
        ]
        assert override3[0].fields["dim_level"] == 100 and override3[0].confirmed is False
        assert not gw.gateway.commands.for_device(BIN)  # a bin is never raised
        assert gw.gateway.devices[LAMP2].to_json()["config_in_sync"] is True
        # LAMP1 applies its profile: in sync
        profile_cmd = next(
            c for c in gw.gateway.commands.for_device(LAMP1) if c.message == "lamp_profile"
        )
        async with mqtt_client(mosquitto_broker) as (client, _):
            await client.publish(
                ev.topic(gw.app, LAMP1, "txack"),
                ev.dumps(ev.txack(gw.app, LAMP1, profile_cmd.id)),
                qos=1,
            )
            await send_up(
                client,
                gw,
                LAMP1,
                2,
                payload(
                    "command_result",
                    {
                        "command_id": profile_cmd.command_id,
                        "outcome": "applied",
                        "config_version": 3,
                    },
                ),
            )
            await wait_for(lambda: profile_cmd.state == "applied", "profile applied")
        assert gw.gateway.devices[LAMP1].to_json()["config_in_sync"] is True


async def test_a_lighting_ahead_override_expires_with_its_hold_and_is_not_sent_late(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    """A rule's ``lamp_override`` (light ahead of a road user) is worth its hold
    (``[lamps] presence_duration_s``) and no more: its downlink carries that ``expiresAt``
    for ChirpStack's queue, and one that waited longer behind the lamp's other command is
    expired, never handed over (gateway/rules/lamps.py, gateway/commands.py)."""
    clock = Clock(1_772_400_000.0)  # 21:20 UTC: night
    async with running_gateway(
        mosquitto_broker, tmp_path, clock=clock, lamps={"presence_duration_s": 45}
    ) as gw:
        await register(gw, LAMP1, kind="lamp", street="Havnegade", neighbours=[LAMP2])
        await register(gw, LAMP2, kind="lamp", street="Havnegade", neighbours=[LAMP1])
        downs = f"application/{gw.app}/device/+/command/down"
        async with mqtt_client(mosquitto_broker, downs) as (client, got):
            for eui in (LAMP1, LAMP2):
                await send_up(client, gw, eui, 1, lamp_status())
            await wait_for(lambda: gw.counter("processed") == 2, "lamps heard")
            # in time: LAMP1 sees someone, LAMP2's override goes out with its expiry
            await send_up(
                client, gw, LAMP1, 2, payload("lamp_presence", {"road_users": 1, "dim_level": 100})
            )
            await wait_for(lambda: any(LAMP2 in t for t, _ in got), "override to LAMP2")
            first = next(c for c in gw.gateway.commands.for_device(LAMP2))
            assert first.source == "rule" and first.expires_at == first.created_at + 45
            sent = json.loads(next(p for t, p in got if LAMP2 in t))
            assert sent["id"] == first.id
            expected = datetime.fromtimestamp(first.created_at + 45, UTC)
            assert datetime.fromisoformat(sent["expiresAt"]) == expected
            # an API command for LAMP1 sits in ChirpStack's queue (no txack yet) ...
            api = await gw.http.post(
                f"/api/v1/devices/{LAMP1}/commands",
                json={
                    "message": "lamp_override",
                    "fields": {"dim_level": 40, "duration_s": 600},
                    "confirmed": False,  # out of ChirpStack's queue at its txack
                },
            )
            assert api.status_code == 202, api.text
            api_id = api.json()["id"]
            await wait_for(lambda: any(api_id.encode() in p for _, p in got), "API command out")
            # ... so the override planned for LAMP1 by LAMP2's report waits behind it
            await send_up(
                client, gw, LAMP2, 2, payload("lamp_presence", {"road_users": 1, "dim_level": 100})
            )
            await wait_for(
                lambda: any(c.source == "rule" for c in gw.gateway.commands.for_device(LAMP1)),
                "override planned for LAMP1",
            )
            late = next(c for c in gw.gateway.commands.for_device(LAMP1) if c.source == "rule")
            assert late.published_at is None
            # longer than its hold: the road user has gone on (the harness runs maintenance
            # hourly, so only the dispatch at the txack below can expire it)
            clock.advance(46)
            await client.publish(
                ev.topic(gw.app, LAMP1, "txack"), ev.dumps(ev.txack(gw.app, LAMP1, api_id)), qos=1
            )
            await wait_for(lambda: late.state == "expired", "late override expired")
            assert late.error == "timed out before it could be sent"
            await gw.gateway.flush()
        assert not any(late.id.encode() in p for _, p in got)  # never handed to ChirpStack
        stored = await gw.gateway.store.get_command(late.id)
        assert stored is not None and stored.state == "expired"


async def test_restart_mid_stream_loses_nothing_and_repeats_nothing(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    from tests.gateway.harness import start

    total = 300
    async with running_gateway(mosquitto_broker, tmp_path) as first:
        await register(first, BIN, kind="bin")
        config, clock, app, base = first.config, first.clock, first.app, first.base
        async with mqtt_client(mosquitto_broker) as (client, _):
            for i in range(total // 2):
                await send_up(client, first, BIN, i + 1, bin_status(i % 100))
            await wait_for(lambda: first.counter("processed") >= 20, "some processed")
    # stopped mid-stream (graceful); ChirpStack keeps publishing at QoS 1 meanwhile
    async with mqtt_client(mosquitto_broker) as (client, _):
        for i in range(total // 2, total):
            await send_up(client, first, BIN, i + 1, bin_status(i % 100))
    second = await start(config, clock, app, base)  # same client id, same database
    try:

        async def stored() -> int:
            return int((await stats(second))["uplinks_stored"])

        await wait_for(lambda: _eq(stored, total), "every uplink after restart", timeout_s=20)
        history = (await second.http.get(f"/api/v1/devices/{BIN}/uplinks?limit=1000")).json()
        f_cnts = sorted(u["f_cnt"] for u in history["uplinks"])
        assert f_cnts == list(range(1, total + 1))
    finally:
        await second.stop()


async def _eq(get: Any, wanted: int) -> bool:
    return bool(await get() == wanted)


async def test_api_auth_errors_and_openapi(mosquitto_broker: Broker, tmp_path: Path) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        bare = {"Authorization": ""}
        for path in ("/api/v1/devices", "/api/v1/stats", "/api/v1/collection"):
            response = await gw.http.get(path, headers=bare)
            assert response.status_code == 401 and response.json()["message"]
            wrong = await gw.http.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
        assert (await gw.http.get("/healthz", headers=bare)).json() == {"status": "ok"}
        ready = await gw.http.get("/readyz", headers=bare)
        assert ready.status_code == 200 and ready.json()["ready"] is True
        metrics = (await gw.http.get("/metrics", headers=bare)).text
        for name in (
            "citypack_uplinks_total",
            "citypack_downlinks_total",
            "citypack_uplink_seconds_bucket",
            "citypack_devices",
        ):
            assert name in metrics
        for outcome in ("processed", "duplicate", "undecodable", "invalid_event"):
            assert f'citypack_uplinks_total{{outcome="{outcome}"}}' in metrics
        spec = (await gw.http.get("/openapi.json", headers=bare)).json()
        assert "/api/v1/devices/{dev_eui}/commands" in spec["paths"]
        bad = await gw.http.put("/api/v1/devices/nothex", json={"kind": "bin"})
        assert bad.status_code == 422 and bad.json()["message"]
        bad_kind = await gw.http.put(f"/api/v1/devices/{BIN}", json={"kind": "toaster"})
        assert bad_kind.status_code == 422 and "kind" in bad_kind.json()["message"]
        extra = await gw.http.put(f"/api/v1/devices/{BIN}", json={"kind": "bin", "colour": 1})
        assert extra.status_code == 422
        missing = await gw.http.get("/api/v1/devices/a84041000181eeee")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        created = await register(gw, BIN.upper(), kind="bin", name="x", neighbours=[LAMP1.upper()])
        assert created["dev_eui"] == BIN and created["neighbours"] == [LAMP1]
        updated = await register(gw, BIN, kind="bin", street="New")
        assert updated["name"] == "x" and updated["street"] == "New"  # idempotent update
        listing = (await gw.http.get("/api/v1/devices", params={"street": "New"})).json()
        assert listing["count"] == 1
        assert (await gw.http.get("/api/v1/devices", params={"kind": "lamp"})).json()["count"] == 0
        assert (await gw.http.get("/api/v1/commands/nope")).status_code == 404


async def test_crash_before_commit_loses_nothing(mosquitto_broker: Broker, tmp_path: Path) -> None:
    """Processed but not yet committed when the process dies: nothing was acknowledged, so the
    broker redelivers to the same session and the next gateway stores every uplink once."""
    import asyncio

    from tests.gateway.harness import start

    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        await register(gw, BIN, kind="bin")
        config, clock, app, base = gw.config, gw.clock, gw.app, gw.base
    slow = config.replace("store", batch_max=10_000, batch_interval_s=3600.0)
    first = await start(slow, clock, app, base)
    fleet = first.gateway.fleet
    if fleet is not None:
        # several instances: taking the dispatch job commits what is staged
        # (gateway/service.py _lead_dispatch). The job is taken on a session of its own
        # (gateway/store/pg_coordination.py), which on a slow machine may be set up only
        # after the first uplinks are staged. Once it is held, the job's first step is queued
        # ahead of any message still to come.
        await wait_for(lambda: "dispatch" in fleet.leading(), "the dispatch job taken")
    async with mqtt_client(mosquitto_broker) as (client, _):
        for i in range(41):
            sent = await send_up(client, first, BIN, i + 1, bin_status(i))
        # processed in order, so all 41 are staged once the last one is (the frame counter
        # check reads the batch); citypack_uplinks_total counts them only when they commit
        store, dev_addr = first.gateway.store, sent["devAddr"]
        await wait_for(lambda: store.f_cnt_payload(BIN, dev_addr, 41), "processed, not committed")
        assert first.counter("processed") == 0
    assert await first.gateway.store.uplinks(BIN, limit=100) == []  # nothing committed yet
    # crash: no flush, no close, no PUBACK
    first.task.cancel()
    await asyncio.gather(first.task, return_exceptions=True)
    await first.http.aclose()
    dead = first.gateway.store  # the dead process's handle: closed with nothing written
    dead.discard()
    await dead.close()
    second = await start(config, clock, app, base)
    try:

        async def stored() -> int:
            return int((await stats(second))["uplinks_stored"])

        await wait_for(lambda: _eq(stored, 41), "redelivered uplinks stored")
        history = (await second.http.get(f"/api/v1/devices/{BIN}/uplinks?limit=100")).json()
        assert sorted(u["f_cnt"] for u in history["uplinks"]) == list(range(1, 42))
    finally:
        await second.stop()


async def test_home_assistant_discovery_opt_in(mosquitto_broker: Broker, tmp_path: Path) -> None:
    # a prefix of its own: the broker is shared by the whole session and keeps the retained
    # configs of earlier runs (this test runs once per store)
    prefix = f"hatest{uuid.uuid4().hex[:8]}"
    async with running_gateway(
        mosquitto_broker, tmp_path, publish={"homeassistant": True, "discovery_prefix": prefix}
    ) as gw:
        await register(gw, LAMP1, kind="lamp", name="Lamp 1")
        async with mqtt_client(mosquitto_broker, f"{prefix}/+/{LAMP1}/+/config") as (client, got):
            await send_up(client, gw, LAMP1, 1, lamp_status())
            await wait_for(lambda: len(got) >= 4, "discovery configs")
        configs = {t.split("/")[1] + "/" + t.split("/")[3]: json.loads(p) for t, p in got}
        light = configs["sensor/dim_level"]
        assert light["state_topic"] == f"{gw.base}/devices/{LAMP1}/state"
        assert light["unique_id"] == f"citypack_{LAMP1}_dim_level"
        assert {a["topic"] for a in light["availability"]} == {
            f"{gw.base}/bridge/{gw.config.mqtt.client_id}/state",  # this instance's
            f"{gw.base}/devices/{LAMP1}/availability",
        }
        assert configs["binary_sensor/lamp_failure"]["device_class"] == "problem"


async def test_broker_restart_reconnects_and_readyz_follows(tmp_path: Path) -> None:
    from tests.helpers import procs

    if procs.find_program("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    directory = tmp_path / "broker"
    directory.mkdir()
    broker = procs.start_mosquitto(persistence=True, directory=directory)
    try:
        async with running_gateway(broker, tmp_path) as gw:
            await register(gw, BIN, kind="bin")
            assert (await gw.http.get("/readyz")).status_code == 200
            broker.stop()
            await wait_for(lambda: not gw.gateway.bridge.connected.is_set(), "disconnect noticed")
            down = await gw.http.get("/readyz")
            assert down.status_code == 503 and down.json()["mqtt"] is False
            broker = procs.start_mosquitto(port=broker.port, persistence=True, directory=directory)
            await wait_for(gw.gateway.bridge.connected.is_set, "reconnected", timeout_s=20)
            async with mqtt_client(broker) as (client, _):
                await send_up(client, gw, BIN, 1, bin_status(20))
                await wait_for(lambda: gw.counter("processed") == 1, "uplink after reconnect")
            assert (await gw.http.get("/readyz")).status_code == 200
    finally:
        broker.stop()


async def test_fport_zero_refreshes_availability_only(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        await register(gw, BIN, kind="bin")
        async with mqtt_client(mosquitto_broker) as (client, _):
            await send_up(client, gw, BIN, 1, (0, b""), rssi=-77)
            await wait_for(lambda: gw.counter("processed") == 1, "MAC-only uplink")
        s = await stats(gw)
        assert s["uplinks_stored"] == 0 and s["dead_letters"] == 0
        device = gw.gateway.devices[BIN]
        assert device.availability == "online" and device.last_rssi == -77
        assert device.reported == {}
