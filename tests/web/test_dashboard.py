"""The operator's dashboard (issue 9) end to end: a gateway against a private mosquitto, fed with
ChirpStack-shaped events, and the page in headless Debian Chromium.

Colours are the contract of gateway/web/static/model.js ``COLOURS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import math
import struct
import threading
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from protocol import codec
from tests.gateway import events as ev
from tests.gateway.harness import TOKEN, Running, mqtt_client, running_gateway, wait_for
from tests.helpers.procs import Broker
from tests.web.browser import browser_page, expect, login, screenshot

pytestmark = pytest.mark.broker

GREEN, AMBER, ORANGE, RED = "#2e9e5b", "#e0a526", "#e0651b", "#c4162a"
LAMP_DARK, LAMP_MID, GREY = "#2f3b52", "#e3c04a", "#9aa0a6"

LAT, LON = "latitude", "longitude"

# a short street of Aarhus: three bins and three lamps, and one node not placed yet
NODES: dict[str, dict[str, Any]] = {
    "a84041000181c001": {"kind": "bin", "name": "bin 1", LAT: 56.1572, LON: 10.2107},
    "a84041000181c002": {"kind": "bin", "name": "bin 2", LAT: 56.1575, LON: 10.2118},
    "a84041000181c003": {"kind": "bin", "name": "bin 3", LAT: 56.1578, LON: 10.2129},
    "a84041000181d001": {
        "kind": "lamp",
        "name": "lamp 1",
        LAT: 56.1570,
        LON: 10.2110,
    },
    "a84041000181d002": {
        "kind": "lamp",
        "name": "lamp 2",
        LAT: 56.1573,
        LON: 10.2121,
    },
    "a84041000181d003": {
        "kind": "lamp",
        "name": "lamp 3",
        LAT: 56.1576,
        LON: 10.2132,
    },
    "a84041000181d004": {"kind": "lamp", "name": "lamp in store"},
}
BIN1, BIN2, BIN3 = "a84041000181c001", "a84041000181c002", "a84041000181c003"
LAMP1, LAMP2, LAMP3 = "a84041000181d001", "a84041000181d002", "a84041000181d003"


class Fleet:
    def __init__(self, gw: Running, client: Any) -> None:
        self.gw = gw
        self.client = client
        self.f_cnt = 0

    async def up(self, dev_eui: str, message: str, fields: dict[str, Any]) -> None:
        self.f_cnt += 1
        f_port, data = codec.encode(message, fields)
        # ChirpStack stamps the reception time: the test's clock, which the rules read (day burner)
        when = datetime.fromtimestamp(self.gw.clock.now, UTC).isoformat()
        doc = ev.up(self.gw.app, dev_eui, f_cnt=self.f_cnt, f_port=f_port, data=data, time=when)
        await self.client.publish(ev.topic(self.gw.app, dev_eui, "up"), ev.dumps(doc), qos=1)

    async def processed(self, count: int) -> None:
        await wait_for(lambda: self.gw.counter("processed") >= count, f"{count} uplinks processed")


async def populate(gw: Running, fleet: Fleet) -> None:
    """Lamp 3 (lit at 10:15 UTC: a day burner) goes silent; the others report: bins at 20, 65
    and 90 %, lamps at 70 and 0 %."""
    for dev_eui, body in NODES.items():
        street = "Søndergade" if LAT in body else ""
        response = await gw.http.put(f"/api/v1/devices/{dev_eui}", json={**body, "street": street})
        assert response.status_code == 200, response.text
    await fleet.up(LAMP3, "lamp_status", {"dim_level": 50, "active_power_w": 30})
    await fleet.processed(1)
    gw.clock.advance(4 * 3600)  # past 2.5 × the lamp interval
    gw.gateway.tick()
    await gw.gateway.flush()
    assert gw.gateway.devices[LAMP3].availability == "offline"
    for dev_eui, fill in ((BIN1, 20), (BIN2, 65), (BIN3, 90)):
        await fleet.up(
            dev_eui,
            "bin_status",
            {"fill_percent": fill, "temperature_c": 18, "battery_percent": 85},
        )
    await fleet.up(LAMP1, "lamp_status", {"dim_level": 70, "active_power_w": 42})
    await fleet.up(LAMP2, "lamp_status", {"dim_level": 0, "active_power_w": 0})
    await fleet.processed(6)


def base_url(gw: Running) -> str:
    return f"http://127.0.0.1:{gw.gateway.api_port}"


async def node_looks(page: Any) -> dict[str, tuple[str, str]]:
    rows = await page.eval_on_selector_all(
        "svg.map .node",
        "nodes => nodes.map(n => [n.dataset.devEui, n.dataset.look, n.getAttribute('fill')])",
    )
    return {eui: (look, fill) for eui, look, fill in rows}


async def test_map_lists_and_a_live_alarm(mosquitto_broker: Broker, tmp_path: Path) -> None:
    async with (
        running_gateway(mosquitto_broker, tmp_path) as gw,
        mqtt_client(mosquitto_broker) as (client, _),
    ):
        fleet = Fleet(gw, client)
        await populate(gw, fleet)
        async with browser_page() as page:
            await login(page, base_url(gw), TOKEN)
            await page.wait_for_selector("#live[data-status=live]")
            # expect() polls from Python: the page's CSP forbids the eval wait_for_function needs
            await expect(page.locator("svg.map .node")).to_have_count(6)
            looks = await node_looks(page)
            assert looks == {
                BIN1: ("empty", GREEN),
                BIN2: ("filling", AMBER),
                BIN3: ("full", ORANGE),
                LAMP1: ("lit", LAMP_MID),
                LAMP2: ("dark", LAMP_DARK),
                LAMP3: ("offline", GREY),
            }
            assert "1 node(s) without a position" in await page.inner_text(".unplaced")
            streets = await page.eval_on_selector_all(
                "svg.map .street", "s => s.map(p => [p.dataset.street, p.points.length])"
            )
            assert streets == [["Søndergade", 6]]
            # lists: the full bin is to be emptied today, lamp 3 is silent
            await page.wait_for_selector(f"#collection tr[data-dev-eui='{BIN3}']")
            assert await page.locator("#collection tbody tr").count() == 1
            assert await page.locator(f"#silent tr[data-dev-eui='{LAMP3}']").count() == 1
            assert await page.locator(f"#silent tr[data-dev-eui='{LAMP1}']").count() == 0
            assert await page.locator("#events li[data-type=device_offline]").count() == 1
            await screenshot(page, "map")

            # a fire alarm arrives: it shows up without a reload
            await page.evaluate("window.__sameDocument = true")
            await page.evaluate("document.querySelector('svg.map').dataset.mark = 'before'")
            await fleet.up(BIN1, "bin_alarm", {"alarm": "fire", "value": 85, "fill_percent": 20})
            await page.wait_for_selector(f"#events li[data-type=bin_fire][data-dev-eui='{BIN1}']")
            await page.wait_for_selector(f"svg.map .node[data-dev-eui='{BIN1}'][data-look=alarm]")
            assert (await node_looks(page))[BIN1] == ("alarm", RED)
            # alarms stand out, even on an offline node (lamp 3 was burning by day when last heard)
            halos = await page.eval_on_selector_all(
                "svg.map .halo", "h => h.map(c => c.dataset.devEui)"
            )
            assert sorted(halos) == [BIN1, LAMP3]
            assert await page.get_attribute(f".node[data-dev-eui='{LAMP3}']", "data-alarms") == (
                "day_burner"
            )
            assert await page.evaluate("window.__sameDocument") is True
            # restyled in place, not redrawn
            assert await page.get_attribute("svg.map", "data-mark") == "before"
            await screenshot(page, "map-alarm")

            # the CSV export goes through the API with the bearer token
            async with page.expect_download() as download_info:
                await page.click("#csv")
            download = await download_info.value
            csv_path = tmp_path / "collection.csv"
            await download.save_as(csv_path)
            csv = csv_path.read_text()
            assert csv.splitlines()[0].startswith("dev_eui,") and BIN3 in csv

        async with browser_page(width=390, height=844, mobile=True) as phone:
            await login(phone, base_url(gw), TOKEN)
            await expect(phone.locator("svg.map .node")).to_have_count(6)
            width = await phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, "the overview must not scroll sideways on a phone"
            await screenshot(phone, "phone")
            await phone.tap(f"svg.map .node[data-dev-eui='{BIN3}']")
            await phone.wait_for_selector(f".device[data-dev-eui='{BIN3}'] figure[data-chart=Fill]")
            width = await phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, "the device page must not scroll sideways on a phone"
            await screenshot(phone, "phone-device")


async def test_device_page_and_override_to_applied(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    down = "application/+/device/+/command/down"
    async with (
        running_gateway(mosquitto_broker, tmp_path) as gw,
        mqtt_client(mosquitto_broker, down) as (client, got),
    ):
        fleet = Fleet(gw, client)
        await populate(gw, fleet)
        for level in (40, 55, 70):
            await fleet.up(LAMP1, "lamp_status", {"dim_level": level, "active_power_w": level // 2})
        await fleet.processed(9)
        async with browser_page() as page:
            await login(page, base_url(gw), TOKEN)
            await page.wait_for_selector("#live[data-status=live]")
            await page.click(f"svg.map .node[data-dev-eui='{LAMP1}']")
            await page.wait_for_selector(f".device[data-dev-eui='{LAMP1}'] figure.chart")
            assert await page.get_attribute("figure[data-chart=Level]", "data-points") == "4"
            assert await page.locator("table.uplinks tbody tr").count() == 4
            assert "lamp_status" in await page.inner_text("table.uplinks")
            assert '"dim_level":70' in await page.inner_text("table.uplinks tbody tr >> nth=0")

            # an override from the page: queued → sent → acknowledged → applied, live
            await page.select_option("#quick select[name=message]", "lamp_override")
            await page.fill("#quick input[name=dim_level]", "100")
            await page.fill("#quick input[name=duration_s]", "600")
            await page.click("#quick button[type=submit]")
            await wait_for(lambda: got, "the command/down")
            topic, payload = got[0]
            assert topic == f"application/{gw.app}/device/{LAMP1}/command/down"
            command_id = json.loads(payload)["id"]
            row = f"tr[data-command-id='{command_id}']"
            await page.wait_for_selector(f"{row}[data-state=queued]")
            command = (await gw.http.get(f"/api/v1/commands/{command_id}")).json()
            assert command["message"] == "lamp_override" and command["fields"]["dim_level"] == 100
            await client.publish(
                ev.topic(gw.app, LAMP1, "txack"),
                ev.dumps(ev.txack(gw.app, LAMP1, command_id)),
                qos=1,
            )
            await page.wait_for_selector(f"{row}[data-state=sent]")
            await client.publish(
                ev.topic(gw.app, LAMP1, "ack"), ev.dumps(ev.ack(gw.app, LAMP1, command_id)), qos=1
            )
            await page.wait_for_selector(f"{row}[data-state=acknowledged]")
            await fleet.up(
                LAMP1, "command_result", {"command_id": command["command_id"], "outcome": "applied"}
            )
            await page.wait_for_selector(f"{row}[data-state=applied]")
            await screenshot(page, "device")

            # a street: one lamp_override per lamp of Søndergade, tracked on the commands page
            got.clear()
            await page.click("nav a[data-route=commands]")
            await page.select_option("#send select[name=message]", "lamp_override")
            await page.select_option("#send select[name=scope]", "street")
            await page.select_option("#send select[name=target]", "Søndergade")
            await page.fill("#send input[name=dim_level]", "30")
            await page.click("#send button[type=submit]")
            await page.wait_for_selector("#send output:has-text('3 queued')")
            # tracked: the three new ones and the applied override sent from the device page
            assert await page.locator("#tracked tbody tr").count() == 4
            assert await page.locator("#tracked tr[data-state=applied]").count() == 1
            for lamp in (LAMP1, LAMP2, LAMP3):
                commands = (await gw.http.get(f"/api/v1/devices/{lamp}/commands")).json()
                assert [c["fields"]["dim_level"] for c in commands["commands"]] == [30]
            await screenshot(page, "commands")


async def test_wrong_token_is_refused(mosquitto_broker: Broker, tmp_path: Path) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        url = base_url(gw)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            page_response = await http.get("/")
            assert page_response.status_code == 200 and "citypack" in page_response.text
            policy = page_response.headers["content-security-policy"]
            assert "default-src 'self'" in policy and "script-src 'self'" in policy
            assert (await http.get("/static/app.js")).status_code == 200
            for headers in ({}, {"Authorization": "Bearer not-the-token"}):
                response = await http.get("/api/v1/stream", headers=headers)
                assert response.status_code == 401
                assert response.json()["error"] == "unauthorized"
                assert (await http.get("/api/v1/web/config", headers=headers)).status_code == 401
        async with browser_page() as page:
            await login(page, url, "not-the-token")
            await page.wait_for_selector("#login-error:has-text('refused')")
            assert await page.is_hidden("#nav")
            assert await page.evaluate("sessionStorage.getItem('citypack.token')") is None
            await screenshot(page, "login-refused")
            await page.fill("input[name=token]", TOKEN)
            await page.click("#login button[type=submit]")
            await page.wait_for_selector("#live[data-status=live]")
            assert await page.evaluate("sessionStorage.getItem('citypack.token')") == TOKEN


async def test_stream_carries_events_and_device_changes(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with (
        running_gateway(mosquitto_broker, tmp_path) as gw,
        mqtt_client(mosquitto_broker) as (client, _),
        gw.http.stream("GET", "/api/v1/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        fleet = Fleet(gw, client)
        await gw.http.put(f"/api/v1/devices/{BIN1}", json=NODES[BIN1])
        await fleet.up(
            BIN1, "bin_status", {"fill_percent": 95, "temperature_c": 18, "battery_percent": 85}
        )
        messages: list[tuple[str, Any]] = []
        buffer = ""

        async def read() -> None:
            nonlocal buffer
            async for chunk in response.aiter_text():
                buffer += chunk
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    kind = data = None
                    for line in block.split("\n"):
                        if line.startswith("event: "):
                            kind = line[7:]
                        elif line.startswith("data: "):
                            data = json.loads(line[6:])
                    if kind:
                        messages.append((kind, data))
                if any(k == "event" and d["type"] == "bin_full" for k, d in messages) and any(
                    k == "device" and d["dev_eui"] == BIN1 and d["derived"].get("full")
                    for k, d in messages
                ):
                    return

        await asyncio.wait_for(read(), 15)
        assert messages[0][0] == "hello"
        device = next(d for k, d in messages if k == "device" and d["derived"].get("full"))
        assert device["derived"]["fill_percent"] == 95
        assert not any(key.startswith("_") for key in device["derived"])


async def test_open_stream_does_not_hold_up_the_gateway_stop(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with running_gateway(mosquitto_broker, tmp_path) as gw:
        async with gw.http.stream("GET", "/api/v1/stream") as response:
            assert response.status_code == 200
            chunks: list[str] = []

            async def read_to_end() -> None:
                async for chunk in response.aiter_text():
                    chunks.append(chunk)

            reader = asyncio.create_task(read_to_end())
            await wait_for(lambda: chunks, "the hello message")
            gw.gateway.stop()
            await asyncio.wait_for(reader, 15)  # the server ended the stream
            await asyncio.wait_for(asyncio.shield(gw.task), 15)
        assert "event: hello" in chunks[0]


def _png_1x1() -> bytes:
    """A valid 1×1 grey PNG (ISO/IEC 15948: signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + chunk(b"IEND", b"")
    )


@contextlib.contextmanager
def tile_server() -> Iterator[tuple[str, list[str]]]:
    """A local XYZ tile server that answers every path with one PNG and records the paths."""
    requested: list[str] = []
    png = _png_1x1()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_configured_tiles_line_up_with_the_nodes(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    with tile_server() as (tiles, requested):
        web = {"tile_url": tiles + "/{z}/{x}/{y}.png", "tile_attribution": "© test tiles"}
        async with running_gateway(mosquitto_broker, tmp_path, web=web) as gw:
            for dev_eui in (BIN1, BIN3, LAMP2):
                await gw.http.put(f"/api/v1/devices/{dev_eui}", json=NODES[dev_eui])
            async with browser_page() as page:
                await login(page, base_url(gw), TOKEN)
                await page.wait_for_selector("svg.map image.tile")
                assert await page.inner_text(".attribution") == "© test tiles"
                hrefs = await page.eval_on_selector_all(
                    "svg.map image.tile", "t => t.map(i => i.getAttribute('href'))"
                )
                zoom = int(hrefs[0].rsplit("/", 3)[1])
                assert 14 <= zoom <= 19  # a street's length fills the map
                for dev_eui in (BIN1, BIN3, LAMP2):
                    lat, lon = NODES[dev_eui][LAT], NODES[dev_eui][LON]
                    n = 2**zoom
                    x = int((lon + 180) / 360 * n)
                    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
                    assert f"{tiles}/{zoom}/{x}/{y}.png" in hrefs, (dev_eui, zoom, x, y)
                paths = {href.removeprefix(tiles) for href in hrefs}
                await wait_for(lambda: paths <= set(requested), "the browser loading the tiles")
                await screenshot(page, "tiles")
