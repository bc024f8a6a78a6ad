"""Send windows in the send queue: a message whose stored window is closed when it falls due, or when
a modem would take it, waits as `scheduled` for the next opening, DST-correct, with one event per hold.

The ledger takes the instant as `now=` (promote_and_expire, claim_next): the tests put it on the
night of the next clock changes in Europe/Berlin (the pure rules are in test_windows.py)."""

from __future__ import annotations

import datetime
import sqlite3
import time
import zoneinfo
from pathlib import Path

from appliance.ledger import Message, NewMessage, Store, hash_key
from appliance.ledger.migrations import MIGRATIONS
from appliance.states import State
from appliance.windows import next_open, parse_window

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
DAY_TO_22 = parse_window({"days": "daily", "start": "08:00", "end": "22:00", "tz": "Europe/Berlin"})
LONG_VALIDITY_S = 400 * 86400  # the simulated nights lie months after the real accept


def berlin(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> float:
    return datetime.datetime(year, month, day, hour, minute, second, tzinfo=BERLIN).timestamp()


def utc(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def windowed(send_at: float | None = None) -> NewMessage:
    return NewMessage(
        to="+4915112345678",
        body="backup done",
        encoding="gsm7",
        segments=1,
        send_at=send_at,
        validity_s=LONG_VALIDITY_S,
        window=DAY_TO_22.to_json(),
        window_source="message",
    )


async def reread(store: Store, msg: Message) -> Message:
    current = await store.get(msg.id)
    assert current is not None
    return current


def holds(msg: Message) -> list[str]:
    return [e.detail or "" for e in msg.events if e.kind == "window"]


async def test_a_queued_message_a_backlog_carries_past_2200_waits_for_0800_cest_after_the_spring_forward(
    store: Store,
) -> None:
    """Queued at 21:55 on Saturday 27 March 2027, claimed at 22:00: back to `scheduled` until Sunday
    08:00 CEST (06:00 UTC: the night is an hour shorter), not 07:00 UTC; then it goes."""
    msg, _ = await store.accept(windowed(), key_id=None, queue_max=10)
    assert msg.status is State.QUEUED
    assert await store.claim_next("gsm0", now=berlin(2027, 3, 27, 22, 0)) is None
    held = await reread(store, msg)
    assert held.status is State.SCHEDULED
    assert utc(held.not_before) == "2027-03-28 06:00:00"
    assert held.send_at == held.not_before
    assert held.send_at == next_open(DAY_TO_22, berlin(2027, 3, 27, 22, 0))
    assert holds(held) == [
        "outside send window daily 08:00-22:00 Europe/Berlin; opens Sun 2027-03-28 08:00 CEST"
    ]
    # The wait at night does not eat its validity: what it had left counts from the opening.
    assert held.expires_at - held.not_before == msg.expires_at - berlin(2027, 3, 27, 22, 0)

    assert await store.promote_and_expire(now=berlin(2027, 3, 28, 7, 59, 59)) == 0
    assert await store.promote_and_expire(now=berlin(2027, 3, 28, 8, 0)) == 1
    claimed = await store.claim_next("gsm0", now=berlin(2027, 3, 28, 8, 0))
    assert claimed is not None
    assert claimed.id == msg.id
    assert claimed.status is State.SENDING
    assert [(e.from_status, e.to_status) for e in claimed.events if e.to_status] == [
        (None, "queued"),
        ("queued", "scheduled"),
        ("scheduled", "queued"),
        ("queued", "sending"),
    ]


async def test_a_scheduled_message_that_falls_due_after_2200_on_the_fall_back_night_is_held_once(
    store: Store,
) -> None:
    """Due at 21:55 on Saturday 30 October 2027, reached at 22:00:30 (the daemon was busy or down):
    it is held until Sunday 08:00 CET (07:00 UTC: the night is an hour longer), with one event
    however often the maintenance loop looks in the night."""
    msg, _ = await store.accept(windowed(berlin(2027, 10, 30, 21, 55)), key_id=None, queue_max=10)
    assert msg.status is State.SCHEDULED
    for minute in range(0, 60, 10):  # the maintenance loop, every few minutes of the night
        assert await store.promote_and_expire(now=berlin(2027, 10, 30, 22, minute, 30)) == 0
    held = await reread(store, msg)
    assert held.status is State.SCHEDULED
    assert utc(held.not_before) == "2027-10-31 07:00:00"
    assert holds(held) == [
        "outside send window daily 08:00-22:00 Europe/Berlin; opens Sun 2027-10-31 08:00 CET"
    ]
    # Validity counts from the release: the whole of it is still ahead at the new opening.
    assert held.expires_at - held.not_before == LONG_VALIDITY_S
    assert await store.claim_next("gsm0", now=berlin(2027, 10, 31, 8, 0)) is None  # still scheduled
    assert await store.promote_and_expire(now=berlin(2027, 10, 31, 8, 0)) == 1
    assert (await reread(store, msg)).status is State.QUEUED


async def test_a_message_due_inside_its_window_is_promoted_and_claimed_without_a_hold(store: Store) -> None:
    msg, _ = await store.accept(windowed(berlin(2027, 3, 27, 21, 50)), key_id=None, queue_max=10)
    assert await store.promote_and_expire(now=berlin(2027, 3, 27, 21, 55)) == 1
    claimed = await store.claim_next("gsm0", now=berlin(2027, 3, 27, 21, 59, 59))
    assert claimed is not None
    assert claimed.id == msg.id
    assert holds(claimed) == []
    assert claimed.window == DAY_TO_22.to_json()


async def test_a_held_message_does_not_block_the_next_one_in_the_queue(store: Store) -> None:
    """The claim passes a closed-window message back to `scheduled` and takes the next due one."""
    night, _ = await store.accept(windowed(), key_id=None, queue_max=10)
    plain, _ = await store.accept(
        NewMessage(
            to="+4915112345679", body="no window", encoding="gsm7", segments=1, validity_s=LONG_VALIDITY_S
        ),
        key_id=None,
        queue_max=10,
    )
    claimed = await store.claim_next("gsm0", now=berlin(2027, 3, 27, 23, 0))
    assert claimed is not None
    assert claimed.id == plain.id
    assert (await reread(store, night)).status is State.SCHEDULED


async def test_an_older_ledger_upgrades_to_keys_and_messages_without_windows(tmp_path: Path) -> None:
    """The send windows migration: keys and messages stored before it have no window and no bypass,
    and go out as before (a scheduled one is promoted when due)."""
    path = tmp_path / "old.sqlite3"
    ours = next(i for i, script in enumerate(MIGRATIONS) if "send_window" in script)
    with sqlite3.connect(path) as db:
        for version, script in enumerate(MIGRATIONS[:ours], start=1):
            db.executescript(script)
            db.execute(f"PRAGMA user_version={version}")
        now = time.time()
        db.execute(
            "INSERT INTO api_keys (name, prefix, hash, scopes, created_at) VALUES ('app', 'sgw_x', ?, 'send', ?)",
            (hash_key("sgw_old"), now),
        )
        db.execute(
            "INSERT INTO messages (id, to_number, body, encoding, segments, priority, status, created_at, "
            "updated_at, send_at, not_before, expires_at) "
            "VALUES ('msg_old', '+4915112345678', 'hi', 'gsm7', 1, 1, 'scheduled', ?, ?, ?, ?, ?)",
            (now, now, now + 60, now + 60, now + 3600),
        )
    db.close()
    store = Store(path)
    await store.open()
    try:
        key = await store.verify_key("sgw_old")
        assert key is not None
        assert (key.window, key.window_bypass_high) == (None, False)
        assert await store.promote_and_expire(now=now + 120) == 1
        msg = await store.get("msg_old")
        assert msg is not None
        assert (msg.status, msg.window) == (State.QUEUED, None)
    finally:
        await store.close()
