"""Keys as tenants (issue 11): each key sees and acts on its own messages, within its quota and
priority; every action lands in the audit trail. Real httpx clients on the ASGI app, a real ledger."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.api import create_app
from appliance.keywords import keyword_of
from appliance.ledger import KeyLimits, Retention, Store, hash_key, migrations
from appliance.states import Priority
from tests.support.api_fakes import TEST_CONFIG, ClientFactory, FakeGateway, as_view
from tests.support.user_data import join_units, units

A_PHONE = "+4915111111111"
B_PHONE = "+4915122222222"
STRANGER = "+4915133333333"
AUDIT_FIELDS = {"at", "actor", "source", "action", "target", "detail"}


@dataclass(frozen=True)
class Tenants:
    alice: str  # send,read: an app
    bob: str  # send,read: another app
    sender: str  # send only
    watcher: str  # read_all: a dashboard
    admin: str


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def tenants(store: Store) -> Tenants:
    _, alice = await store.create_key("alice", ["send", "read"])
    _, bob = await store.create_key("bob", ["send", "read"])
    _, sender = await store.create_key("sender", ["send"])
    _, watcher = await store.create_key("watcher", ["read_all"])
    _, admin = await store.create_key("ops", ["admin"])
    return Tenants(alice, bob, sender, watcher, admin)


async def send(client: httpx.AsyncClient, key: str, to: str, body: str, **fields: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/messages", json={"to": to, "body": body, **fields}, headers=bearer(key))
    assert r.status_code == 202, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def listed(client: httpx.AsyncClient, key: str, path: str = "/api/v1/messages") -> list[str]:
    r = await client.get(path, params={"limit": 200}, headers=bearer(key))
    assert r.status_code == 200, r.text
    return [m["id"] if path.endswith("messages") else m["body"] for m in r.json()["messages"]]


async def handed_over(store: Store, msg: dict[str, Any], mr: int) -> None:
    """The dispatcher's steps for a one-part message: claimed, then accepted by the network (`sent`)."""
    claimed = await store.claim_next("gsm0")
    assert claimed is not None
    assert claimed.id == msg["id"]
    await store.part_sending(claimed.id, 1)
    await store.part_submitted(claimed.id, 1, mr, "gsm0")


async def receive(store: Store, sender: str, text: str) -> None:
    def keyword(t: str) -> str | None:
        return keyword_of(t, TEST_CONFIG.inbound.stop_keywords, TEST_CONFIG.inbound.start_keywords)

    await store.add_inbound_part(
        sender=sender, encoding="gsm7", user_data=units(text), ref=None, total=1, seq=1,
        sent_at=None, join=join_units, keyword_of=keyword,
    )  # fmt: skip


# ------------------------------------------------------------- own messages only
async def test_a_send_key_cannot_cancel_another_keys_message_nor_learn_its_body(
    client: httpx.AsyncClient, tenants: Tenants
) -> None:
    msg = await send(client, tenants.alice, A_PHONE, "door code 4711")
    unknown = await client.post(
        "/api/v1/messages/msg_0000000000000000000000/cancel", headers=bearer(tenants.sender)
    )
    for key in (tenants.sender, tenants.bob):
        r = await client.post(f"/api/v1/messages/{msg['id']}/cancel", headers=bearer(key))
        # 404 exactly as for an id that does not exist: nothing tells the message is there.
        assert r.status_code == 404 == unknown.status_code
        assert r.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
        assert "4711" not in r.text
    r = await client.get(f"/api/v1/messages/{msg['id']}", headers=bearer(tenants.alice))
    assert r.json()["status"] == "queued"  # still going out
    r = await client.post(f"/api/v1/messages/{msg['id']}/cancel", headers=bearer(tenants.alice))
    assert (r.status_code, r.json()["status"]) == (200, "canceled")
    other = await send(client, tenants.bob, B_PHONE, "bob's")
    r = await client.post(f"/api/v1/messages/{other['id']}/cancel", headers=bearer(tenants.admin))
    assert (r.status_code, r.json()["status"]) == (200, "canceled")  # admin acts on any message


async def test_a_read_key_sees_only_its_own_messages_and_read_all_sees_every_one(
    client: httpx.AsyncClient, tenants: Tenants
) -> None:
    a = (await send(client, tenants.alice, A_PHONE, "for A"))["id"]
    b = (await send(client, tenants.bob, B_PHONE, "for B"))["id"]
    assert await listed(client, tenants.alice) == [a]
    assert await listed(client, tenants.bob) == [b]
    assert await listed(client, tenants.watcher) == [b, a]
    assert await listed(client, tenants.admin) == [b, a]
    r = await client.get("/api/v1/messages", params={"to": B_PHONE}, headers=bearer(tenants.alice))
    assert r.json()["messages"] == []
    r = await client.get(f"/api/v1/messages/{b}", headers=bearer(tenants.alice))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    assert "for B" not in r.text
    r = await client.get(f"/api/v1/messages/{b}", headers=bearer(tenants.watcher))
    assert (r.status_code, r.json()["body"]) == (200, "for B")
    # A send-only key reads nothing, its own messages included (the scope matrix held up: keep it).
    r = await client.get("/api/v1/messages", headers=bearer(tenants.sender))
    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")


async def test_inbound_is_threaded_to_the_key_that_texted_the_sender_last(
    client: httpx.AsyncClient, tenants: Tenants, store: Store
) -> None:
    await handed_over(store, await send(client, tenants.alice, A_PHONE, "ok to deploy?"), 1)
    await handed_over(store, await send(client, tenants.bob, B_PHONE, "lunch?"), 2)
    await receive(store, A_PHONE, "go ahead")
    await receive(store, B_PHONE, "at noon")
    await receive(store, STRANGER, "who is this")
    inbound = "/api/v1/inbound"
    assert await listed(client, tenants.alice, inbound) == ["go ahead"]
    assert await listed(client, tenants.bob, inbound) == ["at noon"]
    assert await listed(client, tenants.watcher, inbound) == ["who is this", "at noon", "go ahead"]
    # Bob texts Alice's contact: that number's next reply threads to Bob, the earlier one stays Alice's.
    later = await send(client, tenants.bob, A_PHONE, "also, lunch?")
    await receive(store, A_PHONE, "not sent yet: still alice's")  # a queued text is not on the phone
    await handed_over(store, later, 3)
    await receive(store, A_PHONE, "sure")
    assert await listed(client, tenants.alice, inbound) == ["not sent yet: still alice's", "go ahead"]
    assert await listed(client, tenants.bob, inbound) == ["sure", "at noon"]
    r = await client.get(inbound, params={"limit": 1}, headers=bearer(tenants.bob))
    page2 = await client.get(
        inbound, params={"limit": 1, "cursor": r.json()["next_cursor"]}, headers=bearer(tenants.bob)
    )
    assert [m["body"] for m in page2.json()["messages"]] == ["at noon"]
    assert page2.json()["next_cursor"] is None


async def test_a_read_key_sees_no_reply_through_a_number_that_retention_masked(
    client: httpx.AsyncClient, tenants: Tenants, store: Store
) -> None:
    await handed_over(store, await send(client, tenants.alice, A_PHONE, "ok to deploy?"), 1)
    await handed_over(store, await send(client, tenants.bob, B_PHONE, "lunch?"), 2)
    await receive(store, A_PHONE, "alice's secret")
    await receive(store, B_PHONE, "at noon")
    assert await listed(client, tenants.alice, "/api/v1/inbound") == ["alice's secret"]
    for mr, number in ((1, A_PHONE), (2, B_PHONE)):  # delivered (final), so that retention masks them
        assert (await store.apply_report(mr, number, 0x00)).changed
    done = await store.purge(Retention(numbers_days=90), now=time.time() + 100 * 86400)
    assert done["numbers"] == 4  # both numbers now read "+49•••" on either side
    inbound = "/api/v1/inbound"
    # Masked numbers no longer tell whose reply a text was: it is no key's own any more.
    assert await listed(client, tenants.bob, inbound) == []
    assert await listed(client, tenants.alice, inbound) == []
    assert await listed(client, tenants.watcher, inbound) == ["at noon", "alice's secret"]


# ---------------------------------------------------------------------- quotas
async def test_a_key_over_its_hourly_quota_gets_429_with_retry_after_and_others_go_on(
    client: httpx.AsyncClient, tenants: Tenants, store: Store
) -> None:
    _, burst = await store.create_key("burst", ["send"], limits=KeyLimits(per_hour=3))
    for i in range(3):
        await send(client, burst, A_PHONE, f"page {i}", priority="high", idempotency_key=f"p{i}")
    r = await client.post(
        "/api/v1/messages", json={"to": A_PHONE, "body": "page 3", "priority": "high"}, headers=bearer(burst)
    )
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "quota_exceeded"
    assert "3 messages per hour" in r.json()["error"]["message"]
    retry_after = int(r.headers["retry-after"])
    assert 1 <= retry_after <= 3601
    assert abs(retry_after - (3600 - time.time() % 3600)) <= 3  # the hour's end
    # A repeat of an accepted request is no new message: answered, not counted.
    again = await client.post(
        "/api/v1/messages",
        json={"to": A_PHONE, "body": "page 0", "priority": "high", "idempotency_key": "p0"},
        headers=bearer(burst),
    )
    assert again.status_code == 200
    await send(client, tenants.alice, A_PHONE, "unaffected")  # one key's flood is not everyone's
    assert len(await listed(client, tenants.admin)) == 4


async def test_a_concurrent_burst_gets_exactly_its_quota(client: httpx.AsyncClient, store: Store) -> None:
    """Accepts share one commit: the quota still counts every message of the batch."""
    _, burst = await store.create_key("burst", ["send"], limits=KeyLimits(per_hour=3, per_day=100))
    replies = await asyncio.gather(
        *(
            client.post("/api/v1/messages", json={"to": A_PHONE, "body": f"n{i}"}, headers=bearer(burst))
            for i in range(12)
        )
    )
    assert sorted(r.status_code for r in replies) == [202] * 3 + [429] * 9
    assert len(await store.list_messages()) == 3


async def test_the_daily_quota_counts_the_last_24_hours(
    client: httpx.AsyncClient, tenants: Tenants, store: Store
) -> None:
    rec, key = await store.create_key("daily", ["send"], limits=KeyLimits(per_day=5))
    hour = int(time.time() // 3600)
    # Yesterday's traffic as the ledger holds it: 4 messages 23 hours ago, 1 (expired) 25 hours ago.
    async with store._tx() as db:
        await db.executemany(
            "INSERT INTO key_usage (key_id, hour, n) VALUES (?, ?, ?)",
            [(rec.id, hour - 23, 4), (rec.id, hour - 25, 1)],
        )
    await send(client, key, A_PHONE, "fifth of the day")
    r = await client.post("/api/v1/messages", json={"to": A_PHONE, "body": "sixth"}, headers=bearer(key))
    assert (r.status_code, r.json()["error"]["code"]) == (429, "quota_exceeded")
    assert "5 messages per day" in r.json()["error"]["message"]
    # The 4 from 23 hours ago leave the window at the next full hour: then there is room again.
    assert abs(int(r.headers["retry-after"]) - (3600 - time.time() % 3600)) <= 3


async def test_priority_above_the_keys_highest_is_403_and_the_default_is_lowered(
    client: httpx.AsyncClient, store: Store
) -> None:
    _, normal = await store.create_key(
        "normal", ["send", "read"], limits=KeyLimits(max_priority=Priority.NORMAL)
    )
    r = await client.post(
        "/api/v1/messages", json={"to": A_PHONE, "body": "x", "priority": "high"}, headers=bearer(normal)
    )
    assert (r.status_code, r.json()["error"]["code"]) == (403, "priority_not_allowed")
    assert "normal" in r.json()["error"]["message"]
    assert await listed(client, normal) == []
    assert (await send(client, normal, A_PHONE, "x", priority="normal"))["priority"] == "normal"
    assert (await send(client, normal, A_PHONE, "x", priority="bulk"))["priority"] == "bulk"
    _, bulk = await store.create_key("newsletter", ["send"], limits=KeyLimits(max_priority=Priority.BULK))
    assert (await send(client, bulk, A_PHONE, "weekly news"))["priority"] == "bulk"


async def test_alertmanager_keeps_to_the_keys_quota_and_priority(
    client: httpx.AsyncClient, store: Store
) -> None:
    _, am = await store.create_key(
        "alertmanager", ["send"], limits=KeyLimits(per_hour=1, max_priority=Priority.NORMAL)
    )
    note = {
        "version": "4",
        "status": "firing",
        "groupKey": "g",
        "alerts": [{"labels": {"alertname": "DiskFull"}}],
    }
    r = await client.post(
        "/api/v1/alertmanager", params={"to": f"{A_PHONE},{B_PHONE}"}, json=note, headers=bearer(am)
    )
    # 503, not 429: Alertmanager drops a 4xx, and retries a 5xx until the quota frees up.
    assert (r.status_code, r.json()["error"]["code"]) == (503, "quota_exceeded")
    assert int(r.headers["retry-after"]) >= 1
    (first,) = await store.list_messages()
    assert first.to == A_PHONE
    assert first.priority is Priority.NORMAL  # alerts go out high, lowered to the key's highest


# ----------------------------------------------------------------------- audit
async def test_every_api_action_is_in_the_audit_trail_for_admins_only(
    client: httpx.AsyncClient, tenants: Tenants, store: Store
) -> None:
    sent = await send(client, tenants.alice, A_PHONE, "to cancel")
    await client.post(f"/api/v1/messages/{sent['id']}/cancel", headers=bearer(tenants.alice))
    held = await send(client, tenants.bob, B_PHONE, "interrupted")
    claimed = await store.claim_next("gsm0")
    assert claimed is not None
    await store.part_sending(claimed.id, 1)
    await store.recover_inflight("hold")
    r = await client.post(f"/api/v1/messages/{held['id']}/abandon", headers=bearer(tenants.admin))
    assert r.status_code == 200
    for key in (tenants.alice, tenants.watcher, tenants.sender):
        r = await client.get("/api/v1/audit", headers=bearer(key))
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
    r = await client.get("/api/v1/audit", headers=bearer(tenants.admin))
    assert r.status_code == 200
    doc = r.json()
    assert set(doc) == {"events", "next_cursor"}
    assert doc["next_cursor"] is None
    events = doc["events"]
    assert all(set(e) == AUDIT_FIELDS for e in events)
    assert [(e["actor"], e["action"], e["target"]) for e in events] == [
        ("ops", "abandon", held["id"]),
        ("bob", "send", held["id"]),
        ("alice", "cancel", sent["id"]),
        ("alice", "send", sent["id"]),
    ]
    assert {e["source"] for e in events} == {"127.0.0.1"}
    assert "to cancel" not in r.text  # the trail holds no text
    assert A_PHONE not in r.text  # and no number
    assert all(e["at"].endswith("Z") for e in events)
    # Pages: limit and cursor walk the same list; since narrows it.
    seen: list[str] = []
    cursor = None
    while True:
        page = (
            await client.get(
                "/api/v1/audit",
                params={"limit": 3, **({"cursor": cursor} if cursor else {})},
                headers=bearer(tenants.admin),
            )
        ).json()
        seen += [e["action"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [e["action"] for e in events]
    later = (
        await client.get(
            "/api/v1/audit", params={"since": "2099-01-01T00:00:00Z"}, headers=bearer(tenants.admin)
        )
    ).json()
    assert later == {"events": [], "next_cursor": None}
    bad = await client.get("/api/v1/audit", params={"cursor": "nope"}, headers=bearer(tenants.admin))
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_cursor")


# ------------------------------------------------------------------- migration
async def test_a_read_key_from_before_scopes_keeps_seeing_everything(
    tmp_path: Path, gateway: FakeGateway, client_for: ClientFactory
) -> None:
    """An existing `read` key meant "read every message": it becomes `read_all`, not narrower."""
    path = tmp_path / "old.sqlite3"
    old_key = "sgw_" + "o" * 43
    with sqlite3.connect(path) as db:  # a ledger as the previous release left it
        for script in migrations.MIGRATIONS[:2]:
            db.executescript(script)
        db.execute("PRAGMA user_version=2")
        db.execute(
            "INSERT INTO api_keys (name, prefix, hash, scopes, created_at) VALUES ('dash', ?, ?, 'read,send', 0)",
            (old_key[:12], hash_key(old_key)),
        )
    ledger = Store(path)
    await ledger.open()
    try:
        client = await client_for(create_app(store=ledger, config=TEST_CONFIG, gateway=as_view(gateway)))
        _, fresh = await ledger.create_key("fresh", ["send"])
        other = await send(client, fresh, A_PHONE, "someone else's")
        assert await listed(client, old_key) == [other["id"]]
        (dash,) = [k for k in await ledger.list_keys() if k.name == "dash"]
        assert dash.scopes == {"read_all", "send"}
        assert (dash.per_hour, dash.per_day, dash.max_priority) == (None, None, None)
    finally:
        await ledger.close()
