"""The overview's per-modem table in a real headless Chromium: one row per modem with its sends."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.support.gateway_fixtures import TwoModems
from tests.support.simulators import submits


@pytest.mark.slow
async def test_overview_shows_each_modems_sends_in_its_row(two_modems: TwoModems, browser: Browser) -> None:
    gw = two_modems.gw
    ids = [(await gw.send(to=f"+4915100073{i:03d}", body=f"row {i}")).json()["id"] for i in range(8)]
    for msg_id in ids:
        await gw.final(msg_id)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(f"http://{gw.config.api.listen}/")
    assert await page.locator("#per-modem tr[data-modem]").count() == 2
    sent = {}
    for i, (name, sim) in enumerate((("left", two_modems.left), ("right", two_modems.right))):
        row = page.locator(f"#traffic-{i}")
        assert await row.get_attribute("data-modem") == name
        assert await row.locator(".name").inner_text() == name
        sent[name] = int(await row.locator(".sent").inner_text())
        assert sent[name] == len(submits(sim)), name
        assert await row.locator(".failed").inner_text() == "0"
        assert await row.locator(".in-flight").inner_text() == "0"
        assert (await row.locator(".last-send").inner_text()).endswith(" ago")
        assert "ready" in await row.inner_text()
        assert (await row.locator(".network").inner_text()).endswith(" dBm")
    assert all(sent.values()), f"both modems carried messages: {sent}"
    assert sum(sent.values()) == 8
