"""``GET /api/v1/collection/route`` on a running gateway: JSON and GPX from bins that reported
over MQTT, the bearer token, and a route config that cannot work (the list keeps working)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.gateway.harness import Running, mqtt_client, running_gateway, wait_for
from tests.gateway.test_service import bin_status, register, send_up
from tests.helpers.procs import Broker

pytestmark = pytest.mark.broker

FULL = ("a84041000181c0a1", "a84041000181c0a2", "a84041000181c0a3")
EMPTY = "a84041000181c0a9"
ROUTES = {"depot_latitude": 56.150, "depot_longitude": 10.200, "trucks": 2, "capacity_bins": 10}


async def _city(gw: Running, broker: Broker) -> None:
    for i, eui in enumerate((*FULL, EMPTY)):
        lat = 56.151 + i / 1000
        await register(gw, eui, kind="bin", name=f"B{i}", latitude=lat, longitude=10.2)
    async with mqtt_client(broker) as (client, _):
        for eui in FULL:
            await send_up(client, gw, eui, 1, bin_status(92))
        await send_up(client, gw, EMPTY, 1, bin_status(10))
        await wait_for(lambda: gw.counter("processed") == 4, "uplinks")


async def test_route_json_and_gpx(mosquitto_broker: Broker, tmp_path: Path) -> None:
    async with running_gateway(mosquitto_broker, tmp_path, routes=ROUTES) as gw:
        await _city(gw, mosquitto_broker)
        response = await gw.http.get("/api/v1/collection/route")
        assert response.status_code == 200, response.text
        plan = response.json()
        assert plan["distances"] == "great_circle" and plan["unassigned"] == []
        routed = sorted(s["dev_eui"] for r in plan["routes"] for s in r["stops"])
        assert routed == sorted(FULL)  # the 10 % bin is not on today's round
        first = plan["routes"][0]
        assert first["truck"] == 1 and first["km"] > 0 and first["duration_s"] > 0
        assert first["stops"][0]["fill_percent"] == 92
        assert first["geometry"]["coordinates"][0] == [10.2, 56.15]
        gpx = await gw.http.get("/api/v1/collection/route", params={"format": "gpx"})
        assert gpx.status_code == 200 and gpx.headers["content-type"] == "application/gpx+xml"
        root = ET.fromstring(gpx.text)
        assert len(root.findall("{http://www.topografix.com/GPX/1/1}wpt")) == 3
        anonymous = await gw.http.get(
            "/api/v1/collection/route", headers={"Authorization": "Bearer wrong"}
        )
        assert anonymous.status_code == 401


async def test_a_route_config_that_cannot_work_leaves_the_list_working(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(mosquitto_broker, tmp_path, routes={**ROUTES, "trucks": 0}) as gw:
        await _city(gw, mosquitto_broker)
        response = await gw.http.get("/api/v1/collection/route")
        assert response.status_code == 422
        assert response.json() == {
            "error": "route_unavailable",
            "message": "routes.trucks = 0: no truck to plan a route for",
        }
        listing = await gw.http.get("/api/v1/collection")
        assert listing.status_code == 200 and listing.json()["count"] == 3


async def test_cli_collection_route_asks_the_gateway(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    from tests.gateway.harness import TOKEN
    from tools.cli import main

    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    async with running_gateway(mosquitto_broker, tmp_path, routes=ROUTES) as gw:
        await _city(gw, mosquitto_broker)
        api = str(gw.http.base_url)
        out = tmp_path / "route.json"
        argv = ["collection", "route", "--api", api, "--token-file", str(token)]
        code = await asyncio.to_thread(main, [*argv, "--format", "json", "-o", str(out)])
        assert code == 0
        plan = json.loads(out.read_text())
        assert sorted(s["dev_eui"] for r in plan["routes"] for s in r["stops"]) == sorted(FULL)
        gpx = tmp_path / "route.gpx"
        assert await asyncio.to_thread(main, [*argv, "--format", "gpx", "-o", str(gpx)]) == 0
        assert ET.parse(gpx).getroot().get("creator") == "citypack"
        text = tmp_path / "route.txt"
        assert await asyncio.to_thread(main, [*argv, "-o", str(text)]) == 0
        assert text.read_text().startswith("truck 1: ")
        (tmp_path / "wrong").write_text("nope\n")
        wrong = ["collection", "route", "--api", api, "--token-file", str(tmp_path / "wrong")]
        assert await asyncio.to_thread(main, wrong) == 2  # 401, one line on stderr
