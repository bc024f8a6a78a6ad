"""Outbound messages: accepting them (group commit, idempotency, quotas), reading and cancelling them."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from appliance.ledger.dialect import fetch_all, fetch_one, page_query
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
from appliance.ledger.keys import insert_audit
from appliance.ledger.models import (
    Actor,
    Escalation,
    Event,
    Message,
    NewMessage,
    Part,
    Quota,
    new_id,
    whole_message,
)
from appliance.ledger.timeline import WHOLE_MESSAGE
from appliance.states import PartState, State

# Accepts committed together at most (group commit); bounds the latency one slow batch adds.
ACCEPT_BATCH_MAX = 256


@dataclass(frozen=True)
class _Accept:
    """One accept waiting for the next group commit."""

    new: NewMessage
    key_id: int | None
    queue_max: int
    quota: Quota | None
    actor: Actor | None
    future: asyncio.Future[tuple[Message, bool]]


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
        if actor is not None:
            action = "test_sms" if new.source == "page" else "send"
            detail = f"via {new.source}, priority {new.priority.name.lower()}"
            self.audits.append((now, actor.name[:200], actor.source[:200], action, msg_id, detail))

    async def write(self, db: aiosqlite.Connection) -> None:
        if self.added:
            await db.executemany(
                "INSERT INTO key_usage (key_id, hour, n) VALUES (?, ?, ?) "
                "ON CONFLICT(key_id, hour) DO UPDATE SET n = n + excluded.n",
                [(k, h, n) for (k, h), n in self.added.items()],
            )
        if self.audits:
            await db.executemany(
                "INSERT INTO audit (at, actor, source, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
                self.audits,
            )


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

    async def _accept_batches(self) -> None:
        try:
            while self._pending.waiting:
                batch, self._pending.waiting = (
                    self._pending.waiting[:ACCEPT_BATCH_MAX],
                    self._pending.waiting[ACCEPT_BATCH_MAX:],
                )
                outcomes: list[
                    tuple[asyncio.Future[tuple[Message, bool]], tuple[Message, bool] | BaseException]
                ] = []
                try:
                    async with self._tx() as db:
                        row = await fetch_one(
                            db,
                            "SELECT count(*) AS n FROM messages WHERE status IN ('queued', 'scheduled', 'sending')",
                            (),
                        )
                        waiting = int(row["n"]) if row is not None else 0
                        await self._prune_usage(db)
                        extras = _BatchExtras()
                        for item in batch:
                            if item.future.done():  # the caller went away before we began: nothing to commit
                                continue
                            await db.execute("SAVEPOINT accept")
                            try:
                                result = await self._accept_one(db, item, waiting, extras)
                            except StoreError as exc:
                                await db.execute("ROLLBACK TO accept")
                                outcomes.append((item.future, exc))
                            else:
                                waiting += result[1]
                                outcomes.append((item.future, result))
                            await db.execute("RELEASE accept")
                        await extras.write(db)
                except (
                    BaseException
                ) as exc:  # the commit failed (disk full): nothing of the batch is accepted
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for future, outcome in outcomes:
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._pending.task = None

    async def _prune_usage(self, db: aiosqlite.Connection) -> None:
        """Usage older than a day counts for nothing: drop it once an hour."""
        hour = int(time.time() // 3600)
        if hour != self._pending.usage_pruned_hour:
            await db.execute("DELETE FROM key_usage WHERE hour <= ?", (hour - 24,))
            self._pending.usage_pruned_hour = hour

    async def _accept_one(
        self, db: aiosqlite.Connection, item: _Accept, waiting: int, extras: _BatchExtras
    ) -> tuple[Message, bool]:
        new, key_id, queue_max = item.new, item.key_id, item.queue_max
        now = time.time()
        if new.idempotency_key is not None:
            row = await fetch_one(
                db,
                "SELECT message_id, request_hash FROM idempotency WHERE key_id IS ? AND key = ?",
                (key_id or 0, new.idempotency_key),
            )
            if row is not None:
                if row["request_hash"] != new.fingerprint():
                    raise IdempotencyMismatch(new.idempotency_key)
                existing = await self._get(db, row["message_id"])
                if existing is None:  # pragma: no cover  (a key always points at a message)
                    raise NotFound(row["message_id"])
                return existing, False
        if await fetch_one(db, "SELECT 1 FROM optouts WHERE number = ?", (new.to,)) is not None:
            raise OptedOut(new.to)
        hour = int(now // 3600)
        quota = item.quota
        if (
            key_id is not None
            and quota is not None
            and (quota.per_hour is not None or quota.per_day is not None)
        ):
            _quota_check(quota, await extras.usage(db, key_id, hour), hour, now)
        if waiting >= queue_max:
            raise QueueFull(f"{waiting} messages are waiting")
        msg_id = new_id("msg")
        # A send window that holds it moves its send_at to the opening; validity counts from there.
        send_at = new.send_at if new.release_at is None else new.release_at
        scheduled = send_at is not None and send_at > now
        status = State.SCHEDULED if scheduled else State.QUEUED
        start = send_at if scheduled and send_at is not None else now
        metadata = json.dumps(new.metadata) if new.metadata is not None else None
        cur = await db.execute(
            """INSERT INTO messages (id, key_id, to_number, body, encoding, segments, priority, status,
               created_at, updated_at, send_at, not_before, expires_at, status_callback, metadata, source,
               callback_format, send_window, template_name, template_version)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                msg_id,
                key_id,
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
                metadata,
                new.source,
                new.callback_format,
                None if new.window is None else json.dumps(new.window, sort_keys=True),
                new.template_name,
                new.template_version,
            ),
        )
        seq = int(cur.lastrowid or 0)
        await db.executemany(
            "INSERT INTO parts (message_id, seq, total, status) VALUES (?, ?, ?, 'pending')",
            [(msg_id, i, new.segments) for i in range(1, new.segments + 1)],
        )
        detail = f"accepted ({new.segments} segment{'s' if new.segments > 1 else ''}, {new.encoding})"
        if scheduled:
            detail += ", scheduled"
        await self._event(db, msg_id, "accepted", None, status, detail, now)
        events = [Event(now, "accepted", None, status.value, detail)]
        if new.window_note is not None:
            await self._event(db, msg_id, "window", None, None, new.window_note, now)
            events.append(Event(now, "window", None, None, new.window_note))
        if new.escalation is not None:
            await self._escalation_accepted(db, msg_id, new.escalation, start)
        if new.escalation_of is not None:  # a step of another message's chain: taken with this commit
            await self._escalation_step_accepted(db, new, msg_id, now)
        if new.idempotency_key is not None:
            await db.execute(
                "INSERT INTO idempotency (key_id, key, message_id, request_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                (key_id or 0, new.idempotency_key, msg_id, new.fingerprint(), now),
            )
        # Built from what was just written: saves three queries per accept on the hot path.
        message = Message(
            seq=seq,
            id=msg_id,
            to=new.to,
            body=new.body,
            encoding=new.encoding,
            segments=new.segments,
            priority=new.priority,
            status=status,
            attempts=0,
            error_code=None,
            error_message=None,
            created_at=now,
            updated_at=now,
            send_at=send_at,
            not_before=start,
            expires_at=start + new.validity_s,
            sent_at=None,
            delivered_at=None,
            report_expired=False,
            concat_ref=None,
            modem=None,
            held=False,
            ambiguous=0,
            status_callback=new.status_callback,
            callback_format=new.callback_format,
            template_name=new.template_name,
            template_version=new.template_version,
            metadata=new.metadata,
            delay_reason=None,
            key_id=key_id,
            window=new.window,
            parts=tuple(
                Part(i, new.segments, PartState.PENDING, None, None, None, None, None)
                for i in range(1, new.segments + 1)
            ),
            events=tuple(events),
            escalated_from=None if new.escalation_of is None else new.escalation_of[0],
            escalation=None
            if new.escalation is None
            else Escalation(new.escalation, 0, start + new.escalation.after_s),
        )
        await self._notify(db, message, now)
        extras.accepted(key_id, hour, item.actor, msg_id, new, now)
        return message, True

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
        marks = ",".join("?" * len(kinds))
        rows = await fetch_all(
            self.rdb,
            "SELECT message_id, at, kind, detail FROM events WHERE id > "  # noqa: S608  (placeholders only)
            f"(SELECT coalesce(max(id), 0) FROM events) - ? AND kind IN ({marks}) ORDER BY id DESC LIMIT ?",
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
