"""Issue 20's verbs against a real mosquitto: cancel a command, decommission a device, register
many devices per request, the local /docs page, the fleet-wide command list."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gateway import events as ev
from tests.gateway.harness import Clock, mqtt_client, running_gateway, wait_for
from tests.gateway.test_service import BIN, LAMP1, bin_status, lamp_status, register, send_up
from tests.helpers.procs import Broker

pytestmark = pytest.mark.broker

OVERRIDE = {"message": "lamp_override", "fields": {"dim_level": 100, "duration_s": 60}}
LATER = {"message": "lamp_override", "fields": {"dim_level": 30, "duration_s": 60}}


async def test_cancel_only_what_chirpstack_does_not_hold(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    clock = Clock()
    async with running_gateway(mosquitto_broker, tmp_path, clock=clock) as gw:
        await register(gw, LAMP1, kind="lamp")
        down = f"application/{gw.app}/device/{LAMP1}/command/down"
        async with mqtt_client(mosquitto_broker, down, f"{gw.base}/events/#") as (client, got):
            await send_up(client, gw, LAMP1, 1, lamp_status())
            await wait_for(lambda: gw.counter("processed") == 1, "uplink")
            first = (await gw.http.post(f"/api/v1/devices/{LAMP1}/commands", json=OVERRIDE)).json()
            await wait_for(lambda: any(t == down for t, _ in got), "first command/down")
            await wait_for(
                lambda: gw.gateway.commands.active[first["id"]].published_at, "marked published"
            )
            clock.advance(1)
            # ChirpStack holds the first one (no txack yet): the second waits in the gateway
            second = (await gw.http.post(f"/api/v1/devices/{LAMP1}/commands", json=LATER)).json()
            assert gw.gateway.commands.next_to_send(LAMP1) is None
            refused = await gw.http.post(f"/api/v1/commands/{first['id']}/cancel")
            assert refused.status_code == 409 and refused.json()["error"] == "not_cancellable"
            assert "ChirpStack's queue" in refused.json()["message"]
            ok = await gw.http.post(f"/api/v1/commands/{second['id']}/cancel")
            assert ok.status_code == 200 and ok.json()["state"] == "cancelled"
            assert ok.json()["error"] == "cancelled by api" and ok.json()["finished_at"]
            await wait_for(
                lambda: any(t.endswith("/events/command_cancelled") for t, _ in got), "event"
            )
            again = await gw.http.post(f"/api/v1/commands/{second['id']}/cancel")
            assert again.status_code == 409 and "already cancelled" in again.json()["message"]
            missing = await gw.http.post("/api/v1/commands/nope/cancel")
            assert missing.status_code == 404
            # once ChirpStack sent the first, nothing is left to send: the cancelled one never goes
            await client.publish(
                ev.topic(gw.app, LAMP1, "txack"),
                ev.dumps(ev.txack(gw.app, LAMP1, first["id"])),
                qos=1,
            )
            await wait_for(lambda: gw.gateway.commands.active[first["id"]].state == "sent", "tx")
            assert gw.gateway.commands.next_to_send(LAMP1) is None
            assert [t for t, _ in got].count(down) == 1
        listed = (await gw.http.get("/api/v1/commands", params={"state": "cancelled"})).json()
        assert [c["id"] for c in listed["commands"]] == [second["id"]]
        active = (await gw.http.get("/api/v1/commands", params={"state": "active"})).json()
        active_ids = [c["id"] for c in active["commands"]]
        assert first["id"] in active_ids and second["id"] not in active_ids
        everything = [c["id"] for c in (await gw.http.get("/api/v1/commands")).json()["commands"]]
        assert everything.index(second["id"]) < everything.index(first["id"])  # newest first
        bad = await gw.http.get("/api/v1/commands", params={"state": "lost"})
        assert bad.status_code == 422 and "'lost'" in bad.json()["message"]
        stats = (await gw.http.get("/api/v1/stats")).json()
        assert stats["commands_by_state"]["cancelled"] == 1
        metrics = (await gw.http.get("/metrics")).text
        assert 'citypack_downlinks_total{state="cancelled"} 1.0' in metrics


async def test_decommission_keeps_history_and_silences_the_device(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    clock = Clock()
    async with running_gateway(mosquitto_broker, tmp_path, clock=clock) as gw:
        await register(gw, BIN, kind="bin", name="Bin 1", report_interval_s=600)
        state_topic = f"{gw.base}/devices/{BIN}/state"
        availability_topic = f"{gw.base}/devices/{BIN}/availability"
        async with mqtt_client(mosquitto_broker, f"{gw.base}/#") as (client, got):
            await send_up(client, gw, BIN, 1, bin_status(40))
            await wait_for(lambda: (availability_topic, b"online") in got, "online")
            queued = await gw.http.post(
                f"/api/v1/devices/{BIN}/commands",
                json={"message": "bin_config", "fields": {"config_version": 2}},
            )
            assert queued.status_code == 202
            await wait_for(
                lambda: gw.gateway.commands.active[queued.json()["id"]].published_at, "published"
            )
            waiting = await gw.http.post(
                f"/api/v1/devices/{BIN}/commands",
                json={"message": "bin_config", "fields": {"config_version": 3}},
            )
            gone = await gw.http.delete(f"/api/v1/devices/{BIN}")
            assert gone.status_code == 200, gone.text
            doc = gone.json()
            assert doc["decommissioned_at"] == clock.now
            # what ChirpStack does not hold yet is cancelled; what it holds runs to its end
            assert doc["cancelled_commands"] == [waiting.json()["id"]]
            # retained topics are cleared with empty retained messages
            await wait_for(lambda: (state_topic, b"") in got, "state cleared")
            await wait_for(lambda: (availability_topic, b"") in got, "availability cleared")
            await wait_for(
                lambda: any(t.endswith("/events/device_decommissioned") for t, _ in got), "event"
            )
            # a full bin that still reports: stored as history, no alarm, no twin published
            published_before = [t for t, _ in got].count(state_topic)
            await send_up(client, gw, BIN, 2, bin_status(95))
            await wait_for(lambda: gw.counter("processed") == 2, "second uplink")
            await gw.gateway.flush()
            clock.advance(7200)
            gw.gateway.tick()
            await gw.gateway.flush()
        assert [t for t, _ in got].count(state_topic) == published_before
        history = (await gw.http.get(f"/api/v1/devices/{BIN}/uplinks")).json()["uplinks"]
        assert [u["f_cnt"] for u in history] == [2, 1]
        types = [
            e["type"] for e in (await gw.http.get(f"/api/v1/events?dev_eui={BIN}")).json()["events"]
        ]
        assert "bin_full" not in types and "device_offline" not in types
        assert "device_decommissioned" in types
        command = (await gw.http.get(f"/api/v1/commands/{queued.json()['id']}")).json()
        assert command["state"] == "queued" and command["published_at"]
        listed = (await gw.http.get("/api/v1/devices")).json()
        assert listed["count"] == 0
        retired = (await gw.http.get("/api/v1/devices", params={"decommissioned": True})).json()
        assert [d["dev_eui"] for d in retired["devices"]] == [BIN]
        refused = await gw.http.post(
            f"/api/v1/devices/{BIN}/commands",
            json={"message": "bin_config", "fields": {"config_version": 3}},
        )
        assert refused.status_code == 422 and "decommissioned" in refused.json()["message"]
        metrics = (await gw.http.get("/metrics")).text
        assert 'citypack_devices{availability="online",kind="bin"}' not in metrics
        assert (await gw.http.delete(f"/api/v1/devices/{BIN}")).status_code == 200  # idempotent
        assert (await gw.http.delete("/api/v1/devices/00000000000000aa")).status_code == 404
        back = await register(gw, BIN, kind="bin", name="Bin 1")
        assert back["decommissioned_at"] is None
        assert (await gw.http.get("/api/v1/devices")).json()["count"] == 1


async def test_batch_registration_reports_each_entry(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        body = {
            "devices": [
                {"dev_eui": BIN, "kind": "bin", "name": "B", "latitude": 56.1, "longitude": 10.2},
                {"dev_eui": LAMP1.upper(), "kind": "lamp", "street": "Mejlgade"},
                {"dev_eui": "xyz", "kind": "lamp"},
                {"dev_eui": "a84041000181d0ff", "kind": "tree"},
            ]
        }
        first = await gw.http.put("/api/v1/devices", json=body)
        assert first.status_code == 200, first.text
        results = first.json()["results"]
        assert [r.get("outcome") for r in results] == ["created", "created", None, None]
        assert "dev_eui" in results[2]["error"] and "kind" in results[3]["error"]
        assert gw.gateway.devices[LAMP1].street == "Mejlgade"
        second = (await gw.http.put("/api/v1/devices", json=body)).json()["results"]
        assert [r.get("outcome") for r in second[:2]] == ["unchanged", "unchanged"]
        body["devices"][1]["street"] = "Graven"
        third = (await gw.http.put("/api/v1/devices", json=body)).json()["results"]
        assert [r.get("outcome") for r in third[:2]] == ["unchanged", "updated"]
        too_many = {"devices": [{"dev_eui": BIN, "kind": "bin"}] * 1001}
        assert (await gw.http.put("/api/v1/devices", json=too_many)).status_code == 422


async def test_docs_page_is_served_from_local_files(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        page = await gw.http.get("/docs", headers={"Authorization": ""})
        assert page.status_code == 200
        assert "/docs/static/swagger-ui-bundle.js" in page.text and "/openapi.json" in page.text
        assert "cdn" not in page.text.lower() and "https://" not in page.text
        script = await gw.http.get("/docs/static/swagger-ui-bundle.js")
        assert script.status_code == 200 and "SwaggerUIBundle" in script.text
        css = await gw.http.get("/docs/static/swagger-ui.css")
        assert css.status_code == 200


async def test_device_json_hides_rule_scratch_state(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        await register(gw, BIN, kind="bin")
        async with mqtt_client(mosquitto_broker) as (client, _):
            await send_up(client, gw, BIN, 1, bin_status(40))
            await wait_for(lambda: gw.counter("processed") == 1, "uplink")
        assert "_samples" in gw.gateway.devices[BIN].derived  # the forecast keeps its samples
        device = (await gw.http.get(f"/api/v1/devices/{BIN}")).json()
        assert device["derived"]["fill_percent"] == 40
        assert not [k for k in device["derived"] if k.startswith("_")]
        listed = (await gw.http.get("/api/v1/devices")).json()["devices"][0]
        assert not [k for k in listed["derived"] if k.startswith("_")]


async def test_command_errors_name_the_message_once(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        await register(gw, BIN, kind="bin")
        response = await gw.http.post(
            f"/api/v1/devices/{BIN}/commands", json={"message": "bin_config", "fields": {}}
        )
        assert response.status_code == 422
        message = response.json()["message"]
        assert message.startswith("bin_config: ") and message.count("bin_config") == 1
