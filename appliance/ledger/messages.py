"""Outbound messages: accepting them (group commit, idempotency, quotas), reading and cancelling them."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from appliance.ledger.dialect import (
    KEY_RACE_RETRIES,
    fetch_all,
    fetch_one,
    insert_rows,
    inserted_seqs,
    is_key_race,
    marks,
    notify_queued,
    page_query,
)
from appliance.ledger.errors import (
    Conflict,
    IdempotencyMismatch,
    NotFound,
    OptedOut,
    QueueFull,
    QuotaExceeded,
    StoreError,
)
from appliance.ledger.escalations import Escalations
from appliance.ledger.keys import AUDIT_INSERT, audit_values, insert_audit
from appliance.ledger.models import (
    Actor,
    Escalation,
    Event,
    Message,
    NewMessage,
    Part,
    Quota,
    new_ids,
    whole_message,
)
from appliance.ledger.payloads import status_payload
from appliance.ledger.timeline import WHOLE_MESSAGE
from appliance.states import PartState, State

# Accepts committed together at most (group commit); bounds the latency one slow batch adds.
ACCEPT_BATCH_MAX = 256
# Items of a group checked between two turns of the event loop (~1 ms of work at most).
_YIELD_EVERY = 50
# Values bound in one IN (...) list: far below SQLite's 32,766 and PostgreSQL's 65,535.
_IN_CHUNK = 500


def _chunks(values: Sequence[str]) -> list[Sequence[str]]:
    return [values[i : i + _IN_CHUNK] for i in range(0, len(values), _IN_CHUNK)]


@dataclass(frozen=True)
class _Accept:
    """One accept waiting for the next group commit."""

    new: NewMessage
    key_id: int | None
    queue_max: int
    quota: Quota | None
    actor: Actor | None
    future: asyncio.Future[tuple[Message, bool]] | None = None  # None: part of a batch (accept_many)


@dataclass
class _AcceptQueue:
    """Accepts waiting for the next group commit, and the task that commits them."""

    waiting: list[_Accept] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    usage_pruned_hour: int = 0


@dataclass
class _BatchExtras:
    """Key usage and audit rows of one group commit, written in one trip each at its end:
    per accept they would add two trips to the database thread (~35% fewer accepts/s)."""

    loaded: dict[int, dict[int, int]] = field(default_factory=dict)  # key -> hour -> messages
    added: dict[tuple[int, int], int] = field(default_factory=dict)  # (key, hour) -> accepted now
    audits: list[tuple[Any, ...]] = field(default_factory=list)
    # A batch (accept_many) is one send in the audit trail: its accepted ids, one row at the end.
    batch: list[str] | None = None
    batch_actor: Actor | None = None
    batch_sources: dict[str, int] = field(default_factory=dict)

    async def usage(self, db: aiosqlite.Connection, key_id: int, hour: int) -> list[tuple[int, int]]:
        """(hour, messages) of the key's last 24 hours, this batch included, oldest first."""
        if key_id not in self.loaded:
            rows = await fetch_all(
                db, "SELECT hour, n FROM key_usage WHERE key_id = ? AND hour > ?", (key_id, hour - 24)
            )
            self.loaded[key_id] = {int(r["hour"]): int(r["n"]) for r in rows}
        buckets = dict(self.loaded[key_id])
        for (k, h), n in self.added.items():
            if k == key_id:
                buckets[h] = buckets.get(h, 0) + n
        return sorted((h, n) for h, n in buckets.items() if h > hour - 24)

    def accepted(
        self, key_id: int | None, hour: int, actor: Actor | None, msg_id: str, new: NewMessage, now: float
    ) -> None:
        if key_id is not None:
            self.added[key_id, hour] = self.added.get((key_id, hour), 0) + 1
        if actor is not None and self.batch is not None:
            self.batch.append(msg_id)
            self.batch_actor = actor
            self.batch_sources[new.source] = self.batch_sources.get(new.source, 0) + 1
        elif actor is not None:
            action = "test_sms" if new.source == "page" else "send"
            detail = f"via {new.source}, priority {new.priority.name.lower()}"
            self.audits.append(audit_values(actor, action, msg_id, detail, now))

    def batch_audit(self, items: int, now: float) -> None:
        """The batch's one audit row: who, how many of how many, via which door, first and last id
        (each message's own `accepted` event stays in its timeline)."""
        if not self.batch or self.batch_actor is None:
            return
        via = ", ".join(f"{n} via {source}" for source, n in sorted(self.batch_sources.items()))
        n = len(self.batch)
        detail = f"batch: {n} of {items} message{'s' if items > 1 else ''} accepted ({via}), {self.batch[0]} to {self.batch[-1]}"
        self.audits.append(audit_values(self.batch_actor, "send_batch", self.batch[0], detail, now))

    async def write(self, db: aiosqlite.Connection) -> None:
        if self.added:
            await db.executemany(
                "INSERT INTO key_usage (key_id, hour, n) VALUES (?, ?, ?) "
                "ON CONFLICT(key_id, hour) DO UPDATE SET n = key_usage.n + excluded.n",
                [(k, h, n) for (k, h), n in self.added.items()],
            )
        if self.audits:
            await db.executemany(AUDIT_INSERT, self.audits)


@dataclass
class _AcceptRows:
    """The rows of a group's new messages, written with one executemany per table at its end."""

    pending: list[tuple[int, str, _Accept, float]] = field(default_factory=list)

    def add(self, index: int, msg_id: str, item: _Accept, now: float) -> None:
        self.pending.append((index, msg_id, item, now))

    async def write(self, db: aiosqlite.Connection) -> list[tuple[int, Message]]:
        """Insert the messages with their parts, `accepted` event and idempotency key: (index, message).

        One pass over the group builds every table's rows (a batch's 1,000 messages: the passes,
        not SQLite, were half the accept's CPU)."""
        if not self.pending:
            return []
        planned: list[tuple[int, str, _Accept, float, State, float, str]] = []
        messages: list[tuple[Any, ...]] = []
        parts: list[tuple[str, int, int]] = []
        accepted: list[tuple[str, float, str, str]] = []
        notes: list[tuple[str, float, str]] = []
        keyed: list[tuple[int, str, str, str, float]] = []
        details: dict[tuple[int, str, State], str] = {}
        for index, msg_id, item, now in self.pending:
            new = item.new
            send_at = _send_at(new)  # validity counts from a send window's opening
            if send_at is not None and send_at > now:
                status, start = State.SCHEDULED, send_at
            else:
                status, start = State.QUEUED, now
            detail = details.get((new.segments, new.encoding, status))
            if detail is None:
                detail = details[new.segments, new.encoding, status] = _accepted_detail(new, status)
            planned.append((index, msg_id, item, now, status, start, detail))
            messages.append(
                (
                    msg_id,
                    item.key_id,
                    new.to,
                    new.body,
                    new.encoding,
                    new.segments,
                    int(new.priority),
                    status.value,
                    now,
                    now,
                    send_at,
                    start,
                    start + new.validity_s,
                    new.status_callback,
                    None if new.metadata is None else json.dumps(new.metadata),
                    new.source,
                    new.callback_format,
                    None if new.window is None else json.dumps(new.window, sort_keys=True),
                    new.template_name,
                    new.template_version,
                    None if new.escalation_of is None else new.escalation_of[0],
                )
            )
            if new.segments == 1:
                parts.append((msg_id, 1, 1))
            else:
                parts.extend((msg_id, i, new.segments) for i in range(1, new.segments + 1))
            accepted.append((msg_id, now, status.value, detail))
            # A send window's note (held until its opening, or why none applies).
            if new.window_note is not None:
                notes.append((msg_id, now, new.window_note))
            if new.idempotency_key is not None:
                keyed.append((item.key_id or 0, new.idempotency_key, msg_id, new.fingerprint(), now))
        await insert_rows(
            db,
            "INSERT INTO messages (id, key_id, to_number, body, encoding, segments, priority, status, "
            "created_at, updated_at, send_at, not_before, expires_at, status_callback, metadata, source, "
            "callback_format, send_window, template_name, template_version, escalated_from)",
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            messages,
        )
        seqs = await inserted_seqs(db, [p[1] for p in planned])
        await insert_rows(
            db, "INSERT INTO parts (message_id, seq, total, status)", "(?, ?, ?, 'pending')", parts
        )
        await insert_rows(
            db,
            "INSERT INTO events (message_id, at, kind, from_status, to_status, detail)",
            "(?, ?, 'accepted', NULL, ?, ?)",
            accepted,
        )
        if notes:  # in the same trip
            await db.executemany(
                "INSERT INTO events (message_id, at, kind, from_status, to_status, detail) "
                "VALUES (?, ?, 'window', NULL, NULL, ?)",
                notes,
            )
        if keyed:
            await db.executemany(
                "INSERT INTO idempotency (key_id, key, message_id, request_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                keyed,
            )
        written: list[tuple[int, Message]] = []
        shared = _Shared()
        for n, (index, msg_id, item, now, status, start, detail) in enumerate(planned):
            if n % _YIELD_EVERY == _YIELD_EVERY - 1:
                await asyncio.sleep(0)
            message = _new_message(seqs[msg_id], msg_id, item, now, status, start, detail, shared)
            if n == 0 and message.__dict__.keys() != _MESSAGE_FIELDS:  # every field, once a group
                raise TypeError(
                    f"Message fields missing or unknown: {sorted(message.__dict__.keys() ^ _MESSAGE_FIELDS)}"
                )
            written.append((index, message))
        return written


def _accepted_detail(new: NewMessage, status: State) -> str:
    detail = f"accepted ({new.segments} segment{'s' if new.segments > 1 else ''}, {new.encoding})"
    return detail + ", scheduled" if status is State.SCHEDULED else detail


@dataclass
class _Shared:
    """Parts and events that messages of one group have alike (frozen: sharing them is safe)."""

    parts: dict[int, tuple[Part, ...]] = field(default_factory=dict)
    events: dict[tuple[float, str, str], tuple[Event, ...]] = field(default_factory=dict)

    def pending_parts(self, segments: int) -> tuple[Part, ...]:
        parts = self.parts.get(segments)
        if parts is None:
            parts = tuple(
                Part(i, segments, PartState.PENDING, None, None, None, None, None)
                for i in range(1, segments + 1)
            )
            self.parts[segments] = parts
        return parts

    def accepted(self, now: float, status: State, detail: str) -> tuple[Event, ...]:
        events = self.events.get((now, status.value, detail))
        if events is None:
            events = (Event(now, "accepted", None, status.value, detail),)
            self.events[now, status.value, detail] = events
        return events


def _send_at(new: NewMessage) -> float | None:
    """The send_at written: a send window that holds the message moves it to the opening."""
    return new.send_at if new.release_at is None else new.release_at


_MESSAGE_FIELDS = frozenset(f.name for f in dataclasses.fields(Message))


def _new_message(
    seq: int,
    msg_id: str,
    item: _Accept,
    now: float,
    status: State,
    start: float,
    detail: str,
    shared: _Shared,
) -> Message:
    """The message as just written: saves reading back what the accept knows (three queries each).

    Message(...) without the frozen __init__'s object.__setattr__ for each of its 37 fields: half
    the cost of the 1,000 records a batch returns, built under the write lock. `write` checks
    that every field is given (the ledger tests compare these records with a read-back)."""
    new = item.new
    events = shared.accepted(now, status, detail)
    msg: Message = object.__new__(Message)
    msg.__dict__.update(
        {
            "seq": seq,
            "id": msg_id,
            "to": new.to,
            "body": new.body,
            "encoding": new.encoding,
            "segments": new.segments,
            "priority": new.priority,
            "status": status,
            "attempts": 0,
            "error_code": None,
            "error_message": None,
            "created_at": now,
            "updated_at": now,
            "send_at": _send_at(new),
            "not_before": start,
            "expires_at": start + new.validity_s,
            "sent_at": None,
            "delivered_at": None,
            "report_expired": False,
            "concat_ref": None,
            "modem": None,
            "box": None,
            "held": False,
            "ambiguous": 0,
            "status_callback": new.status_callback,
            "callback_format": new.callback_format,
            "template_name": new.template_name,
            "template_version": new.template_version,
            "metadata": new.metadata,
            "delay_reason": None,
            "key_id": item.key_id,
            "window": new.window,
            "parts": shared.pending_parts(new.segments),
            "events": events
            if new.window_note is None
            else (*events, Event(now, "window", None, None, new.window_note)),
            "escalated_from": None if new.escalation_of is None else new.escalation_of[0],
            "escalation": None
            if new.escalation is None
            else Escalation(new.escalation, 0, start + new.escalation.after_s),
        }
    )
    return msg


_WAITING_SPAN = (
    "SELECT (SELECT max(seq) FROM messages) AS top, "
    "(SELECT min(seq) FROM messages WHERE status = 'queued') AS queued, "
    "(SELECT min(seq) FROM messages WHERE status = 'scheduled') AS scheduled, "
    "(SELECT min(seq) FROM messages WHERE status = 'sending') AS sending"
)


async def _waiting(db: aiosqlite.Connection, items: int, queue_max: int) -> int:
    """The messages waiting (queued, scheduled, sending), or a bound on them too low for any of
    `items` more to reach `queue_max`, which is all the accept checks then need.

    Counting walks the whole queue (~10 ms at 100,000 waiting, in every group commit); the bound
    is four index lookups: every waiting message has a seq from the oldest waiting one's to the
    newest one's. An old message scheduled far ahead widens that span: then it counts."""
    row = await fetch_one(db, _WAITING_SPAN, ())
    lows = [] if row is None else [row[k] for k in ("queued", "scheduled", "sending") if row[k] is not None]
    if row is None or not lows:
        return 0
    span = int(row["top"]) - min(int(low) for low in lows) + 1
    if span + items <= queue_max:
        return span
    row = await fetch_one(
        db, "SELECT count(*) AS n FROM messages WHERE status IN ('queued', 'scheduled', 'sending')", ()
    )
    return int(row["n"]) if row is not None else 0


def _quota_check(quota: Quota, usage: list[tuple[int, int]], hour: int, now: float) -> None:
    """Raise QuotaExceeded when one more message breaks the hour (fixed) or day (last 24 hours) limit.

    `usage` is (hour, messages) for the key's last 24 hour buckets, oldest first.
    """
    if quota.per_hour is not None:
        this_hour = sum(n for h, n in usage if h == hour)
        if this_hour >= quota.per_hour:
            raise QuotaExceeded("hour", quota.per_hour, max(1, int((hour + 1) * 3600 - now) + 1))
    if quota.per_day is not None:
        total = sum(n for _h, n in usage)
        if total >= quota.per_day:
            # The day frees up as the oldest hours slide out of the 24-hour window.
            excess, freed, frees_at = total - quota.per_day + 1, 0, hour + 1
            for h, n in usage:
                freed += n
                if freed >= excess:
                    frees_at = h + 24
                    break
            raise QuotaExceeded("day", quota.per_day, max(1, int(frees_at * 3600 - now) + 1))


class Messages(Escalations):
    """Accepting, reading and cancelling outbound messages."""

    @functools.cached_property
    def _pending(self) -> _AcceptQueue:
        return _AcceptQueue()

    async def accept(
        self,
        new: NewMessage,
        *,
        key_id: int | None,
        queue_max: int,
        quota: Quota | None = None,
        actor: Actor | None = None,
    ) -> tuple[Message, bool]:
        """Commit a new message (or find the one with the same idempotency key): (message, created).

        Concurrent accepts share one transaction and so one fsync (group commit): with
        synchronous=FULL the fsync, not the SQL, is what limits accepts per second. The
        key's usage counter and the audit row are written in that same transaction.
        """
        future: asyncio.Future[tuple[Message, bool]] = asyncio.get_running_loop().create_future()
        self._pending.waiting.append(_Accept(new, key_id, queue_max, quota, actor, future))
        if self._pending.task is None:
            self._pending.task = asyncio.create_task(self._accept_batches())
        return await future

    async def accept_many(
        self,
        news: Sequence[NewMessage],
        *,
        key_id: int | None,
        queue_max: int,
        quota: Quota | None = None,
        actor: Actor | None = None,
    ) -> list[tuple[Message, bool] | StoreError]:
        """Commit a batch in ONE transaction (one fsync), each message checked like `accept`, in
        order: per item (message, created) or the refusal (OptedOut, IdempotencyMismatch,
        QuotaExceeded, QueueFull). All accepted items are on disk, or none (the commit raised).
        The audit trail gets one `send_batch` row for it, naming its first and last message."""
        items = [_Accept(new, key_id, queue_max, quota, actor) for new in news]
        for attempt in range(KEY_RACE_RETRIES + 1):
            try:
                async with self._tx() as db:
                    return await self._accept_group(db, items, batch=True)
            except Exception as exc:
                if not (is_key_race(exc) and attempt < KEY_RACE_RETRIES):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _accept_batches(self) -> None:
        try:
            while self._pending.waiting:
                batch, self._pending.waiting = (
                    self._pending.waiting[:ACCEPT_BATCH_MAX],
                    self._pending.waiting[ACCEPT_BATCH_MAX:],
                )
                try:
                    for attempt in range(KEY_RACE_RETRIES + 1):
                        try:
                            async with self._tx() as db:
                                # A caller that went away before we began: nothing to commit for it.
                                live = [
                                    item for item in batch if item.future is None or not item.future.done()
                                ]
                                outcomes = await self._accept_group(db, live)
                            break
                        except Exception as exc:
                            if not (is_key_race(exc) and attempt < KEY_RACE_RETRIES):
                                raise
                except (
                    BaseException
                ) as exc:  # the commit failed (disk full): nothing of the batch is accepted
                    for item in batch:
                        if item.future is not None and not item.future.done():
                            item.future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for item, outcome in zip(live, outcomes, strict=True):
                    if item.future is None or item.future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        item.future.set_exception(outcome)
                    else:
                        item.future.set_result(outcome)
        finally:
            self._pending.task = None

    async def _prune_usage(self, db: aiosqlite.Connection) -> None:
        """Usage older than a day counts for nothing: drop it once an hour."""
        hour = int(time.time() // 3600)
        if hour != self._pending.usage_pruned_hour:
            await db.execute("DELETE FROM key_usage WHERE hour <= ?", (hour - 24,))
            self._pending.usage_pruned_hour = hour

    async def _accept_group(
        self, db: aiosqlite.Connection, items: Sequence[_Accept], *, batch: bool = False
    ) -> list[tuple[Message, bool] | StoreError]:
        """Check and write `items` in order inside the caller's transaction: the one accept path
        of single POSTs (group commit) and batches. Reads are one query per kind for the whole
        group and writes one executemany per table: a few trips to the database thread per
        group, not several per message (at 1,000 messages the trips were the cost)."""
        now = time.time()
        hour = int(now // 3600)
        waiting = await _waiting(db, len(items), min((item.queue_max for item in items), default=0))
        await self._prune_usage(db)
        extras = _BatchExtras(batch=[] if batch else None)
        used = await self._used_keys(db, items)
        optouts = await self._opted_out(db, {item.new.to for item in items})
        # Per item: its outcome, or the index of the earlier item of this group that used its key.
        outcomes: list[tuple[Message, bool] | StoreError | int] = []
        fresh: dict[tuple[int, str], int] = {}  # idempotency key -> index of the item that used it
        rows = _AcceptRows()
        ids = new_ids("msg", len(items))  # one read of the random source for the group
        for index, item in enumerate(items):
            if index % _YIELD_EVERY == _YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let the event loop serve others (the write lock is held)
            new = item.new
            ident = None if new.idempotency_key is None else (item.key_id or 0, new.idempotency_key)
            try:
                if ident is not None and ident in fresh:
                    if items[fresh[ident]].new.fingerprint() != new.fingerprint():
                        raise IdempotencyMismatch(ident[1])
                    outcomes.append(fresh[ident])
                    continue
                if ident is not None and ident in used:
                    request_hash, existing = used[ident]
                    if request_hash != new.fingerprint():
                        raise IdempotencyMismatch(ident[1])
                    if existing is None:  # pragma: no cover  (a key always points at a message)
                        raise NotFound(ident[1])
                    outcomes.append((existing, False))
                    continue
                if new.to in optouts:
                    raise OptedOut(new.to)
                quota = item.quota
                if (
                    item.key_id is not None
                    and quota is not None
                    and (quota.per_hour is not None or quota.per_day is not None)
                ):
                    _quota_check(quota, await extras.usage(db, item.key_id, hour), hour, now)
                if waiting >= item.queue_max:
                    raise QueueFull(f"{waiting} messages are waiting")
                if new.escalation_of is not None:  # a step of another chain: taken with this commit
                    await self._escalation_step_claimed(db, new, now)
            except StoreError as exc:
                outcomes.append(exc)
                continue
            waiting += 1
            if ident is not None:
                fresh[ident] = index
            msg_id = new.id or ids[index]
            rows.add(index, msg_id, item, now)
            extras.accepted(item.key_id, hour, item.actor, msg_id, new, now)
            outcomes.append(-1)  # filled in below, once the rows are written
        written = await rows.write(db)
        if written:
            await notify_queued(db)
        for index, message in written:
            outcomes[index] = (message, True)
        await self._escalations_accepted(
            db,
            [(m.id, m.escalation.spec, m.not_before) for _i, m in written if m.escalation is not None],
        )
        for index, message in written:
            if items[index].new.escalation_of is not None:
                await self._escalation_step_accepted(db, items[index].new, message.id, now)
        if self._webhooks or any(m.status_callback for _i, m in written):  # else no payload to build
            await self._enqueue_many(
                db,
                [
                    ("message.status", status_payload(m), m.status_callback, m.callback_format)
                    for _i, m in written
                ],
                now,
            )
        extras.batch_audit(len(items), now)
        await extras.write(db)
        results: list[tuple[Message, bool] | StoreError] = []
        for outcome in outcomes:
            if isinstance(outcome, int):  # a repeat of a key an earlier item of this group used
                accepted = outcomes[outcome]
                assert isinstance(accepted, tuple)  # noqa: S101  (that item was accepted)
                results.append((accepted[0], False))
            else:
                results.append(outcome)
        return results

    async def _used_keys(
        self, db: aiosqlite.Connection, items: Sequence[_Accept]
    ) -> dict[tuple[int, str], tuple[str, Message | None]]:
        """The idempotency keys of `items` already in the ledger: key -> (request hash, its message)."""
        by_key: dict[int, set[str]] = {}
        for item in items:
            if item.new.idempotency_key is not None:
                by_key.setdefault(item.key_id or 0, set()).add(item.new.idempotency_key)
        found: dict[tuple[int, str], tuple[str, str]] = {}
        for key_id, keys in by_key.items():
            for chunk in _chunks(sorted(keys)):
                rows = await fetch_all(
                    db,
                    "SELECT key, message_id, request_hash FROM idempotency "  # noqa: S608  (placeholders only)
                    f"WHERE key_id = ? AND key IN ({marks(chunk)})",
                    (key_id, *chunk),
                )
                for r in rows:
                    found[key_id, r["key"]] = (r["request_hash"], r["message_id"])
        messages: dict[str, Message] = {}
        for chunk in _chunks(sorted({message_id for _h, message_id in found.values()})):
            rows = await fetch_all(
                db,
                f"SELECT {WHOLE_MESSAGE} FROM messages WHERE id IN ({marks(chunk)})",  # noqa: S608  (fixed text)
                chunk,
            )
            messages.update((m.id, m) for m in map(whole_message, rows))
        return {ident: (h, messages.get(message_id)) for ident, (h, message_id) in found.items()}

    async def _opted_out(self, db: aiosqlite.Connection, numbers: set[str]) -> set[str]:
        out: set[str] = set()
        for chunk in _chunks(sorted(numbers)):
            rows = await fetch_all(
                db,
                f"SELECT number FROM optouts WHERE number IN ({marks(chunk)})",  # noqa: S608  (placeholders only)
                chunk,
            )
            out.update(r["number"] for r in rows)
        return out

    async def get(self, msg_id: str) -> Message | None:
        """The message with parts and events, or None."""
        return await self._get(self.rdb, msg_id)

    async def list_messages(
        self,
        *,
        status: str | None = None,
        to: str | None = None,
        limit: int = 50,
        before_seq: int | None = None,
        key_id: int | None = None,
        to_suffix: str | None = None,
    ) -> list[Message]:
        """Newest first, whole (parts and events), in one query; `before_seq` continues a page.

        `to_suffix`: digits the number ends with (the last digits an engineer remembers)."""
        sql, args = page_query(
            "messages",
            [
                ("status = ?", status),
                ("to_number = ?", to),
                ("to_number LIKE ?", None if to_suffix is None else f"%{to_suffix}"),
                ("seq < ?", before_seq),
                ("key_id = ?", key_id),
            ],
            limit,
            columns=WHOLE_MESSAGE,
        )
        return [whole_message(r) for r in await fetch_all(self.rdb, sql, args)]

    async def idempotency_used_since(self, key_id: int, key: str, since: float) -> bool:
        """Whether this key's idempotency key was used at or after `since`."""
        row = await fetch_one(
            self.rdb,
            "SELECT 1 FROM idempotency WHERE key_id = ? AND key = ? AND created_at >= ?",
            (key_id, key, since),
        )
        return row is not None

    async def recent_events(self, kinds: Sequence[str], *, scan: int, limit: int) -> list[dict[str, Any]]:
        """The newest events of these kinds among the last `scan` events (message_id, at, kind, detail)."""
        rows = await fetch_all(
            self.rdb,
            "SELECT message_id, at, kind, detail FROM events WHERE id > "  # noqa: S608  (placeholders only)
            f"(SELECT coalesce(max(id), 0) FROM events) - ? AND kind IN ({marks(kinds)}) ORDER BY id DESC LIMIT ?",
            (scan, *kinds, limit),
        )
        return [dict(r) for r in rows]

    async def cancel(self, msg_id: str, *, owner: int | None = None, actor: Actor | None = None) -> Message:
        """Cancel a message not yet handed to the modem; Conflict once sending began.

        With `owner`, a message another key sent is NotFound (its existence is not revealed).
        """
        now = time.time()
        async with self._tx() as db:
            msg = await self._get(db, msg_id)
            if msg is None or (owner is not None and msg.key_id != owner):
                raise NotFound(msg_id)
            if msg.status is State.CANCELED:
                return msg
            if msg.status not in (State.QUEUED, State.SCHEDULED):
                raise Conflict(msg.status.value)
            await self._transition(db, msg, State.CANCELED, "canceled", "canceled by request", now)
            if actor is not None:
                await insert_audit(db, actor, "cancel", msg_id, f"was {msg.status.value}", now)
            result = await self._get(db, msg_id)
            assert result is not None  # noqa: S101
            return result
