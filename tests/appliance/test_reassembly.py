"""Multipart reassembly keys: sender, reference width, reference and total (TS 23.040 9.2.3.24.1/.8).

Each row is the order in which parts arrive; the messages that come out must be exactly
the texts that were split, never a mix of two messages that share a reference number.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from appliance.ledger import Store
from appliance.ledger.migrations import MIGRATIONS
from tests.support.user_data import join_units, units

ALICE, BOB = "+4915112345678", "+4917687654321"

# (sender, ref_bits, ref, total, seq, text of this part)
Part = tuple[str, int, int, int, int, str]

CASES: dict[str, tuple[list[Part], list[str]]] = {
    "8-bit and 16-bit reference 42 from one sender, interleaved": (
        [
            (ALICE, 8, 42, 2, 1, "eight-bit "),
            (ALICE, 16, 42, 2, 1, "sixteen-bit "),
            (ALICE, 16, 42, 2, 2, "message"),
            (ALICE, 8, 42, 2, 2, "message"),
        ],
        ["sixteen-bit message", "eight-bit message"],
    ),
    "16-bit reference 298 is not 8-bit 42 (298 mod 256)": (
        [
            (ALICE, 16, 298, 2, 1, "wide "),
            (ALICE, 8, 42, 2, 1, "narrow "),
            (ALICE, 8, 42, 2, 2, "one"),
            (ALICE, 16, 298, 2, 2, "one"),
        ],
        ["narrow one", "wide one"],
    ),
    "the same reference and width from two senders": (
        [
            (ALICE, 8, 7, 2, 1, "from "),
            (BOB, 8, 7, 2, 1, "by "),
            (BOB, 8, 7, 2, 2, "Bob"),
            (ALICE, 8, 7, 2, 2, "Alice"),
        ],
        ["by Bob", "from Alice"],
    ),
    "the same reference and width with a different total": (
        [
            (ALICE, 16, 9, 3, 3, "three"),
            (ALICE, 16, 9, 2, 1, "two "),
            (ALICE, 16, 9, 3, 1, "one "),
            (ALICE, 16, 9, 2, 2, "parts"),
            (ALICE, 16, 9, 3, 2, "two "),
        ],
        ["two parts", "one two three"],
    ),
    "a 16-bit message out of order, its parts repeated": (
        [
            (ALICE, 16, 65535, 3, 3, "!"),
            (ALICE, 16, 65535, 3, 1, "last "),
            (ALICE, 16, 65535, 3, 1, "last "),
            (ALICE, 16, 65535, 3, 2, "reference"),
        ],
        ["last reference!"],
    ),
}


def keyword(text: str) -> str | None:
    return None


async def add(store: Store, part: Part) -> Any:
    sender, bits, ref, total, seq, text = part
    return await store.add_inbound_part(
        sender=sender,
        encoding="gsm7",
        user_data=units(text),
        ref=ref,
        ref_bits=bits,
        total=total,
        seq=seq,
        sent_at=None,
        join=join_units,
        keyword_of=keyword,
    )


@pytest.mark.parametrize(("arrivals", "expected"), list(CASES.values()), ids=list(CASES))
async def test_parts_join_only_with_parts_of_the_same_message(
    store: Store, arrivals: list[Part], expected: list[str]
) -> None:
    completed = [m for m in [await add(store, p) for p in arrivals] if m is not None]
    assert [m.body for m in completed] == expected
    assert all(m.complete for m in completed)
    assert [m.body for m in reversed(await store.list_inbound())] == expected


async def test_stale_parts_are_flushed_per_reference_width(store: Store) -> None:
    await add(store, (ALICE, 8, 42, 3, 1, "narrow "))
    await add(store, (ALICE, 16, 42, 3, 2, "wide"))
    flushed = await store.flush_stale_inbound(60, join=join_units, keyword_of=keyword, now=time.time() + 61)
    assert sorted((m.body, m.parts, m.parts_expected, m.complete) for m in flushed) == [
        ("narrow ", 1, 3, False),
        ("wide", 1, 3, False),
    ]


async def test_parts_waiting_in_an_older_ledger_survive_the_upgrade(tmp_path: Path) -> None:
    """A ledger of schema 2 (no width column) with parts waiting: after the upgrade a reference
    above 255 is read as 16-bit, the rest as 8-bit, and the missing parts still complete them."""
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        for version, script in enumerate(MIGRATIONS[:2], start=1):
            db.executescript(script)
            db.execute(f"PRAGMA user_version={version}")
        db.executemany(
            "INSERT INTO inbound_parts (sender, ref, total, seq, encoding, user_data, sent_at, received_at) "
            "VALUES (?, ?, 2, 1, 'gsm7', ?, NULL, ?)",
            [(ALICE, 42, units("eight "), time.time()), (ALICE, 300, units("sixteen "), time.time())],
        )
    db.close()
    store = Store(path)
    await store.open()
    try:
        wide = await add(store, (ALICE, 16, 300, 2, 2, "bits"))
        narrow = await add(store, (ALICE, 8, 42, 2, 2, "bits"))
    finally:
        await store.close()
    assert (narrow.body, wide.body) == ("eight bits", "sixteen bits")
