"""Received SMS: parts reassembled, whole texts stored (threaded to the message they answer), STOP/START opt-outs."""

from __future__ import annotations

import time
from typing import Any

import aiosqlite

from appliance.ledger.connection import vital
from appliance.ledger.dialect import fetch_all, fetch_one, page_query
from appliance.ledger.models import REPLY_WINDOW_S, Inbound, inbound_row, new_id
from appliance.ledger.outbox import Outbox
from appliance.ledger.payloads import inbound_payload
from appliance.ledger.threads import THREADED_TO_KEY, reply_target

# The parts of one concatenated message (a fixed clause; only values are bound).
_PARTS_KEY = "sender = ? AND ref_bits = ? AND ref = ? AND total = ?"


class Received(Outbox):
    """Inbound texts and opt-outs."""

    @vital  # a routed SMS (+CMT) not committed is gone; a stored one would fill the SIM
    async def add_inbound_part(
        self,
        *,
        sender: str,
        encoding: str,
        user_data: bytes,
        ref: int | None,
        total: int,
        seq: int,
        sent_at: float | None,
        join: Any,
        keyword_of: Any,
        seal: Any = None,
        ref_bits: int = 8,
        reply_window_s: float = REPLY_WINDOW_S,
    ) -> Inbound | None:
        """Commit one received part; returns the whole message once every part is here.

        Parts belong together by sender, reference width (8 or 16 bits: TS 23.040 9.2.3.24.1
        and .8 are different IEs, so 8-bit 42 and 16-bit 42 are two messages), reference and
        total. `join(encoding, [user_data...]) -> str` decodes the joined parts (UCS-2 surrogate
        pairs may be split across parts); `keyword_of(text) -> str|None` spots STOP/START;
        `seal(sender, text) -> (body, command_digest)` redacts an on-call command before it is stored;
        the whole text is threaded to the message it answers within `reply_window_s` (threads.py).
        """
        now = time.time()
        async with self._tx(critical=True) as db:
            if ref is None or total <= 1:
                text = join(encoding, [user_data])
                return await self._commit_inbound(
                    db, sender, encoding, text, 1, 1, True, sent_at, now, keyword_of, seal, reply_window_s
                )
            key = (sender, ref_bits, ref, total)
            await db.execute(
                "INSERT OR IGNORE INTO inbound_parts "
                "(sender, ref_bits, ref, total, seq, encoding, user_data, sent_at, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, seq, encoding, user_data, sent_at, now),
            )
            rows = await fetch_all(db, f"SELECT * FROM inbound_parts WHERE {_PARTS_KEY} ORDER BY seq", key)  # noqa: S608
            if len(rows) < total:
                return None
            text = join(rows[0]["encoding"], [bytes(r["user_data"]) for r in rows])
            await db.execute(f"DELETE FROM inbound_parts WHERE {_PARTS_KEY}", key)  # noqa: S608
            first_sent = min((r["sent_at"] for r in rows if r["sent_at"] is not None), default=None)
            return await self._commit_inbound(
                db,
                sender,
                rows[0]["encoding"],
                text,
                total,
                total,
                True,
                first_sent,
                now,
                keyword_of,
                seal,
                reply_window_s,
            )

    async def flush_stale_inbound(
        self,
        timeout_s: float,
        *,
        join: Any,
        keyword_of: Any,
        seal: Any = None,
        now: float | None = None,
        reply_window_s: float = REPLY_WINDOW_S,
    ) -> list[Inbound]:
        """Multipart messages missing parts after timeout_s: keep what arrived, marked incomplete."""
        now = time.time() if now is None else now
        out: list[Inbound] = []
        async with self._tx() as db:
            groups = await fetch_all(
                db,
                "SELECT sender, ref_bits, ref, total, min(received_at) AS first FROM inbound_parts "
                "GROUP BY sender, ref_bits, ref, total HAVING min(received_at) <= ?",
                (now - timeout_s,),
            )
            for g in groups:
                key = (g["sender"], g["ref_bits"], g["ref"], g["total"])
                sql = f"SELECT * FROM inbound_parts WHERE {_PARTS_KEY} ORDER BY seq"  # noqa: S608
                rows = await fetch_all(db, sql, key)
                pieces = [join(r["encoding"], [bytes(r["user_data"])]) for r in rows]
                text = " […] ".join(pieces)
                await db.execute(f"DELETE FROM inbound_parts WHERE {_PARTS_KEY}", key)  # noqa: S608
                first_sent = min((r["sent_at"] for r in rows if r["sent_at"] is not None), default=None)
                out.append(
                    await self._commit_inbound(
                        db,
                        g["sender"],
                        rows[0]["encoding"],
                        text,
                        len(rows),
                        g["total"],
                        False,
                        first_sent,
                        now,
                        keyword_of,
                        seal,
                        reply_window_s,
                    )
                )
        return out

    async def _commit_inbound(
        self,
        db: aiosqlite.Connection,
        sender: str,
        encoding: str,
        text: str,
        parts: int,
        expected: int,
        complete: bool,
        sent_at: float | None,
        now: float,
        keyword_of: Any,
        seal: Any = None,
        reply_window_s: float = REPLY_WINDOW_S,
    ) -> Inbound:
        inbound_id = new_id("in")
        in_reply_to, reply_key_id = await reply_target(db, sender, now, reply_window_s)
        keyword = keyword_of(text) if complete else None
        body, command_digest = seal(sender, text) if seal is not None else (text, None)
        if not complete:
            command_digest = None  # a command is one whole SMS
        await db.execute(
            "INSERT INTO inbound (id, from_number, body, encoding, parts, parts_expected, complete, sent_at, received_at, keyword, command_digest, in_reply_to, reply_key_id, box) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                inbound_id,
                sender,
                body,
                encoding,
                parts,
                expected,
                int(complete),
                sent_at,
                now,
                keyword,
                command_digest,
                in_reply_to,
                reply_key_id,
                self.box,  # the box whose modem got it: its watchdog reads it with its own key
            ),
        )
        if keyword == "stop":
            await db.execute(
                "INSERT INTO optouts (number, at, keyword) VALUES (?, ?, ?) "
                "ON CONFLICT(number) DO UPDATE SET at = excluded.at, keyword = excluded.keyword",
                (sender, now, text.strip()[:20]),
            )
        elif keyword == "start":
            await db.execute("DELETE FROM optouts WHERE number = ?", (sender,))
        row = await fetch_one(db, "SELECT * FROM inbound WHERE id = ?", (inbound_id,))
        assert row is not None  # noqa: S101
        inbound = inbound_row(row)
        await self._enqueue_webhooks(db, "message.received", inbound_payload(inbound), None, now)
        return inbound

    async def list_inbound(
        self,
        *,
        since: float | None = None,
        limit: int = 50,
        before_seq: int | None = None,
        replies_to_key: int | None = None,
        from_suffix: str | None = None,
    ) -> list[Inbound]:
        """Newest first. `replies_to_key`: only texts threaded to a message sent with that key
        (`in_reply_to`, threads.py): a `read` key sees the replies to its own messages."""
        sql, args = page_query(
            "inbound",
            [
                ("received_at >= ?", since),
                ("from_number LIKE ?", None if from_suffix is None else f"%{from_suffix}"),
                ("seq < ?", before_seq),
                (THREADED_TO_KEY, replies_to_key),
            ],
            limit,
        )
        return [inbound_row(r) for r in await fetch_all(self.rdb, sql, args)]

    async def is_opted_out(self, number: str) -> bool:
        return await fetch_one(self.rdb, "SELECT 1 FROM optouts WHERE number = ?", (number,)) is not None
