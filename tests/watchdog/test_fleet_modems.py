"""In a fleet sharing one ledger, a watchdog judges its own box's modem and SIM balance: another
box's modem being down (or its SIM running dry) is that box's watchdog's business."""

from __future__ import annotations

import time

import pytest

from appliance.ledger import Store
from watchdog.checks import Facts, balance_low, modem_down
from watchdog.facts import FactsReader, read_ledger
from watchdog.settings import Settings

DOWN_S = 30.0  # [watchdog] modem_down_s
FLOOR = 5.0  # [ussd] alert_below


async def sampled(ledger: str, box: str, *, down: bool, balance: float, t0: float) -> None:
    """Box `box`'s daemon as the ledger sees it: alive (a fresh lease), its modem registered until a
    minute ago and then `down` (or still registered), and its SIM's latest balance."""
    store = Store(ledger, box=box)
    await store.open()
    try:
        await store.register_box(30.0, now=t0)
        await store.add_modem_sample("modem", "ready", True, -70, "Net", at=t0 - 120)
        for at in (t0 - 60, t0 - 1):
            await store.add_modem_sample("modem", "ready", not down, -70, "Net", at=at)
        await store.record_balance("modem", at=t0 - 10, ok=True, value=balance, text="", error="")
    finally:
        await store.close()


def findings(ledger: str, box: str, now: float) -> list[str]:
    """What box `box`'s watchdog alerts for, of the modem and the balance, from the ledger alone."""
    settings = Settings(
        ledger_path="/nonexistent/ledger.sqlite3", ledger_url=ledger, box=box, modem_down_s=DOWN_S
    )
    if not ledger.startswith("postgresql://"):
        settings = Settings(ledger_path=ledger, box=box, modem_down_s=DOWN_S)
    facts = read_ledger(settings.ledger, now, box)
    assert facts is not None
    since, detail = FactsReader(settings, now - 600)._modem_down(facts, now)
    seen = Facts(now=now, modem_down_since=since, modem_detail=detail, sim_balance=facts.balance)
    found = [modem_down(seen, DOWN_S), balance_low(seen, FLOOR)]
    return [f.subject for f in found if f is not None]


@pytest.mark.parametrize("down", ["a", "b"])
async def test_a_watchdog_alerts_for_its_own_boxs_modem_and_balance_only(ledger_url: str, down: str) -> None:
    """On a SQLite file and on a PostgreSQL database (`ledger_url`); the box whose modem is down
    also has the SIM that ran dry, and wrote its samples last."""
    t0 = time.time()
    for box in sorted(("a", "b"), key=lambda b: b == down):
        await sampled(ledger_url, box, down=box == down, balance=1.0 if box == down else 50.0, t0=t0)
    assert findings(ledger_url, down, t0) == ["modem", "balance"]
    healthy = "b" if down == "a" else "a"
    assert findings(ledger_url, healthy, t0) == []
