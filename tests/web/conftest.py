"""Status-page fixtures: the real gateway on the simulator (tests.system) and a real headless Chromium."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, async_playwright

from tests.system.conftest import eventually, gateway_config, gw, run_gateway, sim

__all__ = ["eventually", "gateway_config", "gw", "run_gateway", "sim"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "the page carries a CSRF token"
    return m.group(1)


async def page_client(base_url: str) -> httpx.AsyncClient:
    """A cookie-keeping client without an API key, as a browser would be."""
    return httpx.AsyncClient(base_url=base_url, timeout=10, follow_redirects=False)
