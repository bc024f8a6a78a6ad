"""In a fleet each box's page and /metrics count its own modems: two boxes may name their modems
alike (`modem`), and box a's figures hold only what box a's modem sent (SQLite and PostgreSQL)."""

from __future__ import annotations

import time

from appliance.ledger import NewMessage, Store

HOUR = 3600.0


async def _send_one(store: Store, to: str) -> None:
    new = NewMessage(to=to, body="hello", encoding="gsm7", segments=1)
    await store.accept(new, key_id=None, queue_max=100)
    claimed = await store.claim_next("modem")
    assert claimed is not None
    await store.part_submitted(claimed.id, 1, 1, "modem")


async def test_each_box_counts_only_what_its_own_modem_sent(ledger_url: str) -> None:
    a, b = Store(ledger_url, box="a"), Store(ledger_url, box="b")
    await a.open()
    await b.open()
    try:
        await _send_one(a, "+4915111111111")
        for i in range(2):
            await _send_one(b, f"+491512222222{i}")
        now = time.time()
        mine, theirs = await a.per_modem(now - HOUR, now - HOUR), await b.per_modem(now - HOUR, now - HOUR)
        whole = Store(ledger_url)  # outside any fleet: every modem of the ledger
        await whole.open()
        try:
            everyone = await whole.per_modem(now - HOUR, now - HOUR)
        finally:
            await whole.close()
    finally:
        await a.close()
        await b.close()
    assert (mine["modem"].sent, mine["modem"].parts) == (1, 1)
    assert (theirs["modem"].sent, theirs["modem"].parts) == (2, 2)
    assert (everyone["modem"].sent, everyone["modem"].parts) == (3, 3)
