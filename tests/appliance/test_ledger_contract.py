"""What the ledger package promises its readers: one "oldest queued" for the daemon and the watchdog,
whole pages in one query that equal per-id reads, and a Twilio callback typed by a column, not a URL prefix."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx

from appliance.ledger import NewMessage, Store
from appliance.ledger.migrations import MIGRATIONS
from tests.support.api_fakes import Keys
from watchdog.facts import read_ledger

TO = "+4915112345678"
HOOK = "http://192.168.1.20:8000/hook"


def message(body: str = "hello", **fields: object) -> NewMessage:
    return NewMessage(to=TO, body=body, encoding="gsm7", segments=1, **fields)  # type: ignore[arg-type]


async def test_a_past_send_at_does_not_make_the_watchdogs_queue_older(store: Store) -> None:
    """A message sent with a send_at an hour ago waits since it was accepted: the watchdog (reading
    the ledger's views) must see the same oldest-queued time as the daemon, not an hour more, which
    it would page as a stalled queue."""
    now = time.time()
    msg, _ = await store.accept(message(send_at=now - 3600), key_id=None, queue_max=10)
    daemon = (await store.stats()).oldest_queued_at
    watchdog = read_ledger(store.path, time.time())
    assert watchdog is not None
    assert daemon == msg.created_at
    assert watchdog.oldest_queued_at == daemon


async def test_a_list_page_equals_the_messages_read_one_by_one(
    client: httpx.AsyncClient, keys: Keys, store: Store
) -> None:
    """GET /api/v1/messages builds each message from one query per page: parts, events and times
    (to the last bit of the float) are what GET /api/v1/messages/{id} says of each."""
    multi, _ = await store.accept(
        NewMessage(to=TO, body="x" * 200, encoding="gsm7", segments=2), key_id=None, queue_max=10
    )
    canceled, _ = await store.accept(message("cancel me"), key_id=None, queue_max=10)
    await store.cancel(canceled.id)
    await store.accept(message("waiting"), key_id=None, queue_max=10)
    claimed = await store.claim_next("gsm0")
    assert claimed is not None
    assert claimed.id == multi.id
    at = 1764567890.1234567  # more digits than SQLite's JSON functions print
    await store.part_submitted(multi.id, 1, 17, "gsm0", at=at)
    await store.apply_report(17, TO, 0x00, at=at + 2.5)

    page = await client.get("/api/v1/messages", params={"limit": 10}, headers=keys.auth("read"))
    assert page.status_code == 200
    listed = page.json()["messages"]
    assert len(listed) == 3
    for item in listed:
        one = await client.get(f"/api/v1/messages/{item['id']}", headers=keys.auth("read"))
        assert item == one.json()
    whole = await store.get(multi.id)
    assert whole is not None
    assert (whole.parts[0].submitted_at, whole.parts[0].report_at) == (at, at + 2.5)
    assert [m.parts for m in await store.list_messages(limit=10) if m.id == multi.id] == [whole.parts]
    assert [e.kind for e in whole.events][-2:] == ["part_submitted", "report"]


async def test_a_twilio_status_callback_is_the_plain_url_in_the_api(
    client: httpx.AsyncClient, keys: Keys, store: Store
) -> None:
    """The Twilio door's StatusCallback is stored as given, typed by callback_format: the native API
    shows the URL the app sent (no `twilio:` tag), and its webhook is posted as Twilio's form."""
    r = await client.post(
        "/2010-04-01/Accounts/AC0123/Messages.json",
        data={"To": TO, "Body": "hi", "StatusCallback": HOOK},
        auth=("AC0123", keys.send_read),
    )
    assert r.status_code == 201, r.text
    sid = r.json()["sid"]
    listed = await client.get("/api/v1/messages", headers=keys.auth("read"))
    [doc] = listed.json()["messages"]
    assert doc["status_callback"] == HOOK
    msg = await store.get(doc["id"])
    assert msg is not None
    assert msg.callback_format == "twilio"
    items = await store.due_webhooks(time.time() + 1)  # the accept queued its first callback
    assert {(i.url, i.format) for i in items} == {(HOOK, "twilio")}
    assert sid.endswith(doc["id"].removeprefix("msg_"))


async def test_the_twilio_prefix_of_an_older_ledger_becomes_callback_format(tmp_path: Path) -> None:
    """Migration 10: a message and a pending webhook stored with `twilio:<url>` keep their callback,
    now as the plain URL with callback_format 'twilio'; a native callback is left as it was."""
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        for version, script in enumerate(MIGRATIONS[:8], start=1):
            db.executescript(script)
            db.execute(f"PRAGMA user_version={version}")
        now = time.time()
        for msg_id, callback in (("msg_tw", f"twilio:{HOOK}"), ("msg_js", HOOK)):
            db.execute(
                "INSERT INTO messages (id, to_number, body, encoding, segments, priority, status, created_at, "
                "updated_at, not_before, expires_at, status_callback) "
                "VALUES (?, ?, 'hi', 'gsm7', 1, 1, 'queued', ?, ?, ?, ?, ?)",
                (msg_id, TO, now, now, now, now + 3600, callback),
            )
        db.execute(
            "INSERT INTO webhook_outbox (webhook_id, url, secret, type, payload, created_at, next_attempt_at, target) "
            "VALUES ('wh_1', ?, '', 'message.status', '{}', ?, ?, 'http://192.168.1.20:8000')",
            (f"twilio:{HOOK}", now, now),
        )
    db.close()
    store = Store(path)
    await store.open()
    try:
        twilio_msg, native_msg = await store.get("msg_tw"), await store.get("msg_js")
        items = await store.due_webhooks(time.time() + 1)
    finally:
        await store.close()
    assert twilio_msg is not None
    assert native_msg is not None
    assert (twilio_msg.status_callback, twilio_msg.callback_format) == (HOOK, "twilio")
    assert (native_msg.status_callback, native_msg.callback_format) == (HOOK, "json")
    assert [(i.url, i.format) for i in items] == [(HOOK, "twilio")]
