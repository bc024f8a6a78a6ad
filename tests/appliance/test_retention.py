"""Retention: what the ledger still knows about a message or an inbound text after N days."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from appliance.ledger import Actor, NewMessage, Retention, Store, retention
from appliance.ledger.dialect import fetch_all
from tests.support.user_data import join_units, units
from watchdog.peers import PeerWatch

DAY = 86400.0
TO = "+4915112345678"
SENDER = "+4917612345678"
POLICY = Retention(numbers_days=90, metadata_days=60, events_days=120, messages_days=365)


async def final_message(store: Store) -> str:
    new = NewMessage(
        to=TO,
        body="the text",
        encoding="gsm7",
        segments=1,
        status_callback="http://app.lan/hook",
        metadata={"ticket": 4711},
    )
    msg, _ = await store.accept(new, key_id=None, queue_max=100)
    await store.cancel(msg.id)  # final (canceled) now
    return msg.id


async def pending_message(store: Store) -> str:
    new = NewMessage(to=TO, body="later", encoding="gsm7", segments=1, metadata={"k": 1})
    msg, _ = await store.accept(new, key_id=None, queue_max=100)
    return msg.id


async def inbound(store: Store) -> str:
    got = await store.add_inbound_part(
        sender=SENDER,
        encoding="gsm7",
        user_data=units("RESTART 4711"),
        ref=None,
        total=1,
        seq=1,
        sent_at=None,
        join=join_units,
        keyword_of=lambda _t: None,
    )
    assert got is not None
    return got.id


async def seen(store: Store, msg_id: str) -> dict[str, Any]:
    msg = await store.get(msg_id)
    if msg is None:
        return {"exists": False}
    return {
        "exists": True,
        "to": msg.to,
        "metadata": msg.metadata,
        "callback": msg.status_callback,
        "events": len(msg.events),
    }


# (days later, what a final message looks like then)
FINAL_CASES = [
    (
        1,
        {
            "exists": True,
            "to": TO,
            "metadata": {"ticket": 4711},
            "callback": "http://app.lan/hook",
            "events": 2,
        },
    ),
    (61, {"exists": True, "to": TO, "metadata": None, "callback": None, "events": 2}),
    (91, {"exists": True, "to": "+49•••", "metadata": None, "callback": None, "events": 2}),
    (121, {"exists": True, "to": "+49•••", "metadata": None, "callback": None, "events": 0}),
    (366, {"exists": False}),
]


@pytest.mark.parametrize(("days", "expected"), FINAL_CASES, ids=[f"{d}d" for d, _e in FINAL_CASES])
async def test_final_message_after(store: Store, days: int, expected: dict[str, Any]) -> None:
    msg_id = await final_message(store)
    await store.purge(POLICY, now=time.time() + days * DAY)
    assert await seen(store, msg_id) == expected


@pytest.mark.parametrize("days", [91, 400])
async def test_a_message_not_yet_final_is_kept_whole(store: Store, days: int) -> None:
    msg_id = await pending_message(store)
    before = await seen(store, msg_id)
    await store.purge(POLICY, now=time.time() + days * DAY)
    assert await seen(store, msg_id) == before


@pytest.mark.parametrize(
    ("days", "sender", "count"),
    [(1, SENDER, 1), (91, "+49•••", 1), (366, None, 0)],
)
async def test_inbound_after(store: Store, days: int, sender: str | None, count: int) -> None:
    await inbound(store)
    await store.purge(POLICY, now=time.time() + days * DAY)
    rows = await store.list_inbound(limit=10)
    assert len(rows) == count
    if rows:
        assert rows[0].from_number == sender


async def test_zero_days_keeps_everything(store: Store) -> None:
    msg_id = await final_message(store)
    before = await seen(store, msg_id)
    done = await store.purge(Retention(), now=time.time() + 3650 * DAY)
    assert not any(done.values())
    assert await seen(store, msg_id) == before


async def test_purge_works_in_batches_and_counts(store: Store) -> None:
    ids = [await final_message(store) for _ in range(3)]
    done = await store.purge(POLICY, now=time.time() + 400 * DAY)
    assert done["messages"] == 3
    assert [await store.get(i) for i in ids] == [None, None, None]


@pytest.mark.slow
async def test_deleted_messages_give_their_space_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "big.sqlite3")
    await store.open()
    try:
        for i in range(300):
            new = NewMessage(to=TO, body=f"{i} " + "x" * 600, encoding="gsm7", segments=5)
            msg, _ = await store.accept(new, key_id=None, queue_max=1000)
            await store.cancel(msg.id)
        await store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size_full = (tmp_path / "big.sqlite3").stat().st_size
        await store.purge(POLICY, now=time.time() + 400 * DAY)
        assert await store.compact() > 0
        await store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert (tmp_path / "big.sqlite3").stat().st_size < size_full / 2
    finally:
        await store.close()


# (days later, [retention] audit_days, audit rows left)
AUDIT_CASES = [(364, 365, 1), (366, 365, 0), (31, 30, 0), (3650, 0, 1)]


@pytest.mark.parametrize(
    ("days", "audit_days", "left"), AUDIT_CASES, ids=[f"{d}d-keep{a}" for d, a, _n in AUDIT_CASES]
)
async def test_audit_rows_after(store: Store, days: int, audit_days: int, left: int) -> None:
    await store.audit(Actor("ops", "192.0.2.7"), "modem_reset", "modem")
    done = await store.purge(Retention(audit_days=audit_days), now=time.time() + days * DAY)
    assert len(await store.list_audit(limit=10)) == left
    assert done["audit"] == 1 - left


async def test_audit_purge_goes_in_batches(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "PURGE_BATCH", 2)
    for n in range(5):
        await store.audit(Actor("ops", "192.0.2.7"), "test_sms", f"+49•••{n}")
    done = await store.purge(Retention(audit_days=365), now=time.time() + 366 * DAY)
    assert done["audit"] == 5
    assert await store.list_audit(limit=10) == []


async def _peer_incidents(store: Store) -> list[tuple[str, bool]]:
    rows = await fetch_all(
        store.rdb, "SELECT peer, resolved_at FROM peer_incidents ORDER BY silent_since", ()
    )
    return [(str(r["peer"]), r["resolved_at"] is not None) for r in rows]


async def test_a_resolved_peer_incident_goes_after_audit_days_and_an_open_one_stays(
    store: Store, ledger_url: str
) -> None:
    """A watchdog's claims on a silent fleet box (watchdog/peers.py), on both backends."""
    peer = Store(ledger_url, box="c")
    await peer.open()
    try:
        t0 = time.time()
        watch = PeerWatch(ledger_url, "a", "a", silent_s=3.0)
        await peer.register_box(1.0, now=t0)
        assert len(watch.check(t0 + 10)) == 1  # c silent: claimed and texted
        await peer.register_box(1.0, now=t0 + 20)
        assert [n.resolved for n in watch.check(t0 + 21)] == [True]  # c back: that incident closed
        assert len(watch.check(t0 + 40)) == 1  # c silent again: an open incident

        kept = await store.purge(Retention(audit_days=365), now=t0 + 21 + 364 * DAY)
        assert kept["peer_incidents"] == 0
        assert await _peer_incidents(store) == [("c", True), ("c", False)]

        done = await store.purge(Retention(audit_days=365), now=t0 + 21 + 366 * DAY)
        assert done["peer_incidents"] == 1
        assert await _peer_incidents(store) == [("c", False)]

        # The open claim still holds: a restarted watchdog texts RESOLVED when c beats again.
        await peer.register_box(1.0, now=t0 + 50)
        restarted = PeerWatch(ledger_url, "a", "a", silent_s=3.0)
        assert [n.resolved for n in restarted.check(t0 + 51)] == [True]
    finally:
        await peer.close()
