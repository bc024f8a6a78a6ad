"""What the status-page tests share: the CSRF token of a form, a browser-like HTTP client, where
screenshots go."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "the page carries a CSRF token"
    return m.group(1)


async def page_client(base_url: str) -> httpx.AsyncClient:
    """A cookie-keeping client without an API key, as a browser would be."""
    return httpx.AsyncClient(base_url=base_url, timeout=10, follow_redirects=False)
