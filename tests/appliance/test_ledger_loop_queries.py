"""The daemon's background loops ask the ledger what is due next (webhooks, escalations): those
queries run on both backends (`store` is parametrised over SQLite and PostgreSQL), with nothing due."""

from __future__ import annotations

import time

from appliance.ledger import Store


async def test_with_nothing_queued_the_loops_find_nothing_due_on_either_backend(store: Store) -> None:
    now = time.time()
    assert await store.due_webhook_targets(now) == []
    assert await store.due_webhook_targets(now, busy=["https://hooks.example.com:443"]) == []
    assert await store.next_webhook_due() is None
    assert await store.next_webhook_due(busy=["https://hooks.example.com:443"]) is None
    assert await store.next_escalation_due() is None
