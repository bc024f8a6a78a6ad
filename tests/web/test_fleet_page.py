"""The status page's fleet table: shown once boxes share the ledger, with each box's lease."""

from __future__ import annotations

import time

import pytest
from playwright.async_api import Browser

from appliance.ledger import Store
from tests.support.gateway import Running
from tests.support.waiting import eventually
from tests.support.web_page import SCREENSHOTS


@pytest.mark.slow
async def test_the_fleet_table_shows_each_box_its_lease_and_who_took_it_over(
    gw: Running, browser: Browser
) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    base = f"http://{gw.config.api.listen}"
    await page.goto(f"{base}/")
    assert await page.locator("#fleet").count() == 0  # one box: no fleet to show

    # Two more boxes on the same ledger file: "gone" stopped ten minutes ago, "peer" lives.
    gone, peer = Store(gw.config.store.path, box="gone"), Store(gw.config.store.path, box="peer")
    for store in (gone, peer):
        await store.open()
    try:
        await gone.register_box(5, now=time.time() - 600)
        await peer.register_box(3600)

        async def taken_over() -> bool:
            return any(b.name == "gone" and b.taken_over_by for b in await peer.boxes())

        await eventually(taken_over, 15)  # by the gateway's lease loop (or nobody: the test fails)
    finally:
        for store in (gone, peer):
            await store.close()

    await page.goto(f"{base}/")
    rows = page.locator("#fleet tbody tr")
    assert await rows.count() == 3
    this = page.locator(f'#fleet tr[data-box="{gw.config.fleet.box}"]')
    assert "this box" in await this.inner_text()
    assert await this.locator(".lease").inner_text() == "held"
    assert await page.locator('#fleet tr[data-box="gone"] .lease').inner_text() == "taken over"
    assert (await page.locator('#fleet tr[data-box="gone"] .taken-over').inner_text()).startswith(
        f"{gw.config.fleet.box} "
    )
    assert "10 min ago" in await page.locator('#fleet tr[data-box="gone"]').inner_text()
    await page.locator("#fleet").screenshot(path=str(SCREENSHOTS / "fleet.png"))
