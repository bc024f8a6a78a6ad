"""Data minimisation and compaction: bodies, numbers, metadata and events forgotten on schedule; pages freed."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import aiosqlite

from appliance.ledger.connection import Connection
from appliance.ledger.dialect import fetch_all, fetch_one, marks
from appliance.ledger.models import MASK, Retention

_LOGGER = logging.getLogger(__name__)

PURGE_BATCH = 500  # rows per retention transaction: accepts wait for one batch at most


# A full VACUUM writes a copy of the ledger (and as much WAL) before freeing the old pages: it
# runs only with this many times the ledger's size free on its disk.
VACUUM_ROOM = 1.2


async def delete_messages(db: aiosqlite.Connection, ids: Sequence[str]) -> None:
    """Delete the messages `ids` with every row that names them, in the caller's transaction:
    a text answering one of them stays, no longer linked (retention, and the spool once drained)."""
    if not ids:
        return
    listed = marks(ids)
    for table in ("parts", "events", "idempotency", "escalations", "escalation_mail"):
        await db.execute(f"DELETE FROM {table} WHERE message_id IN ({listed})", ids)  # noqa: S608  (fixed names)
    unlink = f"UPDATE inbound SET in_reply_to = NULL, reply_key_id = NULL WHERE in_reply_to IN ({listed})"  # noqa: S608
    await db.execute(unlink, ids)
    await db.execute(f"DELETE FROM messages WHERE id IN ({listed})", ids)  # noqa: S608


class Purge(Connection):
    """Retention and compaction."""

    async def purge_bodies(self, retention_days: int, idempotency_hours: int) -> int:
        """Data minimisation: bodies of final messages after retention; metadata and events stay."""
        now = time.time()
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE messages SET body = NULL WHERE body IS NOT NULL AND status IN ('delivered','undelivered','failed','canceled','sent') "
                "AND updated_at < ?",
                (now - retention_days * 86400,),
            )
            await db.execute(
                "UPDATE inbound SET body = NULL WHERE body IS NOT NULL AND received_at < ?",
                (now - retention_days * 86400,),
            )
            await db.execute(
                "DELETE FROM idempotency WHERE created_at < ?", (now - idempotency_hours * 3600,)
            )
            await db.execute(
                "DELETE FROM webhook_outbox WHERE (delivered_at IS NOT NULL OR abandoned_at IS NOT NULL) AND created_at < ?",
                (now - retention_days * 86400,),
            )
            return cur.rowcount or 0

    async def purge(self, retention: Retention, *, now: float | None = None) -> dict[str, int]:
        """Data minimisation past the body purge: numbers masked, metadata and events dropped, then
        whole final messages (and inbound texts) deleted, so the ledger stops growing.

        Work goes in batches of PURGE_BATCH rows, each its own transaction, so that accepts
        interleave with a large first purge. Returns rows touched per kind.
        """
        now = time.time() if now is None else now
        done = {
            "numbers": 0,
            "metadata": 0,
            "events": 0,
            "messages": 0,
            "inbound": 0,
            "audit": 0,
            "peer_incidents": 0,
            "balance": 0,
        }
        if retention.numbers_days > 0:
            cutoff = now - retention.numbers_days * 86400
            done["numbers"] = await self._batches(
                "UPDATE messages SET to_number = substr(to_number, 1, 3) || ? WHERE seq IN "
                "(SELECT seq FROM messages WHERE final_at < ? AND to_number NOT LIKE ? LIMIT ?)",
                (MASK, cutoff, f"%{MASK}"),
            )
            # A masked text answers no message any more, nor does a text answering a masked message:
            # the link would tell the masked number (threads.py).
            done["numbers"] += await self._batches(
                "UPDATE inbound SET from_number = substr(from_number, 1, 3) || ?, in_reply_to = NULL, reply_key_id = NULL "
                "WHERE seq IN "
                "(SELECT seq FROM inbound WHERE received_at < ? AND from_number NOT LIKE ? LIMIT ?)",
                (MASK, cutoff, f"%{MASK}"),
            )
            await self._batches(
                "UPDATE inbound SET in_reply_to = NULL, reply_key_id = NULL WHERE seq IN (SELECT i.seq FROM inbound i "
                "JOIN messages m ON m.id = i.in_reply_to WHERE i.in_reply_to IS NOT NULL AND m.to_number LIKE ? LIMIT ?)",
                (f"%{MASK}",),
            )
            # An ended escalation chain's numbers (its mailto: targets are the operator's own). Only a
            # chain with a number left to mask: one of mailto: targets alone would match every batch
            # again, and 500 of them kept this loop going for ever.
            done["numbers"] += await self._batches(
                "UPDATE escalations SET targets = (SELECT json_group_array(iif(substr(value, 1, 7) = 'mailto:', "
                "value, substr(value, 1, 3) || ?)) FROM json_each(escalations.targets)) WHERE message_id IN "
                "(SELECT message_id FROM escalations WHERE ended_at < ? AND EXISTS (SELECT 1 FROM "
                "json_each(escalations.targets) WHERE substr(value, 1, 7) != 'mailto:' AND value NOT LIKE ?) LIMIT ?)",
                (MASK, cutoff, f"%{MASK}"),
            )
            done["numbers"] += await self._batches(
                "DELETE FROM unmatched_reports WHERE id IN "
                "(SELECT id FROM unmatched_reports WHERE received_at < ? LIMIT ?)",
                (cutoff,),
            )
        if retention.metadata_days > 0:
            done["metadata"] = await self._batches(
                "UPDATE messages SET metadata = NULL, status_callback = NULL WHERE seq IN "
                "(SELECT seq FROM messages WHERE final_at < ? "
                "AND (metadata IS NOT NULL OR status_callback IS NOT NULL) LIMIT ?)",
                (now - retention.metadata_days * 86400,),
            )
            # Balance checks (ledger/balance.py) go too, but each modem's latest, and latest amount, stay
            # (per box: boxes of a fleet may name their modems alike, and each watchdog reads its own).
            done["balance"] = await self._batches(
                "DELETE FROM sim_balance WHERE rowid IN (SELECT b.rowid FROM sim_balance b WHERE b.at < ? "
                "AND b.at < (SELECT max(at) FROM sim_balance s WHERE s.modem = b.modem "
                "AND coalesce(s.box, '') = coalesce(b.box, '')) "
                "AND NOT (b.ok = 1 AND b.at = (SELECT max(at) FROM sim_balance s "
                "WHERE s.modem = b.modem AND coalesce(s.box, '') = coalesce(b.box, '') AND s.ok = 1)) LIMIT ?)",
                (now - retention.metadata_days * 86400,),
            )
        if retention.events_days > 0:
            done["events"] = await self._batches(
                "DELETE FROM events WHERE id IN (SELECT e.id FROM messages m JOIN events e "
                "ON e.message_id = m.id WHERE m.final_at < ? LIMIT ?)",
                (now - retention.events_days * 86400,),
            )
        if retention.messages_days > 0:
            cutoff = now - retention.messages_days * 86400
            done["messages"] = await self._delete_messages(cutoff)
            done["inbound"] = await self._batches(
                "DELETE FROM inbound WHERE seq IN (SELECT seq FROM inbound WHERE received_at < ? LIMIT ?)",
                (cutoff,),
            )
        if retention.audit_days > 0:
            cutoff = now - retention.audit_days * 86400
            done["audit"] = await self._batches(
                "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE at < ? LIMIT ?)",
                (cutoff,),
            )
            # A watchdog's claim on a silent fleet peer (watchdog/peers.py) is a fact of the same
            # kind (which watchdog texted, when): it goes as old, once resolved. An open claim stays:
            # its watchdog still answers for that silence.
            done["peer_incidents"] = await self._batches(
                "DELETE FROM peer_incidents WHERE rowid IN "
                "(SELECT rowid FROM peer_incidents WHERE resolved_at < ? LIMIT ?)",
                (cutoff,),
            )
        if any(done.values()):
            _LOGGER.info("retention: %s", ", ".join(f"{n} {k}" for k, n in done.items() if n))
        return done

    async def _batches(self, sql: str, args: tuple[Any, ...]) -> int:
        total = 0
        while True:
            async with self._tx() as db:
                cur = await db.execute(sql, (*args, PURGE_BATCH))
                n = cur.rowcount or 0
            total += n
            if n < PURGE_BATCH:
                return total

    async def _delete_messages(self, cutoff: float) -> int:
        total = 0
        while True:
            async with self._tx() as db:
                rows = await fetch_all(
                    db,
                    "SELECT id FROM messages WHERE final_at < ? ORDER BY final_at LIMIT ?",
                    (cutoff, PURGE_BATCH),
                )
                ids = [r["id"] for r in rows]
                await delete_messages(db, ids)
            total += len(ids)
            if len(ids) < PURGE_BATCH:
                return total

    async def compact(self, *, max_pages: int = 4096) -> int:
        """Give free pages back to the file system; returns the pages freed.

        Ledgers made since schema 3 use incremental vacuum (a few thousand pages at a time,
        cheap); an older one is converted by one full VACUUM once a quarter of it is free and the
        disk has room for the copy VACUUM writes (VACUUM_ROOM x the ledger): it holds every
        write meanwhile, and would fail half-way on a nearly full disk. A failure is one log line.
        """
        try:
            return await self._compact(max_pages)
        except sqlite3.Error as exc:
            # VACUUM rolls back whole (a disk filled by its copy is free again): retried next period.
            _LOGGER.warning("ledger: compaction failed (retried later): %s", exc)
            return 0

    async def _compact(self, max_pages: int) -> int:
        mode_row = await fetch_one(self.db, "PRAGMA auto_vacuum", ())
        free_row = await fetch_one(self.db, "PRAGMA freelist_count", ())
        pages_row = await fetch_one(self.db, "PRAGMA page_count", ())
        size_row = await fetch_one(self.db, "PRAGMA page_size", ())
        mode = int(mode_row[0]) if mode_row else 0
        free = int(free_row[0]) if free_row else 0
        pages = int(pages_row[0]) if pages_row else 0
        if free == 0:
            return 0
        async with self._write_lock:
            if mode == 2:  # INCREMENTAL
                await self.db.execute_fetchall(f"PRAGMA incremental_vacuum({int(max_pages)})")
                return min(free, max_pages)
            if free * 4 < pages:
                return 0
            size = pages * (int(size_row[0]) if size_row else 4096)
            room = await asyncio.to_thread(self._reserve.free_bytes) if self._reserve is not None else None
            if room is not None and room <= VACUUM_ROOM * size:
                _LOGGER.info(
                    "ledger: %d of %d pages free, but only %d KiB free on its disk for a %d KiB VACUUM: "
                    "not compacted",
                    free,
                    pages,
                    room // 1024,
                    size // 1024,
                )
                return 0
            _LOGGER.warning(
                "ledger: %d of %d pages free: one VACUUM (and incremental from now on)", free, pages
            )
            await self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            await self.db.execute("VACUUM")
            return free
