"""What the daemon says about itself: heartbeats, modem samples, queue stats, quarantined PDUs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from appliance.ledger.connection import Connection, vital
from appliance.ledger.dialect import fetch_all, fetch_one, page_query
from appliance.ledger.models import Quarantined, Stats, new_id, quarantined_row


@dataclass(frozen=True)
class ModemTraffic:
    """One modem's share of the sending, from the ledger (what the page and /metrics show per modem)."""

    sent: int = 0  # messages this modem completed (their last part) since the window start
    parts: int = 0  # parts it handed to the network since the window start
    failed: int = 0  # messages last tried on it that ended failed or undelivered since the window start
    in_flight: int = 0  # messages it holds now (`sending`)
    last_sent_at: float | None = None  # its latest part accepted by the network within the lookback


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
                "progress_at = CASE WHEN ? = 1 THEN excluded.at ELSE heartbeats.progress_at END",
                (name, now, now if progress else None, detail, int(progress)),
            )

    async def add_modem_sample(
        self,
        modem: str,
        state: str,
        registered: bool,
        signal_dbm: int | None,
        operator: str,
        *,
        at: float | None = None,
    ) -> None:
        """One sample of a modem of this box (`box`: each box's watchdog reads its own, migration 17)."""
        now = time.time() if at is None else at
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO modem_samples (at, modem, state, registered, signal_dbm, operator, box) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now, modem, state, int(registered), signal_dbm, operator, self.box),
            )
            await db.execute("DELETE FROM modem_samples WHERE at < ?", (now - 8 * 86400,))

    async def per_bucket(
        self, column: Literal["sent_at", "delivered_at"], start: float, end: float, bucket_s: int
    ) -> list[tuple[int, int]]:
        """(bucket, messages) with `column` in [start, end], bucket 0 starting at `start`."""
        # Walks an index range (messages_sent_at / messages_delivered_at), not the table.
        rows = await fetch_all(
            self.rdb,
            f'SELECT CAST(("{column}" - ?) / ? AS INTEGER) AS b, count(*) AS n FROM messages '  # noqa: S608  (fixed column names)
            f'WHERE "{column}" >= ? AND "{column}" <= ? GROUP BY b',
            (start, bucket_s, start, end),
        )
        return [(int(r["b"]), int(r["n"])) for r in rows]

    async def signal_buckets(self, start: float, bucket_s: int) -> list[tuple[str, float, int | None]]:
        """(modem, last sample time, mean signal in dBm) per modem and bucket since `start`, in order."""
        rows = await fetch_all(
            self.rdb,
            "SELECT modem, CAST((at - ?) / ? AS INTEGER) AS b, max(at) AS t, avg(signal_dbm) AS dbm "
            "FROM modem_samples WHERE at >= ? GROUP BY modem, b ORDER BY modem, b",
            (start, bucket_s, start),
        )
        return [
            (str(r["modem"]), float(r["t"]), None if r["dbm"] is None else round(float(r["dbm"])))
            for r in rows
        ]

    async def per_modem(self, since: float, lookback: float) -> dict[str, ModemTraffic]:
        """Per modem name: sent, parts and failed since `since`, in flight now, last send since `lookback`.

        Plain SQL both backends run: CASE sums, no SQLite-only function; each term walks an index
        range (messages_sent_at, messages_final_at, messages_status, parts_submitted_at)."""
        # In a fleet, this box's modems only (boxes may name theirs alike); box NULL: before fleets.
        mine, box_arg = self.mine()
        rows = await fetch_all(
            self.rdb,
            "SELECT modem, "  # noqa: S608  (fixed clauses)
            "sum(CASE WHEN sent_at >= ? THEN 1 ELSE 0 END) AS sent, "
            "sum(CASE WHEN final_at >= ? AND status IN ('failed', 'undelivered') THEN 1 ELSE 0 END) AS failed, "
            "sum(CASE WHEN status = 'sending' THEN 1 ELSE 0 END) AS in_flight "
            f"FROM messages WHERE modem IS NOT NULL{mine} "
            "AND (sent_at >= ? OR final_at >= ? OR status = 'sending') GROUP BY modem",
            (since, since, *box_arg, since, since),
        )
        parts = await fetch_all(
            self.rdb,
            "SELECT modem, sum(CASE WHEN submitted_at >= ? THEN 1 ELSE 0 END) AS n, max(submitted_at) AS last "  # noqa: S608
            f"FROM parts WHERE submitted_at >= ? AND modem IS NOT NULL{mine} GROUP BY modem",
            (since, min(since, lookback), *box_arg),
        )
        counts = {str(r["modem"]): r for r in rows}
        recent = {str(r["modem"]): r for r in parts}
        traffic: dict[str, ModemTraffic] = {}
        for name in sorted(counts.keys() | recent.keys()):
            c, p = counts.get(name), recent.get(name)
            traffic[name] = ModemTraffic(
                sent=int(c["sent"] or 0) if c is not None else 0,
                parts=int(p["n"] or 0) if p is not None else 0,
                failed=int(c["failed"] or 0) if c is not None else 0,
                in_flight=int(c["in_flight"] or 0) if c is not None else 0,
                last_sent_at=float(p["last"]) if p is not None and p["last"] is not None else None,
            )
        return traffic

    async def stats(self) -> Stats:
        stats = Stats()
        for status_row in await fetch_all(
            self.rdb, "SELECT status, count(*) AS n FROM messages GROUP BY status"
        ):
            stats.by_status[status_row["status"]] = int(status_row["n"])
        # The view the watchdog reads too (migration 9): "oldest queued" has one definition.
        row = await fetch_one(self.rdb, "SELECT oldest_queued_at, last_sent_at FROM queue_facts", ())
        if row is not None:
            stats.oldest_queued_at = (
                None if row["oldest_queued_at"] is None else float(row["oldest_queued_at"])
            )
            stats.last_sent_at = None if row["last_sent_at"] is None else float(row["last_sent_at"])
        # The counters in one trip to the reader's thread (three trips were a third of this call).
        row = await fetch_one(
            self.rdb,
            "SELECT (SELECT value FROM counters WHERE name = 'ambiguous_parts') AS ambiguous, "
            "(SELECT value FROM counters WHERE name = 'reports_lost') AS lost, "
            "(SELECT count(*) FROM quarantine) AS quarantined",
            (),
        )
        if row is not None:
            stats.ambiguous_total = int(row["ambiguous"] or 0)
            stats.reports_lost_total = int(row["lost"] or 0)
            stats.quarantined_total = int(row["quarantined"] or 0)
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
