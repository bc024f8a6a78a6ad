"""Escalation chains: a message nobody confirms goes to the next number, then to e-mail.

A chain is one `escalations` row per original message: its spec (after_s, until, targets), how
many targets were reached (`step`), when the next step is due (`next_at`, NULL once it ended) and
why it ended. A step to a number is committed in the accept transaction of the message it sends
(claimed by `_escalation_step_claimed`, guarded by the step it follows): a restart, or two loops racing,
can never send a step twice. The chain's e-mails wait in `escalation_mail`, an outbox like the
webhooks': attempts, a transient failure retried later, a permanent one given up. Every step and
the end are an event in the original's timeline and a `message.escalated` webhook.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from appliance.ledger.dialect import fetch_all, fetch_one
from appliance.ledger.errors import Conflict
from appliance.ledger.models import Escalation, EscalationSpec, NewMessage, escalation_row
from appliance.ledger.payloads import rfc3339
from appliance.ledger.timeline import Timeline

# Why a chain ended (`outcome`): the API shows these words.
ENDINGS = ("delivered", "replied", "canceled", "emailed", "exhausted", "no_text")


@dataclass(frozen=True)
class EscalationMail:
    """One e-mail of a chain waiting in the outbox."""

    id: int
    message_id: str
    step: int
    address: str
    subject: str
    body: str
    attempts: int
    created_at: float


def waited_for(spec: EscalationSpec) -> str:
    """What the chain waits for, as the timeline says it."""
    return f"not {'answered' if spec.until == 'replied' else 'delivered'} within {spec.after_s} s"


def _target_of(spec: EscalationSpec, step: int) -> str:
    return spec.then[step - 1]


class Escalations(Timeline):
    """Escalation chains (with their accept-path hooks) and the chains' e-mail outbox."""

    # ------------------------------------------------------------ accept path
    async def _escalations_accepted(
        self, db: aiosqlite.Connection, chains: Sequence[tuple[str, EscalationSpec, float]]
    ) -> None:
        """Messages with `escalation` were accepted (message id, spec, start): their chains start,
        the first step due after_s after `start` (when the message is due: now, or its send_at).
        One multi-row insert for a whole accept group."""
        if chains:
            await db.executemany(
                "INSERT INTO escalations (message_id, after_s, until, targets, step, next_at) "
                "VALUES (?, ?, ?, ?, 0, ?)",
                [
                    (msg_id, spec.after_s, spec.until, json.dumps(list(spec.then)), start + spec.after_s)
                    for msg_id, spec, start in chains
                ],
            )

    async def _escalation_step_claimed(self, db: aiosqlite.Connection, new: NewMessage, now: float) -> None:
        """`new` is step k of a chain: take step k in the accept's transaction, or refuse (Conflict)
        when it was taken already or the chain ended (that item alone is refused)."""
        assert new.escalation_of is not None  # noqa: S101  (called for escalated messages only)
        original, step = new.escalation_of
        cur = await db.execute(
            "UPDATE escalations SET step = ?, next_at = ? + after_s WHERE message_id = ? AND step = ? "
            "AND next_at IS NOT NULL",
            (step, now, original, step - 1),
        )
        if not cur.rowcount:
            raise Conflict(f"escalation step {step} of {original} was taken already")

    async def _escalation_step_accepted(
        self, db: aiosqlite.Connection, new: NewMessage, msg_id: str, now: float
    ) -> None:
        """The claimed step's message `msg_id` was written: record it on the original's timeline."""
        assert new.escalation_of is not None  # noqa: S101  (called for escalated messages only)
        original, step = new.escalation_of
        chain = await self._chain(db, original)
        await self._step_recorded(
            db, original, chain, step, f"{waited_for(chain.spec)}: sent to {new.to} as {msg_id}", msg_id, now
        )

    # ------------------------------------------------------------ the loop's queries
    async def due_escalations(self, now: float, limit: int = 50) -> list[tuple[str, Escalation]]:
        """Chains whose next step is due, oldest due first: (original message id, chain)."""
        rows = await fetch_all(
            self.rdb,
            "SELECT * FROM escalations WHERE next_at IS NOT NULL AND next_at <= ? ORDER BY next_at LIMIT ?",
            (now, limit),
        )
        return [(r["message_id"], escalation_row(r)) for r in rows]

    async def next_escalation_due(self) -> float | None:
        """When the next step or e-mail of any chain is due (None: nothing waits)."""
        row = await fetch_one(
            self.rdb,
            "SELECT min(t) AS t FROM (SELECT min(next_at) AS t FROM escalations WHERE next_at IS NOT NULL "
            "UNION ALL SELECT min(next_at) FROM escalation_mail WHERE sent_at IS NULL AND abandoned_at IS NULL) AS due",
            (),
        )
        return None if row is None or row["t"] is None else float(row["t"])

    async def stop_escalations(self, now: float | None = None) -> list[tuple[str, str]]:
        """End every running chain whose message (or a message it sent) was delivered, was answered
        by its recipient (until=replied), or whose original was canceled: (message id, outcome)."""
        now = time.time() if now is None else now
        # The chain's messages are the original and those it sent (escalated_from).
        rows = await fetch_all(
            self.rdb,
            """SELECT e.message_id, e.until, m.status,
                 (SELECT c.id FROM messages c WHERE (c.id = e.message_id OR c.escalated_from = e.message_id)
                    AND c.status = 'delivered' LIMIT 1) AS delivered_id,
                 (SELECT c.to_number FROM messages c JOIN inbound i ON i.from_number = c.to_number
                    AND i.received_at >= c.created_at
                    WHERE (c.id = e.message_id OR c.escalated_from = e.message_id) LIMIT 1) AS replied_by
               FROM escalations e JOIN messages m ON m.id = e.message_id WHERE e.next_at IS NOT NULL""",
            (),
        )
        endings: list[tuple[str, str, str]] = []
        for r in rows:
            # A reply proves the text was read: it ends a chain waiting for a delivery report too.
            if r["status"] == "canceled":
                endings.append((r["message_id"], "canceled", "the message was canceled"))
            elif r["until"] == "delivered" and r["delivered_id"] is not None:
                endings.append((r["message_id"], "delivered", f"{r['delivered_id']} was delivered"))
            elif r["replied_by"] is not None:
                endings.append((r["message_id"], "replied", f"{r['replied_by']} answered"))
        ended = []
        for msg_id, outcome, detail in endings:
            if await self.end_escalation(msg_id, outcome, detail, now=now):
                ended.append((msg_id, outcome))
        return ended

    async def end_escalation(
        self, msg_id: str, outcome: str, detail: str, *, now: float | None = None
    ) -> bool:
        """End a running chain (no more steps); False when it had ended already."""
        now = time.time() if now is None else now
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE escalations SET next_at = NULL, outcome = ?, ended_at = ? WHERE message_id = ? "
                "AND next_at IS NOT NULL",
                (outcome, now, msg_id),
            )
            if not cur.rowcount:
                return False
            chain = await self._chain(db, msg_id)
            await self._event(db, msg_id, "escalation_ended", None, None, f"{outcome}: {detail}", now)
            await self._escalation_webhook(db, msg_id, chain, {"ended": outcome, "reason": detail}, now)
            return True

    async def skip_escalation_step(self, msg_id: str, step: int, reason: str) -> bool:
        """Step `step` cannot be taken (its number opted out): pass over it, the next one due now."""
        now = time.time()
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE escalations SET step = ?, next_at = ? WHERE message_id = ? AND step = ? AND next_at IS NOT NULL",
                (step, now, msg_id, step - 1),
            )
            if not cur.rowcount:
                return False
            chain = await self._chain(db, msg_id)
            detail = f"step {step} of {len(chain.spec.then)} skipped: {_target_of(chain.spec, step)} {reason}"
            await self._event(db, msg_id, "escalation_skipped", None, None, detail, now)
            return True

    async def defer_escalation(self, msg_id: str, until: float) -> None:
        """The next step could not be taken now (queue full, disk full, quota): try again at `until`."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE escalations SET next_at = ? WHERE message_id = ? AND next_at IS NOT NULL",
                (until, msg_id),
            )

    async def escalate_to_mail(
        self, msg_id: str, first_step: int, addresses: list[str], subject: str, body: str
    ) -> bool:
        """After the numbers: queue an e-mail to each mailto: target (steps first_step..n) and end the
        chain ("emailed"), in one transaction; False when step first_step was taken already."""
        now = time.time()
        async with self._tx() as db:
            last = first_step + len(addresses) - 1
            cur = await db.execute(
                "UPDATE escalations SET step = ?, next_at = NULL, outcome = 'emailed', ended_at = ? "
                "WHERE message_id = ? AND step = ? AND next_at IS NOT NULL",
                (last, now, msg_id, first_step - 1),
            )
            if not cur.rowcount:
                return False
            chain = await self._chain(db, msg_id)
            for step, address in enumerate(addresses, start=first_step):
                await db.execute(
                    "INSERT INTO escalation_mail (message_id, step, address, subject, body, created_at, next_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (msg_id, step, address, subject, body, now, now),
                )
                detail = f"{waited_for(chain.spec)}: e-mail to {address} queued"
                await self._step_recorded(db, msg_id, chain, step, detail, None, now)
            return True

    # ------------------------------------------------------------ the e-mail outbox
    async def due_escalation_mail(self, now: float, limit: int = 10) -> list[EscalationMail]:
        rows = await fetch_all(
            self.rdb,
            "SELECT * FROM escalation_mail WHERE sent_at IS NULL AND abandoned_at IS NULL AND next_at <= ? "
            "ORDER BY next_at LIMIT ?",
            (now, limit),
        )
        return [
            EscalationMail(
                r["id"],
                r["message_id"],
                r["step"],
                r["address"],
                r["subject"],
                r["body"] or "",
                r["attempts"],
                r["created_at"],
            )
            for r in rows
        ]

    async def escalation_mail_result(
        self, item: EscalationMail, *, ok: bool, error: str = "", next_at: float | None = None
    ) -> None:
        """Record an attempt: sent, retried at `next_at` (transient), or given up (next_at None).
        The text is dropped once the e-mail is done with (the message keeps its own copy)."""
        now = time.time()
        async with self._tx(critical=ok) as db:
            if ok:
                await db.execute(
                    "UPDATE escalation_mail SET sent_at = ?, attempts = attempts + 1, last_error = NULL, body = NULL "
                    "WHERE id = ?",
                    (now, item.id),
                )
                detail = f"e-mail to {item.address} sent (step {item.step})"
            elif next_at is None:
                await db.execute(
                    "UPDATE escalation_mail SET abandoned_at = ?, attempts = attempts + 1, last_error = ?, body = NULL "
                    "WHERE id = ?",
                    (now, error, item.id),
                )
                detail = f"e-mail to {item.address} given up (step {item.step}): {error}"
            else:
                await db.execute(
                    "UPDATE escalation_mail SET next_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
                    (next_at, error, item.id),
                )
                if item.attempts > 0:  # the first failure is worth a line in the timeline, not every retry
                    return
                detail = f"e-mail to {item.address} not sent yet (step {item.step}): {error}; retrying"
            await self._event(db, item.message_id, "escalation_mail", None, None, detail, now)

    # ------------------------------------------------------------ helpers
    async def _chain(self, db: aiosqlite.Connection, msg_id: str) -> Escalation:
        row = await fetch_one(db, "SELECT * FROM escalations WHERE message_id = ?", (msg_id,))
        assert row is not None  # noqa: S101  (callers hold a row they just updated)
        return escalation_row(row)

    async def _step_recorded(
        self,
        db: aiosqlite.Connection,
        original: str,
        chain: Escalation,
        step: int,
        detail: str,
        new_msg_id: str | None,
        now: float,
    ) -> None:
        target = _target_of(chain.spec, step)
        await self._event(
            db, original, "escalated", None, None, f"step {step} of {len(chain.spec.then)}: {detail}", now
        )
        data = {
            "step": step,
            "steps": len(chain.spec.then),
            "target": target,
            "channel": "email" if target[:7].lower() == "mailto:" else "sms",
            "message_id": new_msg_id,
            "reason": waited_for(chain.spec),
            "ended": None,
        }
        await self._escalation_webhook(db, original, chain, data, now)

    async def _escalation_webhook(
        self, db: aiosqlite.Connection, original: str, chain: Escalation, data: dict[str, Any], now: float
    ) -> None:
        row = await fetch_one(
            db, "SELECT status_callback, callback_format FROM messages WHERE id = ?", (original,)
        )
        # A Twilio-format callback has no shape for this event: only our own JSON callbacks get it.
        callback = row["status_callback"] if row is not None and row["callback_format"] == "json" else None
        payload = {"id": original, "at": rfc3339(now), "step": chain.step, **data}
        await self._enqueue_webhooks(db, "message.escalated", payload, callback, now)
