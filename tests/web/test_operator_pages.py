"""Issue 20's dashboard in headless Chromium: the readiness badge from /readyz, lamps coloured by
level, street names above the markers, times in the city's zone (24-hour, ISO 8601 dates) and
the demo's simulated clock, the device list with search and filters, the fleet-wide commands page
with cancel, the lamp profile as a timeline."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from gateway.service import Gateway
from tests.gateway.harness import TOKEN, Clock, make_config, mqtt_client, running_gateway, wait_for
from tests.helpers import postgres
from tests.helpers.procs import Broker, free_port
from tests.web.browser import browser_page, expect, login, screenshot
from tests.web.test_dashboard import (
    BIN1,
    BIN2,
    BIN3,
    LAMP1,
    LAMP2,
    LAMP3,
    LAMP_MID,
    Fleet,
    base_url,
    node_looks,
    populate,
)

pytestmark = pytest.mark.broker

LAMP_LOW, LAMP_HIGH = "#7d6b2c", "#fff36b"
PROFILE = {
    "config_version": 5,
    "base_level": 60,
    "boost_level": 100,
    "hold_time_s": 90,
    "steps": [
        {"anchor": "sunset", "offset_min": 0, "dim_level": 100},
        {"anchor": "clock", "offset_min": 1380, "dim_level": 40},
        {"anchor": "sunrise", "offset_min": -15, "dim_level": 0},
    ],
}


async def rows(page: object, selector: str) -> list[str]:
    return await page.eval_on_selector_all(selector, "r => r.map(x => x.dataset.devEui)")  # type: ignore[attr-defined]


async def test_operator_pages(mosquitto_broker: Broker, tmp_path: Path) -> None:
    down = "application/+/device/+/command/down"
    async with (
        running_gateway(mosquitto_broker, tmp_path, web={"timezone": "Europe/Copenhagen"}) as gw,
        mqtt_client(mosquitto_broker, down) as (client, got),
    ):
        fleet = Fleet(gw, client)
        await populate(gw, fleet)
        await gw.http.put(f"/api/v1/devices/{BIN1}", json={"kind": "bin", "name": "bin 1",
                          "latitude": 56.1572, "longitude": 10.2107, "street": "Søndergade",
                          "group": "midtbyen"})  # fmt: skip
        await fleet.up(LAMP2, "lamp_status", {"dim_level": 20, "active_power_w": 12})
        await fleet.processed(7)
        async with browser_page() as page:
            await login(page, base_url(gw), TOKEN)
            await page.wait_for_selector("#live[data-status=live]")
            # the gateway's own readiness, not just the stream's
            await page.wait_for_selector("#ready[data-status=ready]:has-text('gateway ready')")
            # the city's clock: 2026-03-02 10:15:42 UTC + 4 h is 15:15:42 in Copenhagen (CET)
            await expect(page.locator("#clock")).to_contain_text("2026-03-02 15:15")
            assert (await page.inner_text("#clock")).endswith("Europe/Copenhagen")
            offline = page.locator("#events li[data-type=device_offline] time")
            assert await offline.inner_text() == "15:15:42"
            # lamps by level: 70 % mid, 20 % low
            await expect(page.locator("svg.map .node")).to_have_count(6)
            looks = await node_looks(page)
            assert looks[LAMP1] == ("lit", LAMP_MID) and looks[LAMP2] == ("lit", LAMP_LOW)
            await fleet.up(LAMP1, "lamp_status", {"dim_level": 100, "active_power_w": 60})
            await page.wait_for_selector(
                f"svg.map .node[data-dev-eui='{LAMP1}'][fill='{LAMP_HIGH}']"
            )
            # layers: bins, then lamps, then alarms; street names last, above every marker
            order = await page.eval_on_selector_all(
                "svg.map > *", "e => e.map(x => x.classList[0] + ':' + (x.dataset.kind || ''))"
            )
            nodes = [o for o in order if o.startswith("node:")]
            assert nodes.index("node:lamp") > nodes.index("node:bin")
            assert order[-1] == "street-name:" and order.index("street-name:") > max(
                i for i, o in enumerate(order) if o.startswith("node:")
            )
            await screenshot(page, "map-levels")

            # the device list: search and filters, kept in the address
            await page.click("nav a[data-route=devices]")
            await expect(page.locator("#device-list tbody tr")).to_have_count(7)
            await page.fill("#filters input[name=q]", "lamp")
            await expect(page.locator("#device-list tbody tr")).to_have_count(4)
            await page.fill("#filters input[name=q]", "")
            await page.select_option("#filters select[name=kind]", "bin")
            assert sorted(await rows(page, "#device-list tbody tr")) == [BIN1, BIN2, BIN3]
            await page.select_option("#filters select[name=group]", "midtbyen")
            assert await rows(page, "#device-list tbody tr") == [BIN1]
            assert "kind=bin" in page.url and "group=midtbyen" in page.url
            await page.select_option("#filters select[name=group]", "")
            await page.select_option("#filters select[name=kind]", "")
            await page.select_option("#filters select[name=availability]", "offline")
            assert await rows(page, "#device-list tbody tr") == [LAMP3]
            await page.select_option("#filters select[name=availability]", "")
            await page.select_option("#filters select[name=alarm]", "yes")
            assert await rows(page, "#device-list tbody tr") == [LAMP3]  # burning by day
            await page.select_option("#filters select[name=street]", "Søndergade")
            assert await page.inner_text("#count") == "1 of 7"
            await screenshot(page, "devices")

            # the fleet's commands: the first is at ChirpStack, the second waits in the gateway
            body = {"message": "lamp_override", "fields": {"dim_level": 90, "duration_s": 60}}
            first = (await gw.http.post(f"/api/v1/devices/{LAMP2}/commands", json=body)).json()
            await wait_for(lambda: gw.gateway.commands.active[first["id"]].published_at, "sent")
            gw.clock.advance(1)
            second = (await gw.http.post(f"/api/v1/devices/{LAMP2}/commands", json=body)).json()
            await page.click("nav a[data-route=commands]")
            fleet_rows = page.locator("#fleet tbody tr")
            await expect(fleet_rows).to_have_count(2)
            assert (
                await page.locator(f"#fleet tr[data-command-id='{first['id']}'] button").count()
                == 0
            )
            await page.click(f"#fleet tr[data-command-id='{second['id']}'] button[data-cancel]")
            await page.wait_for_selector("#fleet-result:has-text('cancelled lamp_override')")
            await expect(fleet_rows).to_have_count(1)
            await page.select_option("#fleet-state", "cancelled")
            await page.wait_for_selector(
                f"#fleet tr[data-command-id='{second['id']}'][data-state=cancelled]"
            )
            assert (await gw.http.get(f"/api/v1/commands/{second['id']}")).json()[
                "state"
            ] == "cancelled"
            assert [t for t, _ in got].count(
                f"application/{gw.app}/device/{LAMP2}/command/down"
            ) == 1
            await screenshot(page, "fleet-commands")

            # the lamp's night program as a timeline
            response = await gw.http.post(
                f"/api/v1/devices/{LAMP1}/commands",
                json={"message": "lamp_profile", "fields": PROFILE},
            )
            assert response.status_code == 202, response.text
            await page.goto(f"{base_url(gw)}/#/device/{LAMP1}")
            timeline = page.locator("ol.timeline[data-profile-version='5'] li")
            await expect(timeline).to_have_count(4)
            texts = [t.replace("\n", " ") for t in await timeline.all_inner_texts()]
            assert texts == [
                "from the start 60%",
                "sunset → 100%",
                "23:00 → 40%",
                "sunrise − 15 min → off",
            ]
            assert "for 90 s" in await page.inner_text(".device")
            assert "_samples" not in await page.inner_text(".device")
            await screenshot(page, "profile")


async def test_badge_says_degraded_without_mqtt_and_shows_the_simulated_clock(
    tmp_path: Path,
) -> None:
    # a gateway whose broker is not there: its API answers, /readyz says no MQTT
    dead = Broker("127.0.0.1", free_port(), process=None, directory=tmp_path)  # type: ignore[arg-type]
    config = make_config(
        dead, tmp_path / "g.db", app=str(uuid.uuid4()), base="cpdead",
        web={"sim_epoch": 1_900_000_000.0, "sim_wall_start": 1_772_446_542.0, "sim_speed": 60.0},
    )  # fmt: skip
    gateway = Gateway(config, api_token=TOKEN, clock=Clock())
    task = asyncio.create_task(gateway.run())
    try:
        await wait_for(gateway.started.is_set, "gateway start")
        async with browser_page() as page:
            await login(page, f"http://127.0.0.1:{gateway.api_port}", TOKEN)
            await page.wait_for_selector("#ready[data-status=degraded]:has-text('no MQTT')")
            # 1,900,000,000 is 2030-03-17 17:46:40 UTC; the page runs the simulated clock
            await expect(page.locator("#clock")).to_contain_text("simulated 2030-03-17 17:4")
            await screenshot(page, "degraded")
    finally:
        gateway.stop()
        await asyncio.wait_for(task, 20)
        await gateway.close()


@pytest.mark.postgres
async def test_instances_badge_names_an_instance_not_heard_from(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    # one instance running on PostgreSQL, and by construction a second one whose last heartbeat
    # is a minute old (it died): the fleet badge says 1 of 2 and names the silent one
    with postgres.database() as url:
        async with (
            running_gateway(mosquitto_broker, tmp_path, store={"url": url}) as gw,
            browser_page() as page,
        ):
            await login(page, base_url(gw), TOKEN)
            await page.wait_for_selector("#ready[data-status=ready]")
            # one instance: its readiness is the badge before, no fleet badge
            assert await page.locator("#instances").is_hidden()
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(
                    "INSERT INTO instances (client_id, started_at, heartbeat_at, host)"
                    " VALUES ('gw-gone', %s, %s, 'pole-7')",
                    (time.time() - 120, time.time() - 60),
                )
            badge = page.locator("#instances[data-status=degraded]")
            await expect(badge).to_have_text("1 of 2 instances up", timeout=15_000)
            assert await badge.get_attribute("data-down") == "gw-gone"
            title = await badge.get_attribute("title") or ""
            assert "gw-gone on pole-7: not heard from" in title
            assert f"{gw.config.mqtt.client_id}" in title and ": up" in title
            await screenshot(page, "instances")
