"""Reply threading in the ledger: what counts as a message the phone has seen, retention that masks
or deletes the message a text answered, and texts received before the upgrade."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from appliance.ledger import Inbound, NewMessage, Retention, Store, migrations
from tests.support.user_data import join_units, units

PHONE = "+4915112345678"


async def accepted(store: Store, body: str, segments: int = 1) -> str:
    msg, _ = await store.accept(
        NewMessage(to=PHONE, body=body, encoding="gsm7", segments=segments), key_id=None, queue_max=100
    )
    return msg.id


async def submitted(store: Store, msg_id: str, mrs: list[int]) -> None:
    """The dispatcher's steps: claimed, then each part in `mrs` accepted by the network."""
    claimed = await store.claim_next("gsm0")
    assert claimed is not None
    assert claimed.id == msg_id
    for seq, mr in enumerate(mrs, 1):
        await store.part_sending(msg_id, seq)
        await store.part_submitted(msg_id, seq, mr, "gsm0")


async def reply(store: Store, text: str, *, window_s: float = 604800) -> Inbound:
    got = await store.add_inbound_part(
        sender=PHONE, encoding="gsm7", user_data=units(text), ref=None, total=1, seq=1,
        sent_at=None, join=join_units, keyword_of=lambda _t: None, reply_window_s=window_s,
    )  # fmt: skip
    assert got is not None
    return got


async def test_a_text_answers_only_a_message_the_phone_has_whole(store: Store) -> None:
    first = await accepted(store, "one part, delivered")
    await submitted(store, first, [1])
    assert (await store.apply_report(1, PHONE, 0x00)).changed
    half = await accepted(store, "two parts, only the first one out", segments=2)
    claimed = await store.claim_next("gsm0")
    assert claimed is not None
    await store.part_sending(half, 1)
    await store.part_submitted(half, 1, 2, "gsm0")  # the phone waits for part 2 to show it
    assert (await reply(store, "answering the first")).in_reply_to == first
    lost = await accepted(store, "reported undelivered")
    await submitted(store, lost, [3])
    assert (await store.apply_report(3, PHONE, 0x41)).changed  # permanent failure: never on the phone
    assert (await reply(store, "still the first")).in_reply_to == first
    assert [i.in_reply_to for i in await store.list_replies(first)] == [first, first]
    assert await store.list_replies(lost) == []


async def test_retention_unlinks_a_text_whose_message_number_was_masked(store: Store) -> None:
    msg = await accepted(store, "your code is 4711")
    await submitted(store, msg, [7])
    assert (await store.apply_report(7, PHONE, 0x00)).changed  # final: retention may mask it
    delivered = await store.get(msg)
    assert delivered is not None
    assert delivered.delivered_at is not None
    text = await reply(store, "thanks")
    assert text.in_reply_to == msg
    # The message's number masked, the text's not yet: the link would tell the masked number.
    cutoff = (delivered.delivered_at + text.received_at) / 2
    done = await store.purge(Retention(numbers_days=1), now=cutoff + 86400)
    assert done["numbers"] == 1
    (kept,) = await store.list_inbound()
    assert (kept.from_number, kept.in_reply_to) == (PHONE, None)
    assert await store.list_replies(msg) == []


async def test_a_deleted_message_leaves_no_dangling_in_reply_to(store: Store) -> None:
    msg = await accepted(store, "deleted later")
    await submitted(store, msg, [9])
    assert (await store.apply_report(9, PHONE, 0x00)).changed
    text = await reply(store, "ok")
    assert text.in_reply_to == msg
    done = await store.purge(Retention(messages_days=1), now=text.received_at + 86400)
    assert done["messages"] == 1
    (kept,) = await store.list_inbound()
    assert kept.in_reply_to is None


async def test_texts_received_before_the_upgrade_are_threaded_by_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    now = time.time()
    with sqlite3.connect(path) as db:  # a ledger as the previous release left it
        for script in migrations.MIGRATIONS[:10]:
            db.executescript(script)
        db.execute("PRAGMA user_version=10")
        for seq, (sent_at, status) in enumerate(
            [
                (now - 900, "delivered"),
                (now - 600, "delivered"),
                (now - 300, "undelivered"),
                (None, "queued"),
            ],
            1,
        ):
            db.execute(
                "INSERT INTO messages (id, to_number, encoding, segments, priority, status, created_at, "
                "updated_at, not_before, expires_at, sent_at, key_id) VALUES (?, ?, 'gsm7', 1, 1, ?, ?, ?, ?, ?, ?, ?)",
                (f"msg_{seq}", PHONE, status, now - 1000, now, now - 1000, now + 86400, sent_at, seq),
            )
        for n, (sender, at) in enumerate(
            [(PHONE, now - 700), (PHONE, now - 100), ("+4917600000000", now), (PHONE, now - 900 - 8 * 86400)]
        ):
            db.execute(
                "INSERT INTO inbound (id, from_number, encoding, parts, parts_expected, complete, received_at) "
                "VALUES (?, ?, 'gsm7', 1, 1, 1, ?)",
                (f"in_{n}", sender, at),
            )
    ledger = Store(path)
    await ledger.open()
    try:
        threads = {i.id: i.in_reply_to for i in await ledger.list_inbound()}
        # After msg_1; after msg_2 (msg_3 undelivered, msg_4 unsent); a stranger; before any message.
        assert threads == {"in_0": "msg_1", "in_1": "msg_2", "in_2": None, "in_3": None}
        # The `read` key that sent msg_2 (key id 2) sees the text that answers it, and only that.
        assert [i.id for i in await ledger.list_inbound(replies_to_key=2)] == ["in_1"]
    finally:
        await ledger.close()
