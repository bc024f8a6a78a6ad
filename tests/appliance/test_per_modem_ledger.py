"""The ledger's per-modem figures (`Store.per_modem`): what the page's per-modem table and the
`smsgw_modem_*` gauges show, counted from `messages.modem` and `parts.modem`."""

from __future__ import annotations

import time

from appliance.ledger import Message, NewMessage, Store
from appliance.ledger.telemetry import ModemTraffic

HOUR = 3600.0


async def _claimed(store: Store, modem: str, body: str = "hello", segments: int = 1) -> Message:
    new = NewMessage(to="+4915112345678", body=body, encoding="gsm7", segments=segments)
    msg, _ = await store.accept(new, key_id=None, queue_max=100)
    claimed = await store.claim_next(modem)
    assert claimed is not None
    assert claimed.id == msg.id
    return claimed


async def test_each_modem_counts_its_own_sends_failures_and_messages_in_flight(store: Store) -> None:
    now = time.time()
    one = await _claimed(store, "gsm0")
    await store.part_submitted(one.id, 1, 1, "gsm0", at=now - 10)
    two_parts = await _claimed(store, "gsm0", "x" * 200, segments=2)
    await store.part_submitted(two_parts.id, 1, 2, "gsm0", at=now - 6)
    await store.part_submitted(two_parts.id, 2, 3, "gsm0", at=now - 5)
    refused = await _claimed(store, "gsm0")
    await store.send_failed(refused.id, code="cms_1", message="unassigned", retry_at=None, max_attempts=5)
    earlier = await _claimed(store, "gsm1")  # sent two hours ago: not in the last hour, still its last send
    await store.part_submitted(earlier.id, 1, 4, "gsm1", at=now - 2 * HOUR)
    await _claimed(store, "gsm1")  # with the modem now

    figures = await store.per_modem(now - HOUR, now - 24 * HOUR)

    assert figures == {
        "gsm0": ModemTraffic(sent=2, parts=3, failed=1, in_flight=0, last_sent_at=now - 5),
        "gsm1": ModemTraffic(sent=0, parts=0, failed=0, in_flight=1, last_sent_at=now - 2 * HOUR),
    }


async def test_a_modem_whose_last_send_is_past_the_lookback_is_not_listed(store: Store) -> None:
    now = time.time()
    old = await _claimed(store, "gsm0")
    await store.part_submitted(old.id, 1, 1, "gsm0", at=now - 2 * 24 * HOUR)
    assert await store.per_modem(now - HOUR, now - 24 * HOUR) == {}
