"""Boxes of a fleet on PostgreSQL learn of claimable work at once: a scheduled message that comes
due, promoted by whichever box's maintenance got there first, wakes every box (NOTIFY)."""

from __future__ import annotations

import asyncio
import time

from appliance.ledger import NewMessage, Store
from tests.support.postgres import PgServer
from tests.support.waiting import eventually


async def test_a_scheduled_message_promoted_by_one_box_wakes_the_other(pg_server: PgServer) -> None:
    url = await pg_server.fresh_database()
    promoter, other = Store(url, box="a"), Store(url, box="b")
    await asyncio.gather(promoter.open(), other.open())
    try:
        now = time.time()
        new = NewMessage(to="+4915112345678", body="at nine", encoding="gsm7", segments=1, send_at=now + 1)
        msg, _ = await promoter.accept(new, key_id=None, queue_max=100)
        await asyncio.wait_for(other.queue_changed.wait(), 10)  # the accept's own wake-up
        other.queue_changed.clear()
        assert await other.claim_next("modem-b") is None  # scheduled: nothing to claim yet

        assert await eventually(promoter.promote_and_expire, 10) == 1  # once it is due
        await asyncio.wait_for(other.queue_changed.wait(), 10)
        claimed = await other.claim_next("modem-b")
        assert claimed is not None
        assert (claimed.id, claimed.box) == (msg.id, "b")
    finally:
        await asyncio.gather(promoter.close(), other.close())
