"""The send queue: claims, parts handed to the modem, retries, delays, crash recovery, held messages."""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterable

import aiosqlite

from appliance.ledger.connection import vital
from appliance.ledger.dialect import SKIP_LOCKED, fetch_all, fetch_one, notify_queued
from appliance.ledger.errors import Conflict, NotFound
from appliance.ledger.keys import insert_audit
from appliance.ledger.models import Actor, Message, message_row
from appliance.ledger.payloads import rfc3339
from appliance.ledger.reports import Reports
from appliance.states import PartState, State, check
from appliance.windows import is_open, next_open, reason, window_from_json

# Queries of the waiting queue name their partial index (INDEXED BY; dropped on PostgreSQL):
# without statistics SQLite's planner takes messages_status for `status = 'queued'` and sorts
# every waiting row, 44 ms a claim at 80,000 queued (an ANALYZE'd file of an idle box, no better).
#
# One min() per partial index, each a single index seek (priority: 0 high, 1 normal, 2 bulk):
# `status IN ('queued', 'scheduled')` walked every waiting row (48 ms at 80,000 queued), on
# every idle wake of every dispatcher. Unnamed, SQLite took messages_status for the scheduled
# one and read every scheduled row: 7 ms at 25,000, on every wake (each accept wakes it).
_NEXT_DUE = (
    "SELECT min(t) AS t FROM ("
    "SELECT min(not_before) AS t FROM messages INDEXED BY messages_scheduled WHERE status = 'scheduled' UNION ALL "
    "SELECT min(not_before) FROM messages WHERE status = 'queued' AND priority = 0 UNION ALL "
    "SELECT min(not_before) FROM messages WHERE status = 'queued' AND priority = 1 UNION ALL "
    "SELECT min(not_before) FROM messages WHERE status = 'queued' AND priority = 2) AS due"
)


class Sending(Reports):
    """From queued to sent: every step committed before or after the AT command it records."""

    async def claim_next(
        self,
        modem: str,
        *,
        now: float | None = None,
        skip: Iterable[str] = (),
        delay_until: dict[str, float] | None = None,
        delay_reason: str = "",
        mark_first_part: bool = False,
    ) -> Message | None:
        """Take the most urgent queued message due now: committed as `sending` before any AT.

        Recipients in `delay_until` (anti-flood) are passed over; their due messages are
        pushed back to that time with `delay_reason` in the timeline.
        """
        now = time.time() if now is None else now
        skip_set = set(skip)
        delays = delay_until or {}
        due = "status = 'queued' AND not_before <= ?"
        args: list[object] = [now]
        if self.box is not None:
            # A box another took over (it was paused past its lease) claims nothing until it
            # registers again (fleet.py): its in-flight messages are someone else's now; nor does a
            # start while another start holds the box's name (a second box so named). Asked in the
            # claim itself, not by a query of its own before each claim.
            holds, holds_args = self.holds_name()
            due += f" AND NOT EXISTS (SELECT 1 FROM boxes WHERE name = ? AND NOT ({holds}))"  # noqa: S608  (fixed text)
            args.extend((self.box, *holds_args))
        async with self._tx() as db:
            rows = await fetch_all(
                db,
                f"SELECT * FROM messages INDEXED BY messages_queue WHERE {due} "  # noqa: S608  (fixed clauses)
                f"ORDER BY priority, not_before, seq LIMIT 64{SKIP_LOCKED}",
                args,
            )
            for row in rows:
                if row["to_number"] in skip_set:
                    continue
                if row["to_number"] in delays:
                    await self._delay(db, row, delays[row["to_number"]], delay_reason, now)
                    continue
                msg = message_row(row)
                if msg.expires_at <= now:
                    await self._expire(db, msg, now)
                    continue
                if await self._window_hold(db, msg, now):  # a backlog carried it past its window's end
                    continue
                check(msg.status, State.SENDING)
                ref = msg.concat_ref if msg.concat_ref is not None else secrets.randbelow(256)
                await db.execute(
                    "UPDATE messages SET status = 'sending', attempts = attempts + 1, modem = ?, box = ?, "
                    "concat_ref = ?, updated_at = ?, delay_reason = NULL, held_until = NULL WHERE id = ?",
                    (modem, self.box, ref, now, msg.id),
                )
                if mark_first_part:
                    # Saves the caller a transaction before AT+CMGS: the part counts as handed over.
                    await db.execute(
                        "UPDATE parts SET status = 'sending' WHERE message_id = ? AND seq = "
                        "(SELECT min(seq) FROM parts WHERE message_id = ? AND status IN ('pending', 'sending'))",
                        (msg.id, msg.id),
                    )
                await self._event(
                    db,
                    msg.id,
                    "attempt",
                    msg.status,
                    State.SENDING,
                    f"attempt {msg.attempts + 1} on {modem}",
                    now,
                )
                claimed = await self._get(db, msg.id)
                assert claimed is not None  # noqa: S101
                await self._notify(db, claimed, now)
                return claimed
            return None

    async def _expire(self, db: aiosqlite.Connection, msg: Message, now: float) -> None:
        await self._transition(
            db,
            msg,
            State.FAILED,
            "expired",
            "validity expired before sending",
            now,
            error=("expired", "validity period expired before the message could be sent"),
        )

    async def next_due(self) -> float | None:
        """Earliest time a queued or scheduled message becomes due (None: nothing waits)."""
        row = await fetch_one(self.rdb, _NEXT_DUE, ())
        return None if row is None or row["t"] is None else float(row["t"])

    async def submitted_since(self, modem: str, since: float) -> list[float]:
        """When `modem` handed parts to the network since `since` (the rate limit after a restart)."""
        rows = await fetch_all(
            self.rdb,
            "SELECT submitted_at FROM parts WHERE submitted_at >= ? AND modem = ? ORDER BY submitted_at",
            (since, modem),
        )
        return [float(r["submitted_at"]) for r in rows]

    async def part_sending(self, msg_id: str, seq: int) -> None:
        """Commit that this part is about to go to AT+CMGS (crash point)."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE parts SET status = 'sending' WHERE message_id = ? AND seq = ? AND status = 'pending'",
                (msg_id, seq),
            )

    @vital
    async def part_submitted(
        self, msg_id: str, seq: int, mr: int, modem: str, *, at: float | None = None
    ) -> Message:
        """Record +CMGS: <mr> for one part; the message becomes `sent` with its last part."""
        now = time.time() if at is None else at
        async with self._tx(critical=True) as db:
            await db.execute(
                "UPDATE parts SET status = 'sent', mr = ?, modem = ?, box = ?, submitted_at = ? "
                "WHERE message_id = ? AND seq = ?",
                (mr, modem, self.box, now, msg_id, seq),
            )
            msg = await self._get(db, msg_id)
            if msg is None:
                raise NotFound(msg_id)
            await self._event(
                db,
                msg_id,
                "part_submitted",
                None,
                None,
                f"part {seq}/{msg.segments} accepted by the network, MR {mr}",
                now,
            )
            if (
                all(
                    p.status is not PartState.PENDING and p.status is not PartState.SENDING for p in msg.parts
                )
                and msg.status is State.SENDING
            ):
                await self._transition(
                    db, msg, State.SENT, "sent", f"all {msg.segments} part(s) accepted by the network", now
                )
            # A report may have arrived before we recorded +CMGS (EC25: ~1 s after): match it now.
            mine, box_args = self.mine()
            pending = await fetch_all(
                db,
                f"SELECT * FROM unmatched_reports WHERE mr = ? AND received_at >= ?{mine} ORDER BY id",  # noqa: S608  (fixed text)
                (mr, now - 600, *box_args),
            )
            for rep in pending:
                outcome = await self._apply_report(
                    db, rep["mr"], rep["recipient"], rep["status"], rep["received_at"]
                )
                if outcome.matched:
                    await db.execute("DELETE FROM unmatched_reports WHERE id = ?", (rep["id"],))
            result = await self._get(db, msg_id)
            assert result is not None  # noqa: S101
            return result

    @vital
    async def send_failed(
        self,
        msg_id: str,
        *,
        code: str,
        message: str,
        retry_at: float | None,
        max_attempts: int,
    ) -> Message:
        """A send attempt failed: back to `queued` at retry_at (transient), else `failed`."""
        now = time.time()
        async with self._tx(critical=True) as db:
            msg = await self._get(db, msg_id)
            if msg is None:
                raise NotFound(msg_id)
            await db.execute(
                "UPDATE parts SET status = 'pending' WHERE message_id = ? AND status = 'sending'", (msg_id,)
            )
            if retry_at is not None and msg.attempts < max_attempts and retry_at < msg.expires_at:
                await db.execute("UPDATE messages SET not_before = ? WHERE id = ?", (retry_at, msg_id))
                await self._transition(
                    db,
                    msg,
                    State.QUEUED,
                    "retry",
                    f"{code}: {message}; retry in {retry_at - now:.0f} s",
                    now,
                    error=(code, message),
                )
            else:
                why = (
                    ""
                    if retry_at is None
                    else (
                        " (attempts exhausted)"
                        if msg.attempts >= max_attempts
                        else " (validity would expire)"
                    )
                )
                await self._transition(
                    db, msg, State.FAILED, "failed", f"{code}: {message}{why}", now, error=(code, message)
                )
            result = await self._get(db, msg_id)
            assert result is not None  # noqa: S101
            return result

    @vital
    async def release(self, msg_id: str, reason: str) -> None:
        """Put a claimed message back untouched (the modem went away before any AT)."""
        now = time.time()
        async with self._tx(critical=True) as db:
            msg = await self._get(db, msg_id)
            if msg is None or msg.status is not State.SENDING:
                return
            await db.execute(
                "UPDATE parts SET status = 'pending' WHERE message_id = ? AND status = 'sending'", (msg_id,)
            )
            await db.execute("UPDATE messages SET attempts = max(attempts - 1, 0) WHERE id = ?", (msg_id,))
            await self._transition(db, msg, State.QUEUED, "released", reason, now)

    async def release_cut_off_claim(self, modem: str, claimed_at: float) -> list[str]:
        """A claim by `modem` at `claimed_at` met the ledger's server going away (spool.py): if its
        COMMIT made it after all, the message it took (`sending` on `modem` since exactly that
        time, no part handed to the network) goes back to the queue. Its ids."""
        rows = await fetch_all(
            self.rdb,
            "SELECT id FROM messages WHERE status = 'sending' AND modem = ? AND updated_at = ? "
            "AND NOT EXISTS (SELECT 1 FROM parts WHERE parts.message_id = messages.id AND parts.mr IS NOT NULL)",
            (modem, claimed_at),
        )
        ids = [str(r["id"]) for r in rows]
        for msg_id in ids:
            await self.release(
                msg_id, f"{modem}: the ledger's server went away during the claim; nothing was sent"
            )
        return ids

    async def delay(self, msg_id: str, until: float, reason: str, *, move: bool = True) -> None:
        """Hold a queued message back until `until`, saying why in the timeline (once per reason).

        `move=False` leaves its due time (and so its place in the queue) as it is: for a limit
        that holds the whole modem, not this message.
        """
        now = time.time()
        async with self._tx() as db:
            row = await fetch_one(db, "SELECT id, status, delay_reason FROM messages WHERE id = ?", (msg_id,))
            if row is None or row["status"] != State.QUEUED.value:
                return
            await self._delay(db, row, until, reason, now, move=move)

    async def _delay(
        self,
        db: aiosqlite.Connection,
        row: sqlite3.Row,
        until: float,
        reason: str,
        now: float,
        *,
        move: bool = True,
    ) -> None:
        await db.execute(
            "UPDATE messages SET not_before = CASE WHEN ? = 1 THEN max(not_before, ?) ELSE not_before END, "
            "delay_reason = ?, held_until = ?, updated_at = ? WHERE id = ?",
            (int(move), until, reason, until, now, row["id"]),
        )
        if row["delay_reason"] != reason:
            await self._event(db, row["id"], "delayed", None, None, f"{reason} until {rfc3339(until)}", now)

    async def peek_next(self, now: float) -> str | None:
        """Id of the message the next claim would take (for saying why it waits)."""
        row = await fetch_one(
            self.rdb,
            "SELECT id FROM messages INDEXED BY messages_queue WHERE status = 'queued' AND not_before <= ? "
            "ORDER BY priority, not_before, seq LIMIT 1",
            (now,),
        )
        return None if row is None else str(row["id"])

    async def held_back(self, now: float) -> list[tuple[str, int, float]]:
        """(reason, messages, until) for queued messages a limit holds back past `now`."""
        rows = await fetch_all(
            self.rdb,
            "SELECT delay_reason, count(*) AS n, max(held_until) AS until FROM messages INDEXED BY messages_held_back "
            "WHERE status = 'queued' AND delay_reason IS NOT NULL AND held_until > ? GROUP BY delay_reason",
            (now,),
        )
        return [(str(r["delay_reason"]), int(r["n"]), float(r["until"])) for r in rows]

    @vital
    async def note(self, msg_id: str, kind: str, detail: str) -> None:
        """Add a timeline entry without a state change (e.g. an ambiguous outcome)."""
        now = time.time()
        async with self._tx(critical=True) as db:
            if kind == "outcome_unknown":
                await db.execute("UPDATE messages SET ambiguous = ambiguous + 1 WHERE id = ?", (msg_id,))
                await db.execute(
                    "INSERT INTO counters (name, value) VALUES ('ambiguous_parts', 1) "
                    "ON CONFLICT(name) DO UPDATE SET value = counters.value + 1"
                )
            await self._event(db, msg_id, kind, None, None, detail, now)

    async def promote_and_expire(self, now: float | None = None) -> int:
        """Scheduled messages that are due become queued; queued past validity fail."""
        now = time.time() if now is None else now
        changed = 0
        async with self._tx() as db:
            rows = await fetch_all(
                db,
                f"SELECT * FROM messages INDEXED BY messages_scheduled WHERE status = 'scheduled' "  # noqa: S608
                f"AND not_before <= ?{SKIP_LOCKED}",
                (now,),
            )
            for row in rows:
                msg = message_row(row)
                if await self._window_hold(db, msg, now):  # e.g. the daemon was down past its window's end
                    continue
                await self._transition(db, msg, State.QUEUED, "due", "scheduled time reached", now)
                changed += 1
            if changed:
                await notify_queued(db)  # every box of a fleet claims them, not only the promoter
            rows = await fetch_all(
                db,
                f"SELECT * FROM messages INDEXED BY messages_expiry WHERE status IN ('queued', 'scheduled') "  # noqa: S608
                f"AND expires_at <= ?{SKIP_LOCKED}",
                (now,),
            )
            for row in rows:
                await self._expire(db, message_row(row), now)
                changed += 1
        return changed

    async def _window_hold(self, db: aiosqlite.Connection, msg: Message, now: float) -> bool:
        """True when msg's send window is closed at `now`: it is then `scheduled` for the window's
        next opening, with one event saying why (its due time moves, so the next look is then).

        Validity counts while a message may be sent: a scheduled one keeps its whole validity
        from the new opening, a queued one what it had left."""
        window = window_from_json(msg.window)
        if window is None or is_open(window, now):
            return False
        opens = next_open(window, now)
        left = msg.expires_at - (msg.not_before if msg.status is State.SCHEDULED else now)
        await db.execute(
            "UPDATE messages SET send_at = ?, not_before = ?, expires_at = ?, delay_reason = NULL, "
            "held_until = NULL WHERE id = ?",
            (opens, opens, opens + max(left, 0.0), msg.id),
        )
        detail = reason(window, now)
        if msg.status is State.SCHEDULED:
            await self._event(db, msg.id, "window", None, None, detail, now)
        else:
            await self._transition(db, msg, State.SCHEDULED, "window", detail, now)
        return True

    @vital
    async def recover_inflight(self, policy: str) -> list[str]:
        """After a crash: messages left `sending` have an unknown outcome. Resend them, or hold them.

        In a fleet only this box's own (and those of a ledger from before fleets, box NULL):
        another box's `sending` message is in flight there, or its takeover's (fleet.py)."""
        now = time.time()
        recovered: list[str] = []
        async with self._tx(critical=True) as db:
            mine, box_args = self.mine()
            rows = await fetch_all(
                db,
                f"SELECT * FROM messages WHERE status = 'sending' AND held = 0{mine}",  # noqa: S608  (fixed text)
                box_args,
            )
            for row in rows:
                await self._unknown_outcome(db, message_row(row), policy, "the gateway stopped", now)
                recovered.append(row["id"])
        return recovered

    async def _unknown_outcome(
        self, db: aiosqlite.Connection, msg: Message, policy: str, why: str, now: float
    ) -> None:
        """A `sending` message whose sender stopped (`why`): parts handed to the modem may or may not
        have gone; `policy` resends them (at-least-once) or holds the message for an operator."""
        parts = await fetch_all(
            db, "SELECT seq FROM parts WHERE message_id = ? AND status = 'sending'", (msg.id,)
        )
        unknown = [p["seq"] for p in parts]
        await db.execute("UPDATE messages SET ambiguous = ambiguous + ? WHERE id = ?", (len(unknown), msg.id))
        await db.execute(
            "INSERT INTO counters (name, value) VALUES ('ambiguous_parts', ?) "
            "ON CONFLICT(name) DO UPDATE SET value = counters.value + excluded.value",
            (len(unknown),),
        )
        what = f"part(s) {', '.join(map(str, unknown))}" if unknown else "no part"
        if policy == "hold" and unknown:
            await db.execute("UPDATE messages SET held = 1 WHERE id = ?", (msg.id,))
            await self._event(
                db,
                msg.id,
                "outcome_unknown",
                None,
                None,
                f"{why} while {what} was being submitted: it may or may not have been sent; "
                "held for an operator's decision (POST /api/v1/messages/{id}/resend or .../abandon)",
                now,
            )
            return
        await db.execute(
            "UPDATE parts SET status = 'pending' WHERE message_id = ? AND status = 'sending'", (msg.id,)
        )
        detail = (
            f"{why} while {what} was being submitted: it may have been sent; "
            "resending (the recipient may get it twice)"
            if unknown
            else f"{why} before the modem was asked; sending again"
        )
        await self._transition(
            db, msg, State.QUEUED, "outcome_unknown" if unknown else "recovered", detail, now
        )

    async def resolve_held(
        self, msg_id: str, action: str, *, owner: int | None = None, actor: Actor | None = None
    ) -> Message:
        """An operator's decision on a held message: 'resend' or 'cancel' (marks it failed)."""
        now = time.time()
        async with self._tx() as db:
            msg = await self._get(db, msg_id)
            if msg is None or (owner is not None and msg.key_id != owner):
                raise NotFound(msg_id)
            if not msg.held:
                raise Conflict("not held")
            await db.execute("UPDATE messages SET held = 0 WHERE id = ?", (msg_id,))
            if actor is not None:
                await insert_audit(db, actor, "resend" if action == "resend" else "abandon", msg_id, "", now)
            if action == "resend":
                await db.execute(
                    "UPDATE parts SET status = 'pending' WHERE message_id = ? AND status = 'sending'",
                    (msg_id,),
                )
                await self._transition(db, msg, State.QUEUED, "operator", "operator chose to resend", now)
            else:
                await self._transition(
                    db,
                    msg,
                    State.FAILED,
                    "operator",
                    "operator chose not to resend",
                    now,
                    error=(
                        "outcome_unknown",
                        "the send was interrupted and the operator chose not to resend",
                    ),
                )
            result = await self._get(db, msg_id)
            assert result is not None  # noqa: S101
            return result
