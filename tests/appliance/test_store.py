"""The ledger: a stateful model check, then the report, inbound and idempotency paths one by one."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from appliance.config import InboundConfig
from appliance.keywords import keyword_of
from appliance.ledger import (
    Conflict,
    IdempotencyMismatch,
    Message,
    NewMessage,
    OptedOut,
    QueueFull,
    Store,
    webhook_target,
)
from appliance.ledger.dialect import split_sql
from appliance.ledger.migrations import MIGRATIONS
from appliance.states import FINAL, TRANSITIONS, PartState, Priority, State
from modem.pdu import segment_text
from tests.support.postgres import shared_server
from tests.support.user_data import join_units, units

RECIPIENTS = ("+4915111111111", "+4915122222222", "+447700900123")
MAX_ATTEMPTS = 3
DELIVERED, TRYING, PERMANENT = 0x00, 0x20, 0x41


def new_message(to: str = RECIPIENTS[0], body: str = "hello", **kw: Any) -> NewMessage:
    seg = segment_text(body)
    return NewMessage(to=to, body=body, encoding=seg.encoding.value, segments=len(seg.parts), **kw)


def keyword(text: str) -> str | None:
    inbound = InboundConfig()
    return keyword_of(text, inbound.stop_keywords, inbound.start_keywords)


def national(number: str) -> str:
    """How a network may write the recipient in a status report: national format."""
    return "0" + number[3:] if number.startswith("+49") else number.lstrip("+")


# ------------------------------------------------------------ the model check
@dataclass
class ModelMessage:
    to: str
    status: State
    parts: list[PartState]
    mrs: list[int | None]
    attempts: int = 0
    held: bool = False
    expires_at: float = 0.0
    not_before: float = 0.0
    final_seen: State | None = None
    events: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class LedgerMachine(RuleBasedStateMachine):
    """The Store against a dict model; "crash" closes and reopens the same file."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="smsgw-ledger-"))
        self.store = Store(self.dir / "ledger.sqlite3")
        self.model: dict[str, ModelMessage] = {}
        self.next_mr = 250  # crosses the 255 -> 0 wrap within a run

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @initialize()
    def open_store(self) -> None:
        self.run(self.store.open())

    # ------------------------------------------------------------- helpers
    def _in(self, *states: State, held: bool | None = False) -> list[str]:
        return sorted(
            i for i, m in self.model.items() if m.status in states and (held is None or m.held == held)
        )

    def _pick(self, ids: list[str], pick: int) -> str:
        return ids[pick % len(ids)]

    # --------------------------------------------------------------- rules
    @rule(
        to=st.sampled_from(RECIPIENTS),
        long=st.booleans(),
        scheduled=st.booleans(),
        short_validity=st.booleans(),
    )
    def accept(self, to: str, long: bool, scheduled: bool, short_validity: bool) -> None:
        body = "x" * 200 if long else "hi"
        now = time.time()
        new = new_message(
            to,
            body,
            send_at=now + 3600 if scheduled else None,
            validity_s=60 if short_validity else 86400,
        )
        msg, created = self.run(self.store.accept(new, key_id=1, queue_max=10_000))
        assert created
        assert msg.status is (State.SCHEDULED if scheduled else State.QUEUED)
        self.model[msg.id] = ModelMessage(
            to=to,
            status=msg.status,
            parts=[PartState.PENDING] * msg.segments,
            mrs=[None] * msg.segments,
            expires_at=msg.expires_at,
            not_before=msg.not_before,
        )

    @rule()
    def claim_next(self) -> None:
        now = time.time()
        msg = self.run(self.store.claim_next("gsm0", now=now))
        due = [i for i in self._in(State.QUEUED) if self.model[i].not_before <= now]
        if msg is None:
            assert not due, f"queued messages {due} were not claimed"
            return
        assert msg.id in due
        m = self.model[msg.id]
        m.status = State.SENDING
        m.attempts += 1
        assert msg.attempts == m.attempts

    @precondition(lambda self: self._in(State.QUEUED))
    @rule()
    def dispatch(self) -> None:
        """The dispatcher's happy path in one step: claim, then submit every part."""
        self.claim_next()
        for msg_id in self._in(State.SENDING):
            while (
                self.model[msg_id].status is State.SENDING and PartState.PENDING in self.model[msg_id].parts
            ):
                if PartState.SENDING in self.model[msg_id].parts:
                    break
                self.submit_next_part(sorted(self._in(State.SENDING)).index(msg_id), leave_in_flight=False)

    @precondition(lambda self: self._in(State.QUEUED))
    @rule(policy=st.sampled_from(["resend", "hold"]))
    def crash_mid_send(self, policy: str) -> None:
        """Power cut between the `sending` commit and +CMGS, then the start-up recovery."""
        self.claim_next()
        for msg_id in self._in(State.SENDING):
            if PartState.SENDING not in self.model[msg_id].parts:
                self.submit_next_part(self._in(State.SENDING).index(msg_id), leave_in_flight=True)
        self.crash()
        self.recover_inflight(policy)

    @precondition(lambda self: self._in(State.SENT))
    @rule(pick=st.integers(0, 1000), status=st.sampled_from([DELIVERED, PERMANENT]))
    def report_every_part(self, pick: int, status: int) -> None:
        msg_id = self._pick(self._in(State.SENT), pick)
        targets = sorted(
            (i, seq) for i, m in self.model.items() for seq, mr in enumerate(m.mrs, 1) if mr is not None
        )
        for seq in range(1, len(self.model[msg_id].parts) + 1):
            self.apply_report(targets.index((msg_id, seq)), status, nat=seq % 2 == 0)

    @precondition(lambda self: self._in(State.SENDING))
    @rule(pick=st.integers(0, 1000), leave_in_flight=st.booleans())
    def submit_next_part(self, pick: int, leave_in_flight: bool) -> None:
        """The dispatcher's two commits around AT+CMGS; optionally "crash" between them."""
        msg_id = self._pick(self._in(State.SENDING), pick)
        m = self.model[msg_id]
        if PartState.SENDING in m.parts:
            return  # a part is in flight: only a crash (recover_inflight) resolves it
        seq = m.parts.index(PartState.PENDING) + 1 if PartState.PENDING in m.parts else None
        if seq is None:
            return
        self.run(self.store.part_sending(msg_id, seq))
        m.parts[seq - 1] = PartState.SENDING
        if leave_in_flight:
            return
        mr = self.next_mr % 256
        self.next_mr += 1
        msg = self.run(self.store.part_submitted(msg_id, seq, mr, "gsm0"))
        m.parts[seq - 1] = PartState.SENT
        m.mrs[seq - 1] = mr
        if all(p not in (PartState.PENDING, PartState.SENDING) for p in m.parts):
            m.status = State.SENT
        assert msg.status is m.status

    @precondition(lambda self: self._in(State.SENDING))
    @rule(pick=st.integers(0, 1000), transient=st.booleans())
    def send_failed(self, pick: int, transient: bool) -> None:
        msg_id = self._pick(self._in(State.SENDING), pick)
        m = self.model[msg_id]
        msg = self.run(
            self.store.send_failed(
                msg_id,
                code="cms_38" if transient else "cms_1",
                message="network out of order" if transient else "unassigned number",
                retry_at=time.time() if transient else None,
                max_attempts=MAX_ATTEMPTS,
            )
        )
        m.parts = [PartState.PENDING if p is PartState.SENDING else p for p in m.parts]
        m.status = State.QUEUED if transient and m.attempts < MAX_ATTEMPTS else State.FAILED
        if m.status is State.QUEUED:
            m.not_before = msg.not_before
        assert msg.status is m.status

    @precondition(lambda self: any(mr is not None for m in self.model.values() for mr in m.mrs))
    @rule(
        pick=st.integers(0, 1000), status=st.sampled_from([DELIVERED, TRYING, PERMANENT]), nat=st.booleans()
    )
    def apply_report(self, pick: int, status: int, nat: bool) -> None:
        targets = sorted(
            (i, seq) for i, m in self.model.items() for seq, mr in enumerate(m.mrs, 1) if mr is not None
        )
        msg_id, seq = targets[pick % len(targets)]
        m = self.model[msg_id]
        recipient = national(m.to) if nat else m.to
        mr = m.mrs[seq - 1]
        assert mr is not None
        outcome = self.run(self.store.apply_report(mr, recipient, status))
        assert outcome.matched
        assert outcome.message_id == msg_id
        part = m.parts[seq - 1]
        if part in (PartState.DELIVERED, PartState.UNDELIVERED) or status == TRYING:
            assert not outcome.changed
            return
        m.parts[seq - 1] = PartState.DELIVERED if status == DELIVERED else PartState.UNDELIVERED
        if m.status is State.SENT:
            if PartState.UNDELIVERED in m.parts:
                m.status = State.UNDELIVERED
            elif all(p is PartState.DELIVERED for p in m.parts):
                m.status = State.DELIVERED

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 1000))
    def cancel(self, pick: int) -> None:
        msg_id = self._pick(sorted(self.model), pick)
        m = self.model[msg_id]
        if m.status in (State.QUEUED, State.SCHEDULED, State.CANCELED):
            msg = self.run(self.store.cancel(msg_id))
            m.status = State.CANCELED
            assert msg.status is State.CANCELED
        else:
            with pytest.raises(Conflict):
                self.run(self.store.cancel(msg_id))

    @rule()
    def promote_and_expire(self) -> None:
        later = time.time() + 7200  # past every send_at (now + 1 h) and every 60 s validity
        self.run(self.store.promote_and_expire(later))
        for m in self.model.values():
            if m.status is State.SCHEDULED and m.not_before <= later:
                m.status = State.QUEUED
            if m.status in (State.QUEUED, State.SCHEDULED) and m.expires_at <= later:
                m.status = State.FAILED

    @rule(policy=st.sampled_from(["resend", "hold"]))
    def recover_inflight(self, policy: str) -> None:
        recovered = self.run(self.store.recover_inflight(policy))
        assert sorted(recovered) == self._in(State.SENDING)
        for msg_id in recovered:
            m = self.model[msg_id]
            if policy == "hold" and PartState.SENDING in m.parts:
                m.held = True
            else:
                m.parts = [PartState.PENDING if p is PartState.SENDING else p for p in m.parts]
                m.status = State.QUEUED

    @precondition(lambda self: self._in(State.SENDING, held=True))
    @rule(pick=st.integers(0, 1000), resend=st.booleans())
    def resolve_held(self, pick: int, resend: bool) -> None:
        msg_id = self._pick(self._in(State.SENDING, held=True), pick)
        m = self.model[msg_id]
        msg = self.run(self.store.resolve_held(msg_id, "resend" if resend else "cancel"))
        m.held = False
        if resend:
            m.parts = [PartState.PENDING if p is PartState.SENDING else p for p in m.parts]
            m.status = State.QUEUED
        else:
            m.status = State.FAILED
        assert msg.status is m.status

    @rule()
    def crash(self) -> None:
        """Power cut: the connection goes away without ceremony; a new process opens the file."""
        self.run(self.store.close())
        self.store = Store(self.store.path)
        self.run(self.store.open())

    # ---------------------------------------------------------- invariants
    def _ledger(self) -> dict[str, Message]:
        rows = self.run(self.store.list_messages(limit=10_000))
        out: dict[str, Message] = {}
        for row in rows:
            full = self.run(self.store.get(row.id))
            assert full is not None
            out[row.id] = full
        return out

    @invariant()
    def ledger_matches_model(self) -> None:
        if self.store._db is None:
            return
        ledger = self._ledger()
        assert set(ledger) == set(self.model), "a message was lost or invented"
        for msg_id, msg in ledger.items():
            m = self.model[msg_id]
            assert msg.status is m.status, f"{msg_id}: ledger {msg.status}, model {m.status}"
            assert msg.held == m.held
            assert [p.status for p in msg.parts] == m.parts
            # The event chain: contiguous, every step in TRANSITIONS, nothing after a final state.
            previous: State | None = None
            for event in msg.events:
                if event.to_status is None:
                    continue
                old = None if event.from_status is None else State(event.from_status)
                new = State(event.to_status)
                assert old == previous, f"{msg_id}: event from {old} but the message was {previous}"
                assert old is None or new in TRANSITIONS[old], f"{msg_id}: illegal {old} -> {new}"
                assert old not in FINAL
                previous = new
            assert previous is msg.status
            if m.final_seen is not None:
                assert msg.status is m.final_seen, f"{msg_id}: final {m.final_seen} changed to {msg.status}"
            if msg.status in FINAL:
                m.final_seen = msg.status
            assert len(msg.events) >= m.events, f"{msg_id}: events were lost"
            m.events = len(msg.events)


LedgerMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerModel = pytest.mark.slow(LedgerMachine.TestCase)


class PgLedgerMachine(LedgerMachine):
    """The same model check on PostgreSQL: "crash" drops both connections and a new Store connects."""

    def __init__(self) -> None:
        super().__init__()
        self.store = Store(self.run(shared_server().fresh_database()))


PgLedgerMachine.TestCase.settings = settings(
    max_examples=25,  # each example is a new database on the server
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Its examples take ~1 s each on a loaded 2-core box (a database each, a reopen per crash).
TestPgLedgerModel = pytest.mark.timeout(300)(pytest.mark.slow(PgLedgerMachine.TestCase))


# ---------------------------------------------------------------- plain tests
@pytest.fixture
async def sent_message(store: Store) -> Any:
    async def make(to: str, mr: int, body: str = "hello") -> Message:
        msg, _ = await store.accept(new_message(to, body), key_id=1, queue_max=100)
        claimed = await store.claim_next("gsm0")
        assert claimed is not None
        assert claimed.id == msg.id
        for seq in range(1, msg.segments + 1):
            await store.part_sending(msg.id, seq)
            await store.part_submitted(msg.id, seq, (mr + seq - 1) % 256, "gsm0")
        got = await store.get(msg.id)
        assert got is not None
        assert got.status is State.SENT
        return got

    return make


async def test_reports_match_across_the_mr_wrap_and_in_national_format(
    store: Store, sent_message: Any
) -> None:
    to = "+4915112345678"
    first = await sent_message(to, 255)
    second = await sent_message(to, 0)
    outcome = await store.apply_report(0, "015112345678", DELIVERED)
    assert (outcome.matched, outcome.message_id) == (True, second.id)
    outcome = await store.apply_report(255, "4915112345678", PERMANENT)
    assert (outcome.matched, outcome.message_id) == (True, first.id)
    a, b = await store.get(first.id), await store.get(second.id)
    assert a is not None
    assert b is not None
    assert (a.status, b.status) == (State.UNDELIVERED, State.DELIVERED)
    assert a.error_code == "tp_status_41"


async def test_multipart_message_is_delivered_when_every_part_is(store: Store, sent_message: Any) -> None:
    msg = await sent_message("+4915112345678", 255, body="y" * 300)
    assert msg.segments == 2
    assert [p.mr for p in msg.parts] == [255, 0]
    await store.apply_report(255, msg.to, DELIVERED)
    await store.apply_report(0, msg.to, TRYING)
    mid = await store.get(msg.id)
    assert mid is not None
    assert mid.status is State.SENT
    await store.apply_report(0, msg.to, DELIVERED)
    dup = await store.apply_report(0, msg.to, PERMANENT)
    assert (dup.matched, dup.changed) == (True, False)
    done = await store.get(msg.id)
    assert done is not None
    assert done.status is State.DELIVERED
    assert [e.kind for e in done.events].count("report_ignored") == 1


async def test_report_before_cmgs_is_kept_and_matched_when_the_part_is_recorded(store: Store) -> None:
    msg, _ = await store.accept(new_message("+4915112345678"), key_id=1, queue_max=100)
    assert await store.claim_next("gsm0") is not None
    await store.part_sending(msg.id, 1)
    early = await store.apply_report(17, "+4915112345678", DELIVERED)
    assert not early.matched
    await store.part_submitted(msg.id, 1, 17, "gsm0")
    done = await store.get(msg.id)
    assert done is not None
    assert done.status is State.DELIVERED
    assert [e.kind for e in done.events][-3:] == ["sent", "report", "delivered"]


async def test_report_timeout_keeps_sent_but_marks_delivery_unconfirmed(
    store: Store, sent_message: Any
) -> None:
    msg = await sent_message("+4915112345678", 3)
    assert await store.expire_reports(3600, now=time.time() + 60) == 0
    assert await store.expire_reports(3600, now=time.time() + 3601) == 1
    later = await store.get(msg.id)
    assert later is not None
    assert (later.status, later.report_expired) == (State.SENT, True)
    assert later.events[-1].kind == "report_timeout"
    assert "status report lost" in (later.events[-1].detail or "")
    assert await store.expire_reports(3600, now=time.time() + 7200) == 0
    assert (await store.stats()).reports_lost_total == 1  # counted once, for /metrics


async def test_quarantine_keeps_each_slot_once_and_pages_newest_first(store: Store) -> None:
    first = await store.quarantine(
        port="/dev/gsmmodem", memory="SR", index=3, pdu="0006D6", reason="truncated"
    )
    # Read again after a crash before AT+CMGD: the same slot and PDU is the same row.
    again = await store.quarantine(
        port="/dev/gsmmodem", memory="SR", index=3, pdu="0006D6", reason="truncated"
    )
    assert again.id == first.id
    routed = await store.quarantine(port="/dev/gsmmodem", memory="", index=None, pdu="0006D7", reason="short")
    assert [q.id for q in await store.list_quarantine()] == [routed.id, first.id]
    assert [q.id for q in await store.list_quarantine(limit=1, before_seq=routed.seq)] == [first.id]
    assert routed.index is None
    assert (await store.stats()).quarantined_total == 2


async def test_inbound_parts_out_of_order_are_reassembled_once(store: Store) -> None:
    # A surrogate pair split across parts 1 and 2, as senders do: join the units, then decode.
    text = "Grüße 😀 aus Köln"
    raw = units(text, "ucs2")
    cut = raw.index(bytes.fromhex("de00"))
    pieces = [raw[:cut], raw[cut:20], raw[20:]]
    common: dict[str, Any] = {
        "sender": "+4915112345678",
        "encoding": "ucs2",
        "ref": 77,
        "total": 3,
        "sent_at": None,
        "join": join_units,
        "keyword_of": keyword,
    }
    assert await store.add_inbound_part(user_data=pieces[2], seq=3, **common) is None
    assert await store.add_inbound_part(user_data=pieces[1], seq=2, **common) is None
    assert await store.add_inbound_part(user_data=pieces[1], seq=2, **common) is None  # duplicate part
    whole = await store.add_inbound_part(user_data=pieces[0], seq=1, **common)
    assert whole is not None
    assert (whole.body, whole.parts, whole.complete, whole.keyword) == (text, 3, True, None)
    assert [i.id for i in await store.list_inbound()] == [whole.id]


async def test_stop_and_start_change_the_opt_out_list(store: Store) -> None:
    sender = "+4915112345678"

    async def receive(text: str) -> None:
        await store.add_inbound_part(
            sender=sender, encoding="gsm7", user_data=units(text), ref=None, total=1, seq=1,
            sent_at=None, join=join_units, keyword_of=keyword,
        )  # fmt: skip

    await receive("Stop.")
    assert await store.is_opted_out(sender)
    with pytest.raises(OptedOut):
        await store.accept(new_message(sender), key_id=1, queue_max=100)
    await receive("please stop sending")  # not a keyword: a sentence
    assert await store.is_opted_out(sender)
    await receive("start")
    assert not await store.is_opted_out(sender)
    _, created = await store.accept(new_message(sender), key_id=1, queue_max=100)
    assert created
    assert [i.keyword for i in await store.list_inbound()] == ["start", None, "stop"]


async def test_stale_multipart_is_flushed_with_what_arrived(store: Store) -> None:
    common: dict[str, Any] = {
        "sender": "+4915112345678",
        "encoding": "gsm7",
        "ref": 5,
        "total": 3,
        "sent_at": None,
        "join": join_units,
        "keyword_of": keyword,
    }
    await store.add_inbound_part(user_data=units("first "), seq=1, **common)
    await store.add_inbound_part(user_data=units("third"), seq=3, **common)
    assert await store.flush_stale_inbound(3600, join=join_units, keyword_of=keyword) == []
    flushed = await store.flush_stale_inbound(
        3600, join=join_units, keyword_of=keyword, now=time.time() + 3601
    )
    assert len(flushed) == 1
    got = flushed[0]
    assert (got.complete, got.parts, got.parts_expected) == (False, 2, 3)
    assert got.body is not None
    assert "first" in got.body
    assert "third" in got.body
    assert (
        await store.flush_stale_inbound(0, join=join_units, keyword_of=keyword, now=time.time() + 9999) == []
    )


async def test_idempotency_returns_the_first_and_refuses_a_changed_request(store: Store) -> None:
    first, created = await store.accept(new_message(idempotency_key="k"), key_id=1, queue_max=100)
    again, created_again = await store.accept(new_message(idempotency_key="k"), key_id=1, queue_max=100)
    assert (created, created_again, again.id) == (True, False, first.id)
    with pytest.raises(IdempotencyMismatch):
        await store.accept(new_message(body="changed", idempotency_key="k"), key_id=1, queue_max=100)
    other, created_other = await store.accept(new_message(idempotency_key="k"), key_id=2, queue_max=100)
    assert created_other
    assert other.id != first.id
    assert len(await store.list_messages()) == 2


async def test_queue_full_refuses_once_the_maximum_waits(store: Store) -> None:
    for i in range(3):
        await store.accept(new_message(body=f"m{i}"), key_id=1, queue_max=3)
    with pytest.raises(QueueFull):
        await store.accept(new_message(body="m3"), key_id=1, queue_max=3)
    first = (await store.list_messages())[-1]
    await store.cancel(first.id)
    _, created = await store.accept(new_message(body="m3"), key_id=1, queue_max=3)
    assert created


async def test_the_queue_cap_counts_waiting_messages_not_the_seqs_between_them(store: Store) -> None:
    """The oldest message waits while the ones after it are canceled: 1 waits, over a span of 3."""
    for i in range(3):
        await store.accept(new_message(body=f"m{i}"), key_id=1, queue_max=3)
    *later, _oldest = await store.list_messages()
    for msg in later:
        await store.cancel(msg.id)
    outcomes = await store.accept_many([new_message(body=f"b{i}") for i in range(3)], key_id=1, queue_max=3)
    assert [type(o).__name__ for o in outcomes] == ["tuple", "tuple", "QueueFull"]
    assert str(outcomes[2]) == "3 messages are waiting"


async def test_durability_pragmas_are_set(tmp_path: Path) -> None:
    """SQLite's own settings (PostgreSQL's durability is its server's)."""
    store = Store(tmp_path / "ledger.sqlite3")
    await store.open()
    cur = await store.db.execute("PRAGMA journal_mode")
    row = await cur.fetchone()
    assert row is not None
    assert row[0] == "wal"
    cur = await store.db.execute("PRAGMA synchronous")
    row = await cur.fetchone()
    assert row is not None
    assert row[0] == 2  # FULL: the WAL is synced on every commit
    await store.close()


async def test_a_reopened_ledger_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    first = Store(path)
    await first.open()
    msg, _ = await first.accept(new_message(metadata={"k": 1}), key_id=1, queue_max=100)
    _, key = await first.create_key("app", ["send"])
    await first.close()
    second = Store(path)
    await second.open()
    try:
        again = await second.get(msg.id)
        assert again is not None
        assert (again.status, again.metadata, len(again.events)) == (State.QUEUED, {"k": 1}, 1)
        assert await second.verify_key(key) is not None
    finally:
        await second.close()


async def test_webhooks_waiting_in_an_older_ledger_join_their_receivers_queue(tmp_path: Path) -> None:
    """A schema-2 ledger with webhooks pending to one receiver under two paths: after the upgrade
    they wait in the receiver's one queue (scheme://host:port), as webhooks queued from then on do."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:2]:
        for statement in split_sql(script):
            db.execute(statement)
    db.execute("PRAGMA user_version=2")
    urls = ["https://Hooks.Example.com/sms?a=1", "https://hooks.example.com:443/other"]
    for i, url in enumerate(urls):
        db.execute(
            "INSERT INTO webhook_outbox (webhook_id, url, secret, type, payload, created_at, next_attempt_at) "
            "VALUES (?, ?, '', 'message.sent', '{}', 0, 0)",
            (f"wh_{i}", url),
        )
    db.close()
    store = Store(str(path), webhooks=[])
    await store.open()
    try:
        due = await store.due_webhooks(time.time())
        targets = await store.due_webhook_targets(time.time())
    finally:
        await store.close()
    assert [item.target for item in due] == [webhook_target(url) for url in urls]
    assert targets == ["https://hooks.example.com:443"]


async def test_accepted_messages_are_returned_as_a_read_back_finds_them(store: Store) -> None:
    """accept/accept_many build the records they return instead of reading them back: the same."""
    later = time.time() + 3600
    news = [
        new_message(),
        new_message(RECIPIENTS[1], "✓" * 100, metadata={"ticket": 7}, status_callback="http://app.lan/cb"),
        new_message(
            body="scheduled", send_at=later, idempotency_key="k1", template_name="t", template_version=2
        ),
    ]
    outcomes = await store.accept_many(news, key_id=1, queue_max=100)
    single, created = await store.accept(new_message(body="alone"), key_id=1, queue_max=100)
    assert created
    returned = [o[0] for o in outcomes if isinstance(o, tuple)] + [single]
    assert len(returned) == 4
    assert [m.segments for m in returned] == [1, 2, 1, 1]
    for msg in returned:
        assert msg == await store.get(msg.id)


@pytest.mark.parametrize("first", list(Priority))
async def test_next_due_is_the_earliest_waiting_message_of_any_priority(
    store: Store, first: Priority
) -> None:
    """The dispatcher sleeps until this time when it finds nothing to claim: a later answer would
    hold a due message back, an earlier one wakes it for nothing."""
    now = time.time()
    assert await store.next_due() is None
    await store.accept(new_message(RECIPIENTS[0], "later", send_at=now + 7200), key_id=1, queue_max=100)
    assert await store.next_due() == pytest.approx(now + 7200, abs=0.5)
    for i, priority in enumerate(Priority):  # each queued and held back, `first` the soonest due
        msg, _ = await store.accept(
            new_message(RECIPIENTS[1], f"p{i}", priority=priority), key_id=1, queue_max=100
        )
        await store.delay(msg.id, now + (60 if priority is first else 600 + i), "anti-flood")
    assert await store.next_due() == pytest.approx(now + 60, abs=0.5)
    await store.accept(new_message(RECIPIENTS[2], "soonest", send_at=now + 30), key_id=1, queue_max=100)
    assert await store.next_due() == pytest.approx(now + 30, abs=0.5)  # a scheduled one sooner still


async def test_a_full_batch_is_returned_as_a_read_back_finds_it(store: Store) -> None:
    """1,000 rows go in by chunks of many VALUES (dialect.insert_rows): every record returned, its
    seq included, is the row stored, also where repeated keys leave gaps in what is inserted."""
    news: list[NewMessage] = []
    for i in range(1000):
        if i % 97 == 1:
            news.append(news[-1])  # the same request again (its key too): not inserted twice
        else:
            news.append(
                new_message(f"+4915{i:09d}", f"m{i}" + "✓" * 80 * (i % 5 == 0), idempotency_key=f"k{i}")
            )
    outcomes = await store.accept_many(news, key_id=1, queue_max=10_000)
    returned = [o for o in outcomes if isinstance(o, tuple)]
    assert len(returned) == 1000
    created = [m for m, new in returned if new]
    assert len(created) == 1000 - len(range(1, 1000, 97))
    assert sorted(m.seq for m in created) == [m.seq for m in created]  # in the batch's order
    for msg in created:
        assert msg == await store.get(msg.id)
    for (msg, _created), asked in zip(returned, news, strict=True):
        assert msg.body == asked.body  # a repeat answers with its first one's message


async def test_the_dispatchers_wake_queries_read_no_scheduled_row_they_do_not_need(file_store: Store) -> None:
    """The dispatcher asks next_due on every wake (each accept wakes it) and promotes what is due
    on every tick: with 3,000 messages scheduled for tomorrow, each is a few index seeks, fewer
    SQLite steps than there are scheduled messages. Left to its planner, SQLite walked every
    scheduled row by the status index: 7 ms a wake at 25,000 (bench batch, the daemon's CPU)."""
    now = time.time()
    tomorrow = [new_message(f"+4915{i:09d}", "tomorrow", send_at=now + 86400) for i in range(3000)]
    await file_store.accept_many(tomorrow, key_id=1, queue_max=10_000)
    steps = [0]

    def count() -> int:
        steps[0] += 100
        return 0  # go on

    for connection in (file_store.db, file_store.rdb):
        await connection.set_progress_handler(count, 100)
    assert await file_store.next_due() == pytest.approx(now + 86400, abs=1)
    assert await file_store.promote_and_expire(now) == 0
    assert steps[0] < 3000
