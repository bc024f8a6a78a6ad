"""Boxes of a fleet sharing one ledger (a SQLite file, a PostgreSQL database: every test runs on both):
leases, claims by box, recovery of one's own, takeover once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from appliance.config import ConfigError, default_box_name, from_dict
from appliance.ledger import Message, NewMessage, Store
from appliance.states import State

LEASE_S = 30.0

OpenBox = Callable[[str | None], Coroutine[Any, Any, Store]]


@pytest.fixture
async def open_box(ledger_url: str) -> AsyncIterator[OpenBox]:
    """Stores on one ledger, each with its own connections: boxes of one fleet (as processes)."""
    stores: list[Store] = []

    async def open_one(box: str | None) -> Store:
        store = Store(ledger_url, box=box, reserve_bytes=1024 * 1024)
        await store.open()
        stores.append(store)
        return store

    yield open_one
    for store in stores:
        await store.close()


async def in_flight(store: Store, to: str = "+4915111111111") -> Message:
    """A message claimed by `store`'s box, its first part handed to the modem (no answer yet)."""
    await store.accept(NewMessage(to=to, body="hi", encoding="gsm7", segments=1), key_id=None, queue_max=100)
    msg = await store.claim_next("modem", mark_first_part=True)
    assert msg is not None
    return msg


def kinds(msg: Message) -> list[str]:
    return [e.kind for e in msg.events]


async def test_a_claim_records_the_box_and_recovery_takes_only_its_own(open_box: OpenBox) -> None:
    a, b = await open_box("a"), await open_box("b")
    for box in (a, b):
        await box.register_box(LEASE_S)
    mine = await in_flight(a, "+4915111111111")
    theirs = await in_flight(b, "+4915122222222")
    assert (mine.box, theirs.box) == ("a", "b")

    assert await a.recover_inflight("resend") == [mine.id]

    still = await b.get(theirs.id)
    assert still is not None
    assert still.status is State.SENDING


async def test_recovery_takes_a_legacy_in_flight_message_without_a_box(open_box: OpenBox) -> None:
    legacy = await open_box(None)
    old = await in_flight(legacy)
    assert old.box is None
    a = await open_box("a")
    assert await a.recover_inflight("resend") == [old.id]


async def test_a_box_whose_lease_ran_out_is_taken_over_and_its_message_resent_once(open_box: OpenBox) -> None:
    a, b = await open_box("a"), await open_box("b")
    t0 = time.time()
    await a.register_box(LEASE_S, now=t0)
    await b.register_box(LEASE_S, now=t0)
    msg = await in_flight(a)

    assert await b.take_over_expired("resend", now=t0 + LEASE_S - 1) == []  # a's lease still holds
    (takeover,) = await b.take_over_expired("resend", now=t0 + LEASE_S + 1)

    assert (takeover.box, takeover.messages) == ("a", (msg.id,))
    after = await b.get(msg.id)
    assert after is not None
    assert after.status is State.QUEUED
    assert after.ambiguous == 1
    (event,) = [e for e in after.events if e.kind == "outcome_unknown"]
    assert "box a stopped" in (event.detail or "")
    assert "box b took over" in (event.detail or "")
    assert await b.take_over_expired("resend", now=t0 + LEASE_S + 2) == []  # once
    (box_a,) = [x for x in await b.boxes() if x.name == "a"]
    assert box_a.taken_over_by == "b"


async def test_under_policy_hold_the_taken_over_message_waits_for_an_operator(open_box: OpenBox) -> None:
    a, b = await open_box("a"), await open_box("b")
    t0 = time.time()
    await a.register_box(LEASE_S, now=t0)
    msg = await in_flight(a)
    await b.take_over_expired("hold", now=t0 + LEASE_S + 1)
    after = await b.get(msg.id)
    assert after is not None
    assert after.held
    assert after.status is State.SENDING
    assert kinds(after).count("outcome_unknown") == 1


async def test_when_two_boxes_race_to_take_over_a_stopped_box_exactly_one_wins(open_box: OpenBox) -> None:
    dead = await open_box("dead")
    t0 = time.time()
    await dead.register_box(LEASE_S, now=t0)
    msgs = [await in_flight(dead, f"+49151111111{i:02d}") for i in range(5)]
    racers = [await open_box(f"box{i}") for i in range(4)]

    results = await asyncio.gather(*(r.take_over_expired("resend", now=t0 + LEASE_S + 1) for r in racers))

    winners = [r.box for r, got in zip(racers, results, strict=True) if got]
    assert len(winners) == 1
    for m in msgs:
        after = await dead.get(m.id)
        assert after is not None
        assert after.status is State.QUEUED
        assert kinds(after).count("outcome_unknown") == 1
    (box,) = [x for x in await dead.boxes() if x.name == "dead"]
    assert box.taken_over_by == winners[0]


async def test_a_paused_box_taken_over_claims_nothing_until_it_registers_again(open_box: OpenBox) -> None:
    a, b = await open_box("a"), await open_box("b")
    t0 = time.time()
    await a.register_box(LEASE_S, now=t0)
    await b.take_over_expired("resend", now=t0 + LEASE_S + 1)

    assert await a.renew_lease(LEASE_S) == "b"
    await a.accept(
        NewMessage(to="+4915111111111", body="x", encoding="gsm7", segments=1), key_id=None, queue_max=9
    )
    assert await a.claim_next("modem") is None  # b's dispatcher takes it meanwhile

    await a.register_box(LEASE_S)
    assert await a.renew_lease(LEASE_S) is None
    claimed = await a.claim_next("modem")
    assert claimed is not None
    assert claimed.box == "a"
    (box_a,) = [x for x in await a.boxes() if x.name == "a"]
    assert box_a.taken_over_by is None


async def test_a_box_that_registers_again_before_anyone_takes_it_over_keeps_its_messages(
    open_box: OpenBox,
) -> None:
    a, b = await open_box("a"), await open_box("b")
    t0 = time.time()
    await a.register_box(LEASE_S, now=t0)
    msg = await in_flight(a)
    await a.register_box(LEASE_S, now=t0 + LEASE_S + 1)  # restarted after its lease ran out
    assert await b.take_over_expired("resend", now=t0 + LEASE_S + 2) == []
    assert await a.recover_inflight("resend") == [msg.id]


def test_fleet_config_defaults_and_errors_name_the_key() -> None:
    config = from_dict({})
    assert config.fleet.box == default_box_name()
    assert config.fleet.lease_s == 30
    assert from_dict({"fleet": {"box": "gw-2.rack_a", "lease_s": 1}}).fleet.box == "gw-2.rack_a"
    for bad in ("", "two words", "x" * 64, "<b>"):
        with pytest.raises(ConfigError, match=r"^fleet\.box: "):
            from_dict({"fleet": {"box": bad}})
    for lease in (0, 3601):
        with pytest.raises(ConfigError, match=r"^fleet\.lease_s: "):
            from_dict({"fleet": {"lease_s": lease}})


async def test_a_box_that_never_registered_holds_a_lease_from_its_first_renewal(open_box: OpenBox) -> None:
    a = await open_box("a")
    assert await a.renew_lease(LEASE_S) is None
    (box,) = await a.boxes()
    assert box.name == "a"
    assert box.lease_until > time.time()


async def test_a_report_matches_a_part_this_boxs_modem_sent_not_a_peers_with_the_same_mr(
    open_box: OpenBox,
) -> None:
    a, b = await open_box("a"), await open_box("b")
    mine = await in_flight(a, "+4915111111111")
    theirs = await in_flight(b, "+4915111111111")  # same recipient; each modem counts its own MRs
    await a.part_submitted(mine.id, 1, 7, "modem")
    await b.part_submitted(theirs.id, 1, 7, "modem")  # later: a box-blind match would take this one

    outcome = await a.apply_report(7, "+4915111111111", 0x00)

    assert outcome.message_id == mine.id
    delivered, still_sent = await a.get(mine.id), await a.get(theirs.id)
    assert delivered is not None
    assert delivered.status is State.DELIVERED
    assert still_sent is not None
    assert still_sent.status is State.SENT


async def test_an_early_report_waits_for_the_part_of_the_box_that_received_it(open_box: OpenBox) -> None:
    a, b = await open_box("a"), await open_box("b")
    mine = await in_flight(a, "+4915111111111")
    theirs = await in_flight(b, "+4915111111111")
    assert not (await a.apply_report(9, "+4915111111111", 0x00)).matched  # before a recorded +CMGS

    after_b = await b.part_submitted(theirs.id, 1, 9, "modem")
    after_a = await a.part_submitted(mine.id, 1, 9, "modem")

    assert after_b.status is State.SENT  # a's report is not b's
    assert after_a.status is State.DELIVERED


async def test_a_second_start_with_a_box_name_in_use_is_refused_and_names_the_holder(
    open_box: OpenBox,
) -> None:
    """Two boxes given the same [fleet] box: the second start does not take the name (it would renew
    the first's lease and recover its messages); the name's row says which start holds it."""
    first, second = await open_box("a"), await open_box("a")
    t0 = time.time()
    assert await first.register_box(LEASE_S, now=t0) is None
    msg = await in_flight(first)

    holder = await second.register_box(LEASE_S, now=t0 + 1)

    assert holder is not None
    assert (holder.name, holder.instance, holder.lease_until) == ("a", first.instance, t0 + LEASE_S)
    assert second.instance != first.instance
    assert await first.renew_lease(LEASE_S, now=t0 + 2) is None  # the first start holds on
    # A refused start that renews anyway learns that the name is not its own, and claims nothing.
    assert await second.renew_lease(LEASE_S, now=t0 + 3) == f"a (another start, instance {first.instance})"
    assert await first.renew_lease(LEASE_S, now=t0 + 4) is None
    queued, _ = await first.accept(
        NewMessage(to="+4915133333333", body="next", encoding="gsm7", segments=1), key_id=None, queue_max=100
    )
    assert await second.claim_next("modem") is None
    claimed = await first.claim_next("modem")
    assert claimed is not None
    assert claimed.id == queued.id
    still = await first.get(msg.id)
    assert still is not None
    assert still.status is State.SENDING  # nobody recovered the first start's message


async def test_the_name_is_taken_after_a_clean_stop_after_the_lease_ran_out_or_by_the_crashed_start_named(
    open_box: OpenBox,
) -> None:
    t0 = time.time()
    stopped, after_stop = await open_box("a"), await open_box("a")
    await stopped.register_box(LEASE_S, now=t0)
    await stopped.release_box()
    assert await after_stop.register_box(LEASE_S, now=t0 + 1) is None  # at once after a clean stop

    crashed, much_later, restarted = await open_box("b"), await open_box("b"), await open_box("b")
    await crashed.register_box(LEASE_S, now=t0)
    assert await much_later.register_box(LEASE_S, now=t0 + LEASE_S + 1) is None  # its lease ran out
    # The box's own next start knows its crashed predecessor (the token it left in its directory).
    assert await restarted.register_box(LEASE_S, now=t0 + LEASE_S + 2, previous=much_later.instance) is None
    assert [(b.name, b.instance) for b in await restarted.boxes()] == [
        ("a", after_stop.instance),
        ("b", restarted.instance),
    ]
    assert await much_later.renew_lease(LEASE_S, now=t0 + LEASE_S + 3) is not None
