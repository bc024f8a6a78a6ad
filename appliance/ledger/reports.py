"""Status reports: matched to parts by reference, recipient and time; lost ones expired."""

from __future__ import annotations

import time

import aiosqlite

from appliance.ledger.connection import vital
from appliance.ledger.dialect import SKIP_LOCKED, fetch_all
from appliance.ledger.models import ReportOutcome
from appliance.ledger.timeline import Timeline
from appliance.states import PartState, State


class Reports(Timeline):
    """What the network said about parts sent."""

    @vital
    async def apply_report(
        self, mr: int, recipient: str, status: int, *, at: float | None = None
    ) -> ReportOutcome:
        """Match a status report to a part by MR, recipient and time window; monotonic."""
        now = time.time() if at is None else at
        async with self._tx(critical=True) as db:
            outcome = await self._apply_report(db, mr, recipient, status, now)
            if not outcome.matched:
                await db.execute(
                    "INSERT INTO unmatched_reports (mr, recipient, status, received_at, box) VALUES (?, ?, ?, ?, ?)",
                    (mr, recipient, status, now, self.box),
                )
            return outcome

    async def _apply_report(
        self, db: aiosqlite.Connection, mr: int, recipient: str, status: int, now: float
    ) -> ReportOutcome:
        from modem import same_subscriber  # noqa: PLC0415  (pure helper; the store stays modem-free otherwise)
        from modem.pdu import TpStatus  # noqa: PLC0415

        # References wrap at 256 and other software shares the modem: match on MR, recipient
        # and a window (Gammu smsd: DeliveryReportDelay 600 s; we allow days for late reports).
        # In a fleet a report is about a part this box's modem submitted (each modem counts its own
        # MRs): another box's part with the same MR and recipient is not a candidate.
        mine, box = self.mine("p.box")
        rows = await fetch_all(
            db,
            "SELECT p.message_id, p.seq, p.status, m.to_number FROM parts p JOIN messages m ON m.id = p.message_id "  # noqa: S608  (fixed text)
            f"WHERE p.mr = ? AND p.submitted_at >= ?{mine} ORDER BY p.submitted_at DESC LIMIT 20",
            (mr, now - 7 * 86400, *box),
        )
        row = next((r for r in rows if same_subscriber(r["to_number"], recipient)), None)
        if row is None:
            return ReportOutcome(matched=False, note="no part with this reference and recipient")
        st = TpStatus(status)
        msg_id, seq = row["message_id"], row["seq"]
        part_state = PartState(row["status"])
        if part_state in (PartState.DELIVERED, PartState.UNDELIVERED):
            await self._event(
                db,
                msg_id,
                "report_ignored",
                None,
                None,
                f"part {seq}: late or duplicate report ({st.meaning}) after final",
                now,
            )
            return ReportOutcome(matched=True, message_id=msg_id, changed=False, note="duplicate")
        if not st.is_final:
            await db.execute(
                "UPDATE parts SET report_status = ?, report_at = ? WHERE message_id = ? AND seq = ?",
                (status, now, msg_id, seq),
            )
            await self._event(
                db,
                msg_id,
                "report",
                None,
                None,
                f"part {seq}: {st.meaning} (0x{status:02X}), network still trying",
                now,
            )
            return ReportOutcome(matched=True, message_id=msg_id, changed=False, note="intermediate")
        new_part = PartState.DELIVERED if st.is_success else PartState.UNDELIVERED
        await db.execute(
            "UPDATE parts SET status = ?, report_status = ?, report_at = ? WHERE message_id = ? AND seq = ?",
            (new_part.value, status, now, msg_id, seq),
        )
        await self._event(db, msg_id, "report", None, None, f"part {seq}: {st.meaning} (0x{status:02X})", now)
        msg = await self._get(db, msg_id)
        assert msg is not None  # noqa: S101
        if msg.status is State.SENT:
            states = [p.status for p in msg.parts]
            if any(s is PartState.UNDELIVERED for s in states):
                await self._transition(
                    db,
                    msg,
                    State.UNDELIVERED,
                    "undelivered",
                    f"part {seq} not delivered: {st.meaning}",
                    now,
                    error=(f"tp_status_{status:02x}", st.meaning),
                )
            elif all(s is PartState.DELIVERED for s in states):
                await self._transition(db, msg, State.DELIVERED, "delivered", "all parts delivered", now)
        return ReportOutcome(matched=True, message_id=msg_id, changed=True)

    async def expire_reports(self, timeout_s: float, *, now: float | None = None) -> int:
        """Messages `sent` with no final report after timeout_s: marked final without delivery proof."""
        now = time.time() if now is None else now
        async with self._tx() as db:
            rows = await fetch_all(
                db,
                f"SELECT id FROM messages WHERE status = 'sent' AND report_expired = 0 AND sent_at <= ?{SKIP_LOCKED}",  # noqa: S608
                (now - timeout_s,),
            )
            for row in rows:
                await db.execute(
                    "UPDATE messages SET report_expired = 1, final_at = ?, updated_at = ? WHERE id = ?",
                    (now, now, row["id"]),
                )
                await self._event(
                    db,
                    row["id"],
                    "report_timeout",
                    None,
                    None,
                    f"status report lost: none within {timeout_s / 3600:g} h; final as sent, delivery unconfirmed",
                    now,
                )
            if rows:
                await db.execute(
                    "INSERT INTO counters (name, value) VALUES ('reports_lost', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = counters.value + excluded.value",
                    (len(rows),),
                )
            await db.execute("DELETE FROM unmatched_reports WHERE received_at < ?", (now - 7 * 86400,))
            return len(rows)
