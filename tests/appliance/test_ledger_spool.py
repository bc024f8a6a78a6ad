"""A box on a PostgreSQL ledger whose server is stopped: accepts go to the local spool (SQLite) and
reach the server, once each, when it is started again (appliance/ledger/spool.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.ledger import LedgerUnreachable, NewMessage, Store
from appliance.ledger.dialect import fetch_all
from appliance.ledger.spool import DUPLICATE, Spool
from tests.support.postgres import PgServer, running_server

TO = "+4915112345678"


def message(body: str, key: str | None = None) -> NewMessage:
    return NewMessage(to=TO, body=body, encoding="gsm7", segments=1, idempotency_key=key)


@pytest.fixture(scope="module")
def own_server() -> Iterator[PgServer]:
    """A server of this module's own: its tests stop it, which the shared one's users must not see."""
    server = running_server()
    yield server
    server.stop()


@dataclass
class Box:
    server: PgServer
    url: str
    ledger: Store
    spool: Spool

    async def outage(self) -> None:
        await asyncio.to_thread(self.server.halt)

    async def back(self) -> None:
        await asyncio.to_thread(self.server.resume)


@pytest.fixture
async def box(own_server: PgServer, tmp_path: Path) -> AsyncIterator[Box]:
    url = await own_server.fresh_database()
    ledger = Store(url)
    await ledger.open()
    spool = Spool(str(tmp_path / "spool.sqlite3"), ledger)
    await spool.open()
    box = Box(own_server, url, ledger, spool)
    yield box
    if not own_server.directory.joinpath("data", "postmaster.pid").exists():
        await box_back(own_server)
    await box.spool.close()  # the one the test left there (a restart replaces it)
    await ledger.close()


async def box_back(server: PgServer) -> None:
    await asyncio.to_thread(server.resume)


async def rows_on_server(url: str, body: str) -> list[str]:
    reader = Store(url)
    await reader.open()
    try:
        return [
            r["id"] for r in await fetch_all(reader.rdb, "SELECT id FROM messages WHERE body = ?", (body,))
        ]
    finally:
        await reader.close()


async def test_accepted_while_the_server_is_stopped_is_spooled_then_drained_once(box: Box) -> None:
    await box.outage()
    msg, created = await box.spool.accept(message("while down", key="k-1"), key_id=None, queue_max=100)
    assert created
    assert msg.status.value == "queued"
    assert not box.ledger.reachable.is_set()
    assert box.spool.messages == 1
    assert box.spool.problem() == (
        "ledger unreachable: accepting into the local spool (1 messages), sending paused"
    )
    # Read back from the spool while the server is down; the same key finds the same message.
    spooled = await box.spool.get(msg.id)
    assert spooled is not None
    assert spooled.body == "while down"
    again, created_again = await box.spool.accept(
        message("while down", key="k-1"), key_id=None, queue_max=100
    )
    assert (again.id, created_again) == (msg.id, False)
    with pytest.raises(LedgerUnreachable):
        await box.ledger.claim_next("modem-a")  # nothing is claimed: it could not be recorded

    await box.back()
    assert await box.ledger.ping()
    assert await box.spool.drain() == 1
    assert box.spool.messages == 0
    assert box.spool.problem() is None
    on_server = await box.ledger.get(msg.id)
    assert on_server is not None
    assert (on_server.to, on_server.body, on_server.status.value) == (TO, "while down", "queued")
    assert on_server.created_at == msg.created_at
    assert [e.kind for e in on_server.events] == ["accepted"]
    assert await rows_on_server(box.url, "while down") == [msg.id]
    # Once drained, the key lives on the server: a repeat finds the drained message there.
    repeat, created_repeat = await box.spool.accept(
        message("while down", key="k-1"), key_id=None, queue_max=100
    )
    assert (repeat.id, created_repeat) == (msg.id, False)
    claimed = await box.ledger.claim_next("modem-a")
    assert claimed is not None
    assert claimed.id == msg.id


async def test_a_drain_cut_off_before_the_spool_forgot_moves_nothing_twice(box: Box) -> None:
    await box.outage()
    ids = [(await box.spool.accept(message(f"cut {i}"), key_id=None, queue_max=100))[0].id for i in range(3)]
    await box.back()
    # The server committed the move, then the box died before deleting from its spool.
    await box.spool._move(ids)
    assert box.spool.messages == 3
    assert await box.spool.drain() == 3
    for i, msg_id in enumerate(ids):
        assert await rows_on_server(box.url, f"cut {i}") == [msg_id]


async def test_a_key_another_box_used_meanwhile_makes_the_spooled_message_a_canceled_duplicate(
    box: Box,
) -> None:
    await box.outage()
    spooled, _ = await box.spool.accept(message("same request", key="k-2"), key_id=None, queue_max=100)
    await box.back()
    other = Store(box.url)
    await other.open()
    try:
        first, created = await other.accept(message("same request", key="k-2"), key_id=None, queue_max=100)
    finally:
        await other.close()
    assert created
    await box.spool.drain()
    duplicate = await box.ledger.get(spooled.id)
    assert duplicate is not None
    assert duplicate.status.value == "canceled"
    assert duplicate.error_code == DUPLICATE
    assert first.id in (duplicate.error_message or "")
    # The key stays the other box's message: a repeat finds that one.
    repeat, created_repeat = await box.spool.accept(
        message("same request", key="k-2"), key_id=None, queue_max=100
    )
    assert (repeat.id, created_repeat) == (first.id, False)


async def test_a_part_submitted_and_a_report_while_the_server_is_stopped_are_recorded_on_its_return(
    box: Box,
) -> None:
    msg, _ = await box.spool.accept(message("in flight"), key_id=None, queue_max=100)
    claimed = await box.ledger.claim_next("modem-a", mark_first_part=True)
    assert claimed is not None
    assert claimed.id == msg.id
    await box.outage()
    with pytest.raises(LedgerUnreachable):
        await box.ledger.part_submitted(msg.id, 1, 42, "modem-a")
    await box.spool.part_submitted(msg.id, 1, 42, "modem-a", at=claimed.created_at + 1)
    await box.spool.report(42, TO, 0, at=claimed.created_at + 2)
    assert (box.ledger.reachable.is_set(), box.spool.journal) == (False, 2)
    await box.back()
    assert await box.ledger.ping()
    assert (box.ledger.reachable.is_set(), box.spool.journal) == (True, 2)  # sending still paused
    await box.spool.drain()
    assert not box.spool.sending_paused
    done = await box.ledger.get(msg.id)
    assert done is not None
    assert done.status.value == "delivered"
    assert [(p.mr, p.status.value) for p in done.parts] == [(42, "delivered")]


async def test_a_claim_whose_commit_made_it_unseen_goes_back_to_the_queue_and_no_other(box: Box) -> None:
    ours, _ = await box.spool.accept(message("claimed unseen"), key_id=None, queue_max=100)
    sent, _ = await box.spool.accept(message("claimed and sent"), key_id=None, queue_max=100)
    at = time.time() + 0.123456789  # all 17 digits of a double: compared exactly
    claimed = await box.ledger.claim_next("modem-a", now=at, mark_first_part=True)
    assert claimed is not None
    assert claimed.id == ours.id
    other = await box.ledger.claim_next("modem-a", now=at + 1, mark_first_part=True)
    assert other is not None
    assert other.id == sent.id
    await box.ledger.part_submitted(sent.id, 1, 7, "modem-a")
    # Another box's modem of the same name, or another moment: not that claim.
    assert await box.ledger.release_cut_off_claim("modem-a", at + 0.5) == []
    assert await box.ledger.release_cut_off_claim("modem-b", at) == []
    assert await box.ledger.release_cut_off_claim("modem-a", at) == [ours.id]
    back = await box.ledger.get(ours.id)
    assert back is not None
    assert (back.status.value, back.attempts, [p.status.value for p in back.parts]) == (
        "queued",
        0,
        ["pending"],
    )
    assert await box.ledger.release_cut_off_claim("modem-a", at + 1) == []  # its part is with the network


async def test_a_batch_spooled_while_the_server_is_stopped_survives_a_restart_and_is_drained(
    box: Box, tmp_path: Path
) -> None:
    await box.outage()
    outcomes = await box.spool.accept_many(
        [message(f"batch {i}", key=f"b-{i}") for i in range(5)] + [message("batch 0", key="b-0")],
        key_id=None,
        queue_max=100,
    )
    accepted = [o for o in outcomes if isinstance(o, tuple)]
    assert [created for _m, created in accepted] == [True] * 5 + [False]
    assert accepted[5][0].id == accepted[0][0].id  # the repeated key: the same message
    await box.spool.close()
    # The box restarts: the spool it finds is in use until drained.
    again = Spool(str(tmp_path / "spool.sqlite3"), box.ledger)
    await again.open()
    box.spool = again
    assert (again.active, again.messages) == (True, 5)
    await box.back()
    assert await again.drain() == 5
    for i in range(5):
        assert await rows_on_server(box.url, f"batch {i}") == [accepted[i][0].id]
