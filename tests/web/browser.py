"""Headless Debian Chromium driven by Playwright (never `playwright install`: the system browser).

Issue 9's browser tests need ``/usr/bin/chromium`` (`apt-get install -y chromium`, which
``.ci/run`` does) and the ``playwright`` package (dev extras); without either they skip and say why.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def expect(target: Any) -> Any:
    """Playwright's ``expect`` (imported late: the module must load where playwright is absent)."""
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(target)


def chromium_path() -> str:
    path = os.environ.get("CITYPACK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.skip(
            "Debian's chromium is not installed (apt-get install -y chromium); "
            "the dashboard's browser tests need it"
        )
    return path


@asynccontextmanager
async def browser_page(
    *, width: int = 1280, height: int = 860, mobile: bool = False, answers: tuple[str, ...] = ()
) -> AsyncIterator[Any]:
    """A fresh browser context and page; console errors fail the test at the end, except a
    failed load of a URL ending with one of ``answers`` (an error status the page shows as its
    answer, as the badge does with /readyz's 503)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[dev]')")
    executable = chromium_path()
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                viewport={"width": width, "height": height},
                is_mobile=mobile,
                has_touch=mobile,
                device_scale_factor=2 if mobile else 1,
            )
            page = await context.new_page()
            page.set_default_timeout(15_000)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda msg: (
                    errors.append(f"console {msg.type}: {msg.text}")
                    if msg.type == "error"
                    and "401" not in msg.text
                    # the readiness badge reads /readyz, whose 503 is its answer, not a fault
                    and not str(msg.location.get("url", "")).endswith(("/readyz", *answers))
                    else None
                ),
            )
            yield page
            await context.close()
        finally:
            await browser.close()
    assert not errors, errors


async def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def login(page: Any, base_url: str, token: str) -> None:
    await page.goto(base_url + "/")
    await page.fill("input[name=token]", token)
    await page.click("#login button[type=submit]")
