"""Today's collection route on the dashboard map (issue 21, gateway/web/static/route.js), in
headless Chromium against a gateway with a [routes] depot, like tests/web/test_dashboard.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gateway.harness import TOKEN, mqtt_client, running_gateway
from tests.helpers.procs import Broker
from tests.web.browser import browser_page, expect, login, screenshot
from tests.web.test_dashboard import BIN3, Fleet, base_url, populate

pytestmark = pytest.mark.broker

ROUTES = {"depot_latitude": 56.1565, "depot_longitude": 10.2100, "trucks": 2}


async def test_todays_route_is_drawn_through_the_bins_it_empties(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with (
        running_gateway(mosquitto_broker, tmp_path, routes=ROUTES) as gw,
        mqtt_client(mosquitto_broker) as (client, _),
    ):
        await populate(gw, Fleet(gw, client))  # bins at 20, 65 and 90 %: only bin 3 is due
        async with browser_page() as page:
            await login(page, base_url(gw), TOKEN)
            await expect(page.locator("svg.map .node")).to_have_count(6)
            assert await page.locator("svg.map .route").count() == 0  # off until asked for
            await page.check("#route-toggle")
            await expect(page.locator("svg.map polyline.route")).to_have_count(1)
            note = await page.inner_text("#route-note")
            assert note.startswith("truck 1: 1 bin, 0.6 km, 0:") and note.endswith("(great circle)")
            stops = await page.eval_on_selector_all(
                "svg.map .route-stop", "s => s.map(t => [t.dataset.devEui, t.textContent])"
            )
            assert stops == [[BIN3, "1"]]
            # the line runs through bin 3's marker: the same projection as the map's nodes
            centre = await page.eval_on_selector(
                f"svg.map .node[data-dev-eui='{BIN3}']",
                "n => { const b = n.getBBox(); return [b.x + b.width / 2, b.y + b.height / 2]; }",
            )
            points = await page.eval_on_selector(
                "svg.map polyline.route", "l => [...l.points].map(p => [p.x, p.y])"
            )
            assert len(points) == 3 and points[0] == points[-1]  # depot, bin 3, depot
            assert points[1] == pytest.approx(centre, abs=0.5)
            await screenshot(page, "route")
            # a live redraw of the map keeps the route, and the toggle is remembered on reload
            await page.reload()
            await expect(page.locator("svg.map polyline.route")).to_have_count(1)
            await page.uncheck("#route-toggle")
            await expect(page.locator("svg.map .route")).to_have_count(0)
