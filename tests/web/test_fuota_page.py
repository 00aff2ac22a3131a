"""The dashboard's Updates page (gateway/web/static/fuota.js, issue 18) in headless Chromium:
campaigns listed with their versions, state and progress, a campaign's devices with their states
and the reason a device failed, and what the page says when FUOTA is off.

The campaigns are written to the store before the gateway starts, in final states (done,
cancelled), so no campaign runs and the page shows exactly what the store holds; the engine that
produces them is tested in tests/gateway/test_fuota_campaigns.py and tests/e2e."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.fuota_campaign import Campaign, DeviceProgress
from gateway.store import create_store
from tests.gateway.harness import TOKEN, running_gateway
from tests.helpers.procs import Broker, free_port
from tests.web.browser import browser_page, expect, login, screenshot
from tests.web.test_dashboard import base_url

pytestmark = pytest.mark.broker

DONE = "5f0c1e2a-0000-4000-8000-00000000d0e1"
CANCELLED = "7a9b3c4d-0000-4000-8000-0000000ca7c1"
LAMPS = ["70b3d57ed00f0001", "70b3d57ed00f0002", "70b3d57ed00f0003"]


def _campaigns() -> list[Campaign]:
    done = Campaign(
        id=DONE, group="oak", version="0.3.0", from_version="0.2.0", size=32768,
        frag_size=48, nb_frag=683, padding=16, redundancy=205, created_at=1_796_500_000.0,
        state="done", fragments_sent=888, finished_at=1_796_501_000.0,
        devices={
            LAMPS[0]: DeviceProgress(LAMPS[0], "applied", fragments_received=683,
                                     fragments_missing=0, version="0.3.0", applied=True),
            LAMPS[1]: DeviceProgress(LAMPS[1], "applied", fragments_received=690,
                                     fragments_missing=0, version="0.3.0", applied=True),
            LAMPS[2]: DeviceProgress(LAMPS[2], "failed", fragments_received=120,
                                     fragments_missing=563, version="0.2.0",
                                     error="563 fragments still missing after 3 status rounds"),
        },
    )  # fmt: skip
    cancelled = Campaign(
        id=CANCELLED, group="elm", version="0.3.0", from_version="0.2.0", size=32768,
        frag_size=48, nb_frag=683, padding=16, redundancy=205, created_at=1_796_502_000.0,
        state="cancelled", finished_at=1_796_502_100.0,
        devices={LAMPS[0]: DeviceProgress(LAMPS[0], "cancelled")},
    )  # fmt: skip
    return [done, cancelled]


async def _store_campaigns(url: str) -> None:
    store = create_store(url)
    await store.open()
    try:
        for c in _campaigns():
            await store.save_campaign(c.id, c.state, c.created_at, json.dumps(c.to_json()), b"x")
    finally:
        await store.close()


async def test_updates_page_lists_campaigns_and_a_campaigns_devices(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    await _store_campaigns(f"sqlite:///{tmp_path / 'gateway.db'}")
    (tmp_path / "cs").write_text("cs-token\n")
    (tmp_path / "mc").write_text("000102030405060708090a0b0c0d0e0f\n")
    async with (
        running_gateway(
            mosquitto_broker,
            tmp_path,
            # nothing listens there: no campaign is running, so nothing calls ChirpStack
            chirpstack={"api": f"127.0.0.1:{free_port()}", "api_token_file": str(tmp_path / "cs")},
            multicast={"enabled": True, "key_file": str(tmp_path / "mc")},
            fuota={"enabled": True},
        ) as gw,
        browser_page() as page,
    ):
        await login(page, base_url(gw), TOKEN)
        await page.click("a[data-route=fuota]")
        done = page.locator(f"tr[data-campaign='{DONE}']")
        await expect(done).to_be_visible(timeout=10_000)
        cells = [c.strip() for c in await done.locator("td").all_inner_texts()]
        assert cells[0] == DONE[:8] and cells[1] == "oak"
        assert cells[2] == "0.2.0 → 0.3.0" and cells[3] == "done"
        assert cells[4] == "100 %"  # every device final: applied or failed
        assert "applied 2" in cells[5] and "failed 1" in cells[5]
        assert cells[6] == "888/888"
        assert await done.locator("progress").get_attribute("value") == "100"
        cancelled = page.locator(f"tr[data-campaign='{CANCELLED}']")
        assert [c.strip() for c in await cancelled.locator("td").all_inner_texts()][3] == (
            "cancelled"
        )
        # the campaigns are listed oldest first, and no device table without a campaign chosen
        order = await page.eval_on_selector_all(
            "#fuota-rows tr", "rows => rows.map(r => r.dataset.campaign)"
        )
        assert order == [DONE, CANCELLED]
        assert await page.locator("table.fuota-devices").is_hidden()
        assert await page.locator("#fuota-note").inner_text() == ""

        await done.locator("a").click()
        devices = page.locator("#fuota-devices tr")
        await expect(devices).to_have_count(3, timeout=10_000)
        rows = [await devices.nth(i).locator("td").all_inner_texts() for i in range(3)]
        assert [r[0] for r in rows] == LAMPS
        assert [r[1] for r in rows] == ["applied", "applied", "failed"]
        assert rows[0][2].strip() == "683 (0 missing)" and rows[2][3] == "0.2.0"
        assert rows[2][4] == "563 fragments still missing after 3 status rounds"
        # a device links to its own page
        assert await devices.nth(0).locator("a").get_attribute("href") == f"#/device/{LAMPS[0]}"
        await screenshot(page, "fuota-updates")


async def test_updates_page_says_when_fuota_is_off(
    mosquitto_broker: Broker, tmp_path: Path
) -> None:
    async with (
        running_gateway(mosquitto_broker, tmp_path) as gw,
        browser_page(answers=("/api/v1/fuota/campaigns",)) as page,  # its 409 is the answer
    ):
        await login(page, base_url(gw), TOKEN)
        await page.click("a[data-route=fuota]")
        await expect(page.locator("#fuota-note")).to_contain_text("FUOTA is off", timeout=10_000)
        assert await page.locator("#fuota-rows tr").count() == 0
