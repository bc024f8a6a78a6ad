"""The conversation with one number (issue 13 item 4) in a real headless Chromium: messages and
replies interleaved by time, each reply marked with the message it answers; hostile texts shown
as text; logged-in only."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.support.gateway import Running
from tests.support.web_page import SCREENSHOTS

PHONE = "+4915112345678"
OTHER = "+4917612349999"
HOSTILE_OUT = "<script>window.pwned = 1</script> & done"
HOSTILE_IN = '<img src=x onerror="window.pwned = 2"> ok </li></ol><b>bold</b>'


@pytest.mark.slow
async def test_conversation_interleaves_messages_and_replies_after_login(
    gw: Running, browser: Browser
) -> None:
    ids = []
    for body in ("First: db1 is down", HOSTILE_OUT):
        r = await gw.send(to=PHONE, body=body)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
        await gw.final(ids[-1])
    other = (await gw.send(to=OTHER, body="not this conversation")).json()["id"]
    await gw.final(other)
    assert gw.sim is not None
    await gw.sim.inject(PHONE, HOSTILE_IN)
    reply = await gw.received(HOSTILE_IN)
    assert reply["in_reply_to"] == ids[1]

    base = f"http://{gw.config.api.listen}"
    page = await browser.new_page(viewport={"width": 390, "height": 844})
    await page.goto(f"{base}/conversation?number=%2B4915112345678")
    assert page.url == f"{base}/login"  # whole numbers and texts: logged-in only
    await page.fill("input[name=password]", gw.key)
    await page.click("form[action='/login'] button")
    await page.wait_for_url(f"{base}/?notice=login")

    await page.goto(f"{base}/messages")
    await page.locator(f"#i-{reply['id']} a.thread").click()  # the sender's number links to its thread
    await page.wait_for_url(f"{base}/conversation?number=%2B4915112345678")
    entries = page.locator("#conversation > li")
    assert [await e.get_attribute("id") for e in await entries.all()] == [
        f"c-{ids[0]}",
        f"c-{ids[1]}",
        f"c-{reply['id']}",
    ]
    assert [await e.get_attribute("class") for e in await entries.all()] == ["out", "out", "in"]
    # Hostile texts are text: shown as typed, nothing ran, no markup got in.
    texts = [await t.inner_text() for t in await page.locator("#conversation .text").all()]
    assert texts == ["First: db1 is down", HOSTILE_OUT, HOSTILE_IN]
    assert await page.evaluate("typeof window.pwned") == "undefined"
    assert await page.locator("#conversation img, #conversation b, #conversation script").count() == 0
    answers = page.locator(f"#c-{reply['id']} .reply a")
    assert await answers.get_attribute("href") == f"#c-{ids[1]}"
    assert "not this conversation" not in await page.inner_text("main")
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"/conversation at phone width overflows by {overflow}px"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "conversation-phone.png"), full_page=True)

    # The outbound list links each recipient to its thread too; a bad number is a clear refusal.
    await page.goto(f"{base}/messages")
    href = await page.locator(f"#m-{other} a.thread").get_attribute("href")
    assert href == "/conversation?number=%2B4917612349999"
    answer = await page.goto(f"{base}/conversation?number=%3Cscript%3E")
    assert answer is not None
    assert answer.status == 422
    assert "not a phone number" in await page.inner_text("main")
    assert await page.locator("main script").count() == 0
