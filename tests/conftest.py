"""Fixtures for every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modem.pdu import tolerance

# Whole-gateway fixtures (`sim`, `gw`, `fast_webhooks`) used by tests/system, tests/web and tests/integrations.
pytest_plugins = ["tests.support.gateway_fixtures", "tests.support.ledger_fixtures"]


@pytest.fixture(autouse=True)
def _pdu_warnings_logged_afresh() -> Iterator[None]:
    """The decoder logs each kind of tolerated oddity once per hour per process: start each test
    with a clean memory, so a test that expects the line does not depend on which ran before."""
    tolerance.forget()
    yield
    tolerance.forget()
