"""On-call commands at the ledger's door: stored redacted with a keyed PIN digest, and a ledger
written before that redacted on upgrade (rows and queued webhooks)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from appliance.inbound import command_sealer
from appliance.ledger import Store
from appliance.ledger.dialect import split_sql
from appliance.ledger.migrations import MIGRATIONS
from tests.support.user_data import join_units, units
from watchdog.commands import load_key, pin_matches

PIN = "58213947"
ONCALL = "+4915112345678"
CUSTOMER = "+4917612345678"
CUSTOMER_TEXTS = ("Status of my order 42?", "Ack, see you at 5", "Restart the router please")


async def test_a_command_is_stored_redacted_with_a_digest_only_the_key_holder_can_check(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite3"
    store = Store(str(path), webhooks=[])
    await store.open()
    seal = command_sealer(str(path), [ONCALL], "DE")
    try:
        for text in (f"RESTART {PIN}", "hello", f"Status:{PIN}"):
            await store.add_inbound_part(
                sender=ONCALL, encoding="gsm7", user_data=units(text), ref=None, total=1, seq=1,
                sent_at=None, join=join_units, keyword_of=lambda _t: None, seal=seal,
            )  # fmt: skip
        bodies = [m.body for m in await store.list_inbound()]
        rows = await store.rdb.execute_fetchall("SELECT body, command_digest FROM inbound ORDER BY seq")
    finally:
        await store.close()
    assert sorted(b or "" for b in bodies) == ["RESTART ******", "STATUS ******", "hello"]
    (restart, digest), (hello, none), (sloppy, no_shape) = (tuple(r) for r in rows)
    assert (restart, hello, sloppy) == ("RESTART ******", "hello", "STATUS ******")
    assert none is None
    assert no_shape is None  # not `VERB <pin>`: nothing the watchdog could accept
    # The watchdog's check, with the key beside the ledger.
    assert pin_matches(load_key(tmp_path), PIN, digest)
    assert not holding(PIN, tmp_path)


def holding(secret: str, directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if secret.encode() in p.read_bytes()]


async def test_upgrading_redacts_commands_kept_whole_by_an_older_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:2]:
        for statement in split_sql(script):
            db.execute(statement)
    db.execute("PRAGMA user_version=2")
    texts = [
        f"RESTART {PIN}",
        f" ack {PIN}",
        f"status\n{PIN} ",
        "Acknowledged",
        "Statusbericht",
        "hello",
        *CUSTOMER_TEXTS,
        "RESTART 4711",  # too short for a PIN
        f"RESTART {PIN} now",
    ]
    for i, text in enumerate(texts):
        db.execute(
            "INSERT INTO inbound (id, from_number, body, encoding, parts, parts_expected, complete, received_at) "
            "VALUES (?, ?, ?, 'gsm7', 1, 1, 1, 0)",
            (f"in_{i}", ONCALL, text),
        )
    payload = json.dumps({"type": "message.received", "data": {"id": "in_0", "body": f"RESTART {PIN}"}})
    db.execute(
        "INSERT INTO webhook_outbox (webhook_id, url, secret, type, payload, created_at, next_attempt_at) "
        "VALUES ('wh_1', 'http://example.invalid/', '', 'message.received', ?, 0, 0)",
        (payload,),
    )
    db.close()
    store = Store(str(path), webhooks=[])
    await store.open()
    try:
        rows = await store.rdb.execute_fetchall("SELECT body FROM inbound ORDER BY seq")
        hooks = await store.rdb.execute_fetchall("SELECT payload FROM webhook_outbox")
    finally:
        await store.close()
    assert [r[0] for r in rows] == [
        "RESTART ******",
        "ACK ******",
        "STATUS ******",
        "Acknowledged",
        "Statusbericht",
        "hello",
        *CUSTOMER_TEXTS,
        "RESTART 4711",
        f"RESTART {PIN} now",
    ]
    assert json.loads(next(iter(hooks))[0])["data"]["body"] == "RESTART ******"


async def test_only_commands_are_sealed_customers_texts_are_stored_as_received(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    store = Store(str(path), webhooks=[])
    await store.open()
    seal = command_sealer(str(path), ["015112345678"], "DE")  # on-call in national form: same number
    sent = [
        *((CUSTOMER, text) for text in CUSTOMER_TEXTS),
        (CUSTOMER, "RESTART 4711"),
        (CUSTOMER, f"RESTART {PIN}"),
        (ONCALL, f"Restart:{PIN}"),
        (ONCALL, "Ack, on my way"),
    ]
    try:
        for sender, text in sent:
            await store.add_inbound_part(
                sender=sender, encoding="gsm7", user_data=units(text), ref=None, total=1, seq=1,
                sent_at=None, join=join_units, keyword_of=lambda _t: None, seal=seal,
            )  # fmt: skip
        rows = await store.rdb.execute_fetchall("SELECT body, command_digest FROM inbound ORDER BY seq")
    finally:
        await store.close()
    assert [r[0] for r in rows] == [
        *CUSTOMER_TEXTS,
        "RESTART 4711",
        # The exact shape `VERB <6..32 digits>` is sealed whoever sends it: on-call lists change
        # and a PIN typed from a phone not (yet) listed must not be kept whole.
        "RESTART ******",
        "RESTART ******",  # from on-call every verb-led text, however sloppy
        "ACK ******",
    ]
    assert [r[1] is None for r in rows] == [True, True, True, True, False, True, True]
