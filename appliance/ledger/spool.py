"""The local spool of a box whose ledger is on PostgreSQL: accepting while the server is unreachable.

While the server does not answer (connection refused, reset, timed out: `LedgerUnreachable`), new
messages are committed to a local SQLite ledger (the spool file, the same schema and checks as the
embedded ledger) and answered 202 as usual; the dispatcher claims nothing (it could record nothing).
Every message id is chosen before its accept is tried on the server, so an accept whose COMMIT the
outage cut off is spooled under the same id and counted once when drained (ON CONFLICT (id)).

While the spool holds messages, new accepts go to it too: a repeat of an idempotency key still in
the spool finds its message there, and spooled messages reach the server in the order accepted.
`drain` moves them into the server once it answers again, a batch per transaction: messages with
their parts, events, idempotency key and escalation chain, then deleted from the spool. A crash
between the two commits moves nothing twice: the server keeps the row it has (same id).

What the modem did meanwhile (+CMGS of a part in flight when the server went away) and status
reports received meanwhile are kept in the spool's journal and written to the server first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from appliance.ledger.dialect import fetch_all, fetch_one, marks, notify_queued
from appliance.ledger.errors import LedgerUnreachable, StoreError
from appliance.ledger.models import Actor, Message, NewMessage, Quota, new_id
from appliance.ledger.retention import delete_messages
from appliance.ledger.store import Store

_LOGGER = logging.getLogger(__name__)

DRAIN_BATCH = 100  # messages moved per server transaction
PROBE_DELAYS_S = (0.5, 1.0, 2.0, 5.0)  # between probes of an unreachable server (the last repeats)
IDLE_LOOK_S = 0.5  # how often the drain looks whether the server went away (a read of two flags)
DUPLICATE = "idempotency_duplicate"  # error code of a spooled message whose key another box used first

_JOURNAL = """
CREATE TABLE IF NOT EXISTS spool_journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    message_id TEXT,
    seq INTEGER,
    mr INTEGER NOT NULL,
    modem TEXT,
    recipient TEXT,
    status INTEGER,
    at REAL NOT NULL
)
"""
# Rows of a spooled message, moved with it (table, its columns are copied as the spool has them).
_WITH_MESSAGE = ("parts", "events", "escalations")


class Spool:
    """Accepts, reads and journal of a PostgreSQL ledger's box while the server is unreachable."""

    def __init__(self, path: str, ledger: Store) -> None:
        self.path = path
        self.ledger = ledger
        self.local = Store(path)
        self.active = False  # accepts go to the spool (the server is unreachable, or it holds messages)
        self.messages = 0  # messages in the spool
        self.journal = 0  # journal rows not yet written to the server
        self.journal_written = asyncio.Event()  # set while the journal is empty
        self.journal_written.set()
        self._lock = asyncio.Lock()  # an accept into the spool, or the drain's last look at it

    async def open(self) -> None:
        await self.local.open()
        async with self.local._tx() as db:
            await db.execute(_JOURNAL)
        await self._count()
        self.active = self.messages > 0

    async def close(self) -> None:
        await self.local.close()

    @property
    def sending_paused(self) -> bool:
        """Send nothing now: the server is unreachable, or what the modem did meanwhile is not in it yet."""
        return not self.ledger.reachable.is_set() or self.journal > 0

    def problem(self) -> str | None:
        """The sentence the status page and /readyz show while the spool is in use, or None."""
        if self.ledger.reachable.is_set() and not self.active and not self.journal:
            return None
        if not self.ledger.reachable.is_set():
            return f"ledger unreachable: accepting into the local spool ({self.messages} messages), sending paused"
        return f"ledger reachable again: draining the local spool ({self.messages} messages)"

    async def _count(self) -> None:
        row = await fetch_one(self.local.rdb, "SELECT count(*) AS n FROM messages", ())
        self.messages = int(row["n"]) if row is not None else 0
        row = await fetch_one(self.local.rdb, "SELECT count(*) AS n FROM spool_journal", ())
        self.journal = int(row["n"]) if row is not None else 0
        self._journal_changed()

    def _journal_changed(self) -> None:
        if self.journal:
            self.journal_written.clear()
        else:
            self.journal_written.set()

    # ------------------------------------------------------------ accepting
    async def accept(
        self,
        new: NewMessage,
        *,
        key_id: int | None,
        queue_max: int,
        quota: Quota | None = None,
        actor: Actor | None = None,
    ) -> tuple[Message, bool]:
        """`Store.accept` on the server, or into the spool while it is unreachable (or drained)."""
        new = new if new.id is not None else dataclasses.replace(new, id=new_id("msg"))
        if not self.active:
            try:
                return await self.ledger.accept(
                    new, key_id=key_id, queue_max=queue_max, quota=quota, actor=actor
                )
            except LedgerUnreachable:
                pass  # not written, or its commit cut off: spooled under the same id
        async with self._lock:
            self._activate()
            result = await self.local.accept(
                new, key_id=key_id, queue_max=queue_max, quota=quota, actor=actor
            )
            if result[1]:
                self.messages += 1
        return result

    async def accept_many(
        self,
        news: Sequence[NewMessage],
        *,
        key_id: int | None,
        queue_max: int,
        quota: Quota | None = None,
        actor: Actor | None = None,
    ) -> list[tuple[Message, bool] | StoreError]:
        """`Store.accept_many` on the server, or into the spool (the whole batch) while it is unreachable."""
        news = [n if n.id is not None else dataclasses.replace(n, id=new_id("msg")) for n in news]
        if not self.active:
            try:
                return await self.ledger.accept_many(
                    news, key_id=key_id, queue_max=queue_max, quota=quota, actor=actor
                )
            except LedgerUnreachable:
                pass
        async with self._lock:
            self._activate()
            results = await self.local.accept_many(
                news, key_id=key_id, queue_max=queue_max, quota=quota, actor=actor
            )
            self.messages += sum(1 for r in results if isinstance(r, tuple) and r[1])
        return results

    def _activate(self) -> None:
        if not self.active:
            self.active = True
            _LOGGER.warning(
                "accepting into the local spool %s while the ledger's server is unreachable; sending paused",
                self.path,
            )

    async def get(self, msg_id: str) -> Message | None:
        """A spooled message from the spool, any other from the server (LedgerUnreachable while it is down)."""
        if self.active or self.messages:
            found = await self.local.get(msg_id)
            if found is not None:
                return found
        return await self.ledger.get(msg_id)

    # ------------------------------------------------------------ journal
    async def part_submitted(self, msg_id: str, seq: int, mr: int, modem: str, *, at: float) -> None:
        """+CMGS of a part the server could not record: kept here, written to it first on return."""
        async with self.local._tx(critical=True) as db:
            await db.execute(
                "INSERT INTO spool_journal (kind, message_id, seq, mr, modem, at) VALUES ('submitted', ?, ?, ?, ?, ?)",
                (msg_id, seq, mr, modem, at),
            )
        self.journal += 1
        self._journal_changed()

    async def report(self, mr: int, recipient: str, status: int, *, at: float) -> None:
        """A status report the server could not take: kept here, applied there on return."""
        async with self.local._tx(critical=True) as db:
            await db.execute(
                "INSERT INTO spool_journal (kind, mr, recipient, status, at) VALUES ('report', ?, ?, ?, ?)",
                (mr, recipient, status, at),
            )
        self.journal += 1
        self._journal_changed()

    async def _replay(self) -> int:
        """Write the journal to the server in order; each row deleted once the server has it."""
        rows = await fetch_all(self.local.rdb, "SELECT * FROM spool_journal ORDER BY id", ())
        for r in rows:
            try:
                if r["kind"] == "submitted":
                    await self.ledger.part_submitted(
                        r["message_id"], int(r["seq"]), int(r["mr"]), r["modem"], at=float(r["at"])
                    )
                else:
                    await self.ledger.apply_report(
                        int(r["mr"]), r["recipient"], int(r["status"]), at=float(r["at"])
                    )
            except LedgerUnreachable:
                raise
            except StoreError as exc:  # e.g. its message purged meanwhile: nothing left to record it on
                _LOGGER.warning(
                    "spool journal row %d (%s MR %s) dropped: %s", r["id"], r["kind"], r["mr"], exc
                )
            async with self.local._tx(critical=True) as db:
                await db.execute("DELETE FROM spool_journal WHERE id = ?", (r["id"],))
            self.journal -= 1
            self._journal_changed()
        return len(rows)

    # ------------------------------------------------------------ draining
    async def drain(self) -> int:
        """Journal first, then the spooled messages into the server, oldest first: how many moved.
        Raises LedgerUnreachable when the server goes away again (what moved stays moved)."""
        await self._replay()
        moved = 0
        while True:
            async with self._lock:
                rows = await fetch_all(
                    self.local.rdb, "SELECT id FROM messages ORDER BY seq LIMIT ?", (DRAIN_BATCH,)
                )
                if not rows:
                    self.active = False  # under the lock: no accept slips into the spool after this
                    await self._count()
                    return moved
            ids = [r["id"] for r in rows]
            await self._move(ids)
            async with self.local._tx(critical=True) as db:
                await delete_messages(db, ids)
                # Their webhooks are not delivered from the spool (the server's outbox has its own).
                await db.execute("DELETE FROM webhook_outbox", ())
            self.messages = max(0, self.messages - len(ids))
            moved += len(ids)

    async def _move(self, ids: Sequence[str]) -> None:
        """One server transaction: the messages `ids` with their rows; one already there is left as it is."""
        local = self.local.rdb
        messages = await fetch_all(
            local,
            f"SELECT * FROM messages WHERE id IN ({marks(ids)}) ORDER BY seq",  # noqa: S608  (placeholders only)
            ids,
        )
        keys = {
            r["message_id"]: r
            for r in await fetch_all(
                local,
                f"SELECT * FROM idempotency WHERE message_id IN ({marks(ids)})",  # noqa: S608
                ids,
            )
        }
        related: dict[str, dict[str, list[Any]]] = {table: {} for table in _WITH_MESSAGE}
        for table in _WITH_MESSAGE:
            order = " ORDER BY id" if table == "events" else ""
            for r in await fetch_all(
                local,
                f"SELECT * FROM {table} WHERE message_id IN ({marks(ids)}){order}",  # noqa: S608  (fixed names)
                ids,
            ):
                related[table].setdefault(r["message_id"], []).append(r)
        now = time.time()
        async with self.ledger._tx(critical=True) as db:
            for m in messages:
                row = dict(m)
                row.pop("seq")
                key = keys.get(row["id"])
                original = None
                if key is not None:
                    found = await fetch_one(
                        db,
                        "SELECT message_id FROM idempotency WHERE key_id = ? AND key = ?",
                        (key["key_id"], key["key"]),
                    )
                    if found is not None and found["message_id"] != row["id"]:
                        # Another box accepted this key while this one spooled: its message is sent.
                        original = str(found["message_id"])
                        row.update(
                            status="canceled",
                            error_code=DUPLICATE,
                            error_message=f"idempotency key {key['key']!r} was accepted as {original} "
                            "by another box while this one spooled: that message is sent instead",
                            final_at=now,
                            updated_at=now,
                        )
                inserted = await db.execute(
                    f"INSERT INTO messages ({', '.join(row)}) VALUES ({marks(list(row))}) "  # noqa: S608  (the schema's names)
                    "ON CONFLICT (id) DO NOTHING",
                    list(row.values()),
                )
                if inserted.rowcount == 0:
                    continue  # moved before a crash, or its accept's commit made it after all
                for table in _WITH_MESSAGE:
                    for r in related[table].get(row["id"], []):
                        values = {k: r[k] for k in r.keys() if not (table == "events" and k == "id")}  # noqa: SIM118
                        await db.execute(
                            f"INSERT INTO {table} ({', '.join(values)}) VALUES ({marks(list(values))})",  # noqa: S608
                            list(values.values()),
                        )
                if original is not None:
                    await db.execute(
                        "INSERT INTO events (message_id, at, kind, from_status, to_status, detail) "
                        "VALUES (?, ?, 'canceled', 'queued', 'canceled', ?)",
                        (row["id"], now, f"duplicate of {original} (same idempotency key, another box)"),
                    )
                    if row["id"] in related["escalations"]:
                        await db.execute(
                            "UPDATE escalations SET next_at = NULL, outcome = 'canceled', ended_at = ? WHERE message_id = ?",
                            (now, row["id"]),
                        )
                elif key is not None:
                    await db.execute(
                        "INSERT INTO idempotency (key_id, key, message_id, request_hash, created_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (
                            key["key_id"],
                            key["key"],
                            key["message_id"],
                            key["request_hash"],
                            key["created_at"],
                        ),
                    )
            await notify_queued(db)

    async def run(self, wake: Callable[[], None] | None = None) -> None:
        """Forever: while the server is unreachable or the spool in use, probe the server (with
        backoff) and drain into it; `wake` (the gateway's: dispatcher and escalator) once drained."""
        delay_index = 0
        while True:
            if self.ledger.reachable.is_set() and not self.active and not self.journal:
                delay_index = 0
                await asyncio.sleep(IDLE_LOOK_S)
                continue
            if await self.ledger.ping():
                delay_index = 0
                started = time.monotonic()
                try:
                    moved = await self.drain()
                except LedgerUnreachable:
                    continue  # gone again: probe as before
                if moved:
                    _LOGGER.info(
                        "the local spool is drained: %d messages moved to the ledger's server in %.1f s",
                        moved,
                        time.monotonic() - started,
                    )
                if wake is not None:
                    wake()
                continue
            # Until the next probe, or sooner when another statement finds the server back.
            delay = PROBE_DELAYS_S[min(delay_index, len(PROBE_DELAYS_S) - 1)]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ledger.reachable.wait(), delay)
            delay_index += 1
