"""A message with its parts and events: reading it whole, and changing its state with an event and a webhook."""

from __future__ import annotations

from typing import Any

import aiosqlite

from appliance.ledger.dialect import exact_real, fetch_one, json_rows
from appliance.ledger.models import Message, whole_message
from appliance.ledger.outbox import Outbox
from appliance.ledger.payloads import status_payload
from appliance.states import FINAL, State, check

_ESCALATION_JSON = (
    f"(SELECT json_array(after_s, until, targets, step, {exact_real('next_at')}, outcome, "  # noqa: S608  (fixed text)
    f"{exact_real('ended_at')}) FROM escalations WHERE escalations.message_id = messages.id) AS escalation_json"
)

# A message with its parts and events in one query, for one message or a page of them (one trip
# to the database thread instead of three per message); read by models.whole_message.
WHOLE_MESSAGE = ", ".join(
    (
        "messages.*",
        json_rows(
            "parts",
            "parts.message_id = messages.id",
            (
                "seq",
                "total",
                "status",
                "mr",
                "modem",
                exact_real("submitted_at"),
                "report_status",
                exact_real("report_at"),
            ),
        )
        + " AS parts_json",
        json_rows(
            "events",
            "events.message_id = messages.id",
            ("id", exact_real("at"), "kind", "from_status", "to_status", "detail"),
        )
        + " AS events_json",
        # The escalation chain (ledger/escalations.py), when the message has one.
        _ESCALATION_JSON,
    )
)


class Timeline(Outbox):
    """State changes of one message, each with its `events` row and webhook, in one transaction."""

    async def _get(self, db: aiosqlite.Connection, msg_id: str) -> Message | None:
        row = await fetch_one(db, f"SELECT {WHOLE_MESSAGE} FROM messages WHERE id = ?", (msg_id,))  # noqa: S608  (fixed text)
        return None if row is None else whole_message(row)

    async def _transition(
        self,
        db: aiosqlite.Connection,
        msg: Message,
        new: State,
        kind: str,
        detail: str,
        now: float,
        *,
        error: tuple[str, str] | None = None,
    ) -> None:
        check(msg.status, new)
        sets = ["status = ?", "updated_at = ?"]
        args: list[Any] = [new.value, now]
        if new is State.SENT:
            sets.append("sent_at = ?")
            args.append(now)
        if new is State.DELIVERED:
            sets.append("delivered_at = ?")
            args.append(now)
        if new in FINAL:
            sets.append("final_at = ?")
            args.append(now)
        if error is not None:
            sets += ["error_code = ?", "error_message = ?"]
            args += list(error)
        args.append(msg.id)
        await db.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id = ?", args)  # noqa: S608  (fixed column names)
        await self._event(db, msg.id, kind, msg.status, new, detail, now)
        if self._webhooks or msg.status_callback:  # the payload needs the row as it is now
            updated = await self._get(db, msg.id)
            assert updated is not None  # noqa: S101
            await self._notify(db, updated, now)

    async def _event(
        self,
        db: aiosqlite.Connection,
        msg_id: str,
        kind: str,
        old: State | None,
        new: State | None,
        detail: str,
        now: float,
    ) -> None:
        await db.execute(
            "INSERT INTO events (message_id, at, kind, from_status, to_status, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (msg_id, now, kind, old.value if old else None, new.value if new else None, detail),
        )

    async def _notify(self, db: aiosqlite.Connection, msg: Message, now: float) -> None:
        await self._enqueue_webhooks(
            db,
            "message.status",
            status_payload(msg),
            msg.status_callback,
            now,
            callback_format=msg.callback_format,
        )
