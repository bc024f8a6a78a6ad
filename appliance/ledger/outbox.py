"""Webhooks waiting to be delivered (the outbox): queued in the transaction of the change they report."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from appliance.ledger.connection import Connection
from appliance.ledger.dialect import fetch_all, fetch_one, not_in
from appliance.ledger.models import OutboxItem, new_id, webhook_target
from appliance.ledger.payloads import rfc3339


class Outbox(Connection):
    """The webhook outbox: per-target queues, attempts, backlog."""

    async def _enqueue_webhooks(
        self,
        db: aiosqlite.Connection,
        event_type: str,
        data: dict[str, Any],
        callback: str | None,
        now: float,
        *,
        callback_format: str = "json",
    ) -> None:
        await self._enqueue_many(db, [(event_type, data, callback, callback_format)], now)

    async def _enqueue_many(
        self,
        db: aiosqlite.Connection,
        events: Sequence[tuple[str, dict[str, Any], str | None, str]],
        now: float,
    ) -> None:
        """Queue each (type, data, status_callback, its format) for the configured targets and its
        callback, in order; one insert for all (a batch of 1,000 accepts is one trip, not 2,000)."""
        rows: list[tuple[Any, ...]] = []
        due: dict[str, float] = {}  # target -> when its new webhooks are due
        for event_type, data, callback, callback_format in events:
            targets = [(t.url, t.secret, "json") for t in self._webhooks if event_type in t.events]
            if callback:
                targets.append((callback, "", callback_format))
            for url, secret, fmt in targets:
                payload = json.dumps(
                    {"type": event_type, "timestamp": rfc3339(now), "data": data},
                    separators=(",", ":"),
                    ensure_ascii=False,
                )
                target = webhook_target(url)
                if target not in due:
                    # Behind a target that is failing (its queue's head deferred): wait with its queue.
                    row = await fetch_one(
                        db,
                        "SELECT next_attempt_at AS t FROM webhook_outbox WHERE target = ? "
                        "AND delivered_at IS NULL AND abandoned_at IS NULL ORDER BY id LIMIT 1",
                        (target,),
                    )
                    due[target] = (
                        max(now, float(row["t"])) if row is not None and row["t"] is not None else now
                    )
                rows.append((new_id("wh"), url, secret, event_type, payload, now, due[target], target, fmt))
        if rows:
            self._outbox_pending = True
            await db.executemany(
                "INSERT INTO webhook_outbox (webhook_id, url, secret, type, payload, created_at, next_attempt_at, "
                "target, format) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    async def due_webhook_targets(self, now: float, *, busy: Iterable[str] = (), limit: int = 8) -> list[str]:
        """Targets with a webhook due, those never failing first, oldest first; `busy` left out."""
        busy = list(busy)
        sql = (
            "SELECT target FROM webhook_outbox WHERE delivered_at IS NULL AND abandoned_at IS NULL "  # noqa: S608
            f"AND next_attempt_at <= ?{not_in('target', busy)} "
            "GROUP BY target ORDER BY max(attempts), min(id) LIMIT ?"
        )
        rows = await fetch_all(self.rdb, sql, (now, *busy, limit))
        return [r["target"] for r in rows]

    async def due_webhooks(
        self, now: float, limit: int = 20, *, target: str | None = None
    ) -> list[OutboxItem]:
        where = "delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= ?"
        args: list[Any] = [now]
        if target is not None:
            where += " AND target = ?"
            args.append(target)
        rows = await fetch_all(
            self.rdb,
            f"SELECT * FROM webhook_outbox WHERE {where} ORDER BY id LIMIT ?",  # noqa: S608  (fixed text)
            (*args, limit),
        )
        return [
            OutboxItem(
                r["id"],
                r["webhook_id"],
                r["url"],
                r["secret"],
                r["type"],
                r["payload"],
                r["created_at"],
                r["attempts"],
                r["target"],
                r["format"],
            )
            for r in rows
        ]

    async def next_webhook_due(self, *, busy: Iterable[str] = ()) -> float | None:
        busy = list(busy)
        sql = (
            "SELECT min(next_attempt_at) AS t FROM webhook_outbox "  # noqa: S608  (placeholders only)
            f"WHERE delivered_at IS NULL AND abandoned_at IS NULL{not_in('target', busy)}"
        )
        row = await fetch_one(self.rdb, sql, busy)
        return None if row is None or row["t"] is None else float(row["t"])

    async def defer_webhook_target(self, target: str, until: float, *, abandon_before: float) -> int:
        """A target failed: its whole queue waits until `until`; what is older than the window is abandoned."""
        now = time.time()
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE webhook_outbox SET abandoned_at = ?, last_error = coalesce(last_error, 'target down') "
                "WHERE target = ? AND delivered_at IS NULL AND abandoned_at IS NULL AND created_at < ?",
                (now, target, abandon_before),
            )
            await db.execute(
                "UPDATE webhook_outbox SET next_attempt_at = max(next_attempt_at, ?) "
                "WHERE target = ? AND delivered_at IS NULL AND abandoned_at IS NULL",
                (until, target),
            )
            return cur.rowcount or 0

    async def webhook_result(
        self, item_id: int, *, ok: bool, error: str = "", next_at: float | None = None
    ) -> None:
        """Record an attempt. A delivery is marked done even on a full disk (critical, a tiny
        update, no reserve given up): unmarked, the receiver would get it again later."""
        now = time.time()
        async with self._tx(critical=ok) as db:
            if ok:
                await db.execute(
                    "UPDATE webhook_outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
                    (now, item_id),
                )
            elif next_at is None:
                await db.execute(
                    "UPDATE webhook_outbox SET abandoned_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
                    (now, error, item_id),
                )
            else:
                await db.execute(
                    "UPDATE webhook_outbox SET next_attempt_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
                    (next_at, error, item_id),
                )

    async def webhook_backlog(self) -> int:
        row = await fetch_one(
            self.rdb,
            "SELECT count(*) AS n FROM webhook_outbox WHERE delivered_at IS NULL AND abandoned_at IS NULL",
            (),
        )
        return int(row["n"]) if row else 0
