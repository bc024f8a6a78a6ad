"""What the daemon says about itself: heartbeats, modem samples, queue stats, quarantined PDUs."""

from __future__ import annotations

import time

from appliance.ledger.connection import Connection, vital
from appliance.ledger.dialect import fetch_all, fetch_one, page_query
from appliance.ledger.models import Quarantined, Stats, new_id, quarantined_row


class Telemetry(Connection):
    """Heartbeats, samples, stats and the quarantine."""

    # ------------------------------------------------------- status and samples
    async def heartbeat(self, name: str, *, progress: bool, detail: str = "") -> None:
        """Written every few seconds; the watchdog reads it to know the daemon lives.

        Critical (a tiny row): on a full disk the daemon still lives, answering 507, and the
        watchdog must not page a stale heartbeat for it; not vital (no reserve given up for it)."""
        now = time.time()
        async with self._tx(critical=True) as db:
            await db.execute(
                "INSERT INTO heartbeats (name, at, progress_at, detail) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET at = excluded.at, detail = excluded.detail, "
                "progress_at = CASE WHEN ? THEN excluded.at ELSE heartbeats.progress_at END",
                (name, now, now if progress else None, detail, int(progress)),
            )

    async def add_modem_sample(
        self, modem: str, state: str, registered: bool, signal_dbm: int | None, operator: str
    ) -> None:
        now = time.time()
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO modem_samples (at, modem, state, registered, signal_dbm, operator) VALUES (?, ?, ?, ?, ?, ?)",
                (now, modem, state, int(registered), signal_dbm, operator),
            )
            await db.execute("DELETE FROM modem_samples WHERE at < ?", (now - 8 * 86400,))

    async def stats(self) -> Stats:
        stats = Stats()
        for status_row in await fetch_all(
            self.rdb, "SELECT status, count(*) AS n FROM messages GROUP BY status"
        ):
            stats.by_status[status_row["status"]] = int(status_row["n"])
        row = await fetch_one(
            self.rdb,
            "SELECT min(max(created_at, coalesce(send_at, created_at))) AS t FROM messages "
            "WHERE status IN ('queued', 'sending')",
            (),
        )
        stats.oldest_queued_at = None if row is None or row["t"] is None else float(row["t"])
        row = await fetch_one(self.rdb, "SELECT max(submitted_at) AS t FROM parts", ())
        stats.last_sent_at = None if row is None or row["t"] is None else float(row["t"])
        row = await fetch_one(self.rdb, "SELECT value FROM counters WHERE name = 'ambiguous_parts'", ())
        stats.ambiguous_total = int(row["value"]) if row else 0
        row = await fetch_one(self.rdb, "SELECT value FROM counters WHERE name = 'reports_lost'", ())
        stats.reports_lost_total = int(row["value"]) if row else 0
        row = await fetch_one(self.rdb, "SELECT count(*) AS n FROM quarantine", ())
        stats.quarantined_total = int(row["n"]) if row else 0
        return stats

    # -------------------------------------------------------------- quarantine
    @vital
    async def quarantine(
        self, *, port: str, memory: str, index: int | None, pdu: str, reason: str, at: float | None = None
    ) -> Quarantined:
        """Keep an undecodable PDU (committed before the modem deletes it); the same slot twice is one row.

        Vital: a routed PDU acknowledged by the modem is gone from the network, and a stored one
        is deleted from the SIM once this returns."""
        now = time.time() if at is None else at
        async with self._tx(critical=True) as db:
            await db.execute(
                "INSERT OR IGNORE INTO quarantine (id, at, port, memory, idx, pdu, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (new_id("pdu"), now, port, memory, index, pdu, reason),
            )
            row = await fetch_one(
                db,
                "SELECT * FROM quarantine WHERE port = ? AND memory = ? AND idx IS ? AND pdu = ? "
                "ORDER BY seq DESC LIMIT 1",
                (port, memory, index, pdu),
            )
        assert row is not None  # noqa: S101
        return quarantined_row(row)

    async def list_quarantine(self, *, limit: int = 50, before_seq: int | None = None) -> list[Quarantined]:
        sql, args = page_query("quarantine", [("seq < ?", before_seq)], limit)
        return [quarantined_row(r) for r in await fetch_all(self.rdb, sql, args)]
