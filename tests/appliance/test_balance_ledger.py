"""The ledger's balance checks (migration 11): latest per modem, the watchdog's view, retention."""

from __future__ import annotations

import sqlite3
import time

import asyncpg

from appliance.ledger import Retention, Store


async def record(store: Store, modem: str, at: float, value: float | None, error: str = "") -> None:
    await store.record_balance(
        modem, at=at, ok=value is not None, value=value, text="Your balance is …", error=error
    )


async def facts(store: Store) -> list[tuple[str, float]]:
    """What the watchdog reads: balance_facts, opened read-only as it opens the ledger (SQLite),
    or on its own connection to the server (PostgreSQL)."""
    if store.postgres:
        conn = await asyncpg.connect(store.path)
        try:
            return sorted(
                (r[0], r[2]) for r in await conn.fetch("SELECT modem, at, value FROM balance_facts")
            )
        finally:
            await conn.close()
    db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    try:
        return sorted((m, v) for m, _at, v in db.execute("SELECT modem, at, value FROM balance_facts"))
    finally:
        db.close()


async def test_latest_and_latest_amount_per_modem(store: Store) -> None:
    now = time.time()
    await record(store, "a", now - 30, 9.0)
    await record(store, "a", now - 20, 8.0)
    await record(store, "a", now - 10, None, "UssdTimeout: no answer")
    await record(store, "b", now - 5, 3.0)
    latest = await store.latest_balances()
    assert latest["a"].last.error == "UssdTimeout: no answer"
    assert latest["a"].last_ok is not None
    assert latest["a"].last_ok.value == 8.0
    assert latest["b"].last.value == 3.0
    assert await facts(store) == [("a", 8.0), ("b", 3.0)]


async def test_retention_forgets_old_checks_but_keeps_the_latest(store: Store) -> None:
    now = time.time()
    old = now - 10 * 86400
    for i in range(5):
        await record(store, "a", old + i, 9.0 - i)
    await record(store, "a", old + 10, None, "not found")
    done = await store.purge(Retention(metadata_days=1), now=now)
    assert done["balance"] == 4  # the four older amounts; the last amount and the last check stay
    latest = await store.latest_balances()
    assert latest["a"].last.error == "not found"
    assert latest["a"].last_ok is not None
    assert latest["a"].last_ok.value == 5.0
    assert await facts(store) == [("a", 5.0)]


async def test_in_a_fleet_each_box_keeps_and_shows_its_own_sims_balance(ledger_url: str) -> None:
    """Boxes name their modems alike ("modem"): a box's page shows its own SIM's balance, each box's
    watchdog finds its own in balance_facts, and retention keeps each box's latest check."""
    now = time.time()
    old = now - 10 * 86400
    a, b = Store(ledger_url, box="a"), Store(ledger_url, box="b")
    for store in (a, b):
        await store.open()
    try:
        await record(b, "modem", old, 3.0)  # b's only check: old, and still its latest
        await record(a, "modem", old + 5, 9.0)
        await record(a, "modem", now - 20, 40.0)
        assert (await a.purge(Retention(metadata_days=1), now=now))["balance"] == 1  # a's older amount
        shown = {s.box: (await s.latest_balances())["modem"].last.value for s in (a, b)}
        assert shown == {"a": 40.0, "b": 3.0}
        assert await facts(a) == [("modem", 3.0), ("modem", 40.0)]
    finally:
        for store in (a, b):
            await store.close()
