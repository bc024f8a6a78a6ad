"""A fleet of boxes sharing one ledger: each box's lease, and the takeover of a box that stopped.

Every box (`[fleet] box`, `Connection.box`) registers at start and renews its lease with its
heartbeat (lease_until = now + lease_s). A box whose lease ran out and that nobody took over yet
is taken over by exactly one other box: the conditional UPDATE on `taken_over_by` hits one row
for one box only (SQLite serialises the transactions; PostgreSQL re-checks the WHERE of an UPDATE
after the row lock), and only that box resolves the stopped box's `sending` messages, in the same
transaction, by the policy of a crash (`Sending._unknown_outcome`). Its `queued` ones need
nothing: every box's dispatcher claims from the one queue.

A box name is held by one start at a time: `boxes.instance` names the start that holds the lease
(`Connection.instance`: host, pid and a random part), and `register_box` refuses the name while
another start's lease lives, so two boxes given the same `[fleet] box` do not renew each other's
lease or recover each other's messages. A clean stop lets the name go (`release_box`); a crashed
start is known to its successor on the same box by the token it left in the box's own directory
(`previous`), so a restart need not wait for its own old lease to run out.

Portable SQL only (ON CONFLICT, CASE, no SQLite-only functions): the PostgreSQL backend runs it as is.
Times are each box's own clock: boxes of a fleet keep them in step (NTP); a skew shortens or
lengthens the lease seen by the others by as much.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from appliance.ledger.dialect import fetch_all, fetch_one
from appliance.ledger.models import message_row
from appliance.ledger.payloads import rfc3339
from appliance.ledger.sending import Sending


@dataclass(frozen=True)
class Box:
    """One box of the fleet as the ledger knows it."""

    name: str
    started_at: float
    heartbeat_at: float
    lease_until: float
    taken_over_by: str | None
    taken_over_at: float | None
    instance: str | None = None  # the start holding the lease (None: let go at a clean stop)


@dataclass(frozen=True)
class Takeover:
    """A stopped box this box took over, and the in-flight messages it resolved."""

    box: str
    lease_until: float
    messages: tuple[str, ...]


class Fleet(Sending):
    """Leases and takeovers (a no-op without a box name: a single box needs neither)."""

    async def register_box(
        self, lease_s: float, *, now: float | None = None, previous: str | None = None
    ) -> Box | None:
        """At start: this start holds a fresh lease on the box's name, and a takeover of an earlier
        life is forgotten (that life's in-flight messages were resolved by whoever took it over).

        None when held; else the name's row as another start holds it: its lease still lives and it
        is neither `previous` (this box's own crashed start) nor let go, nor taken over."""
        if self.box is None:
            return None
        now = time.time() if now is None else now
        async with self._tx(critical=True) as db:
            cur = await db.execute(
                "INSERT INTO boxes (name, started_at, heartbeat_at, lease_until, taken_over_by, taken_over_at, "
                "instance) VALUES (?, ?, ?, ?, NULL, NULL, ?) ON CONFLICT (name) DO UPDATE SET "
                "started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, "
                "lease_until = excluded.lease_until, taken_over_by = NULL, taken_over_at = NULL, "
                "instance = excluded.instance "
                "WHERE boxes.instance IS NULL OR boxes.instance = excluded.instance OR boxes.instance = ? "
                "OR boxes.lease_until < excluded.started_at OR boxes.taken_over_by IS NOT NULL",
                (self.box, now, now, now + lease_s, self.instance, previous),
            )
            if cur.rowcount == 1:
                return None
            row = await fetch_one(db, f"SELECT {_BOX_COLUMNS} FROM boxes WHERE name = ?", (self.box,))  # noqa: S608
        return None if row is None else _box(row)

    async def release_box(self) -> None:
        """At a clean stop: let the name go, so that the next start (here or on a replacement box)
        need not wait for this lease to run out. The lease itself stays: peers take over as before."""
        if self.box is None:
            return
        async with self._tx(critical=True) as db:
            await db.execute(
                "UPDATE boxes SET instance = NULL WHERE name = ? AND instance = ?", (self.box, self.instance)
            )

    async def renew_lease(self, lease_s: float, *, now: float | None = None) -> str | None:
        """Extend this box's lease; None when renewed, else the box that took this one over
        (this box was stopped or paused past its lease: it claims nothing until `register_box`)."""
        if self.box is None:
            return None
        now = time.time() if now is None else now
        async with self._tx(critical=True) as db:
            # Another start holding the name (it came while this one was paused past its lease)
            # is as good as a takeover: this one claims nothing.
            holds, holds_args = self.holds_name()
            cur = await db.execute(
                f"UPDATE boxes SET heartbeat_at = ?, lease_until = ?, instance = ? WHERE name = ? AND {holds}",  # noqa: S608  (fixed text)
                (now, now + lease_s, self.instance, self.box, *holds_args),
            )
            if cur.rowcount == 1:
                return None
            row = await fetch_one(db, "SELECT taken_over_by, instance FROM boxes WHERE name = ?", (self.box,))
            if row is None:  # never registered (the start met a full disk): hold the lease from now
                await db.execute(
                    "INSERT INTO boxes (name, started_at, heartbeat_at, lease_until, instance) VALUES (?, ?, ?, ?, ?)",
                    (self.box, now, now, now + lease_s, self.instance),
                )
                return None
        if row["taken_over_by"] is not None:
            return str(row["taken_over_by"])
        return f"{self.box} (another start, instance {row['instance']})"

    async def take_over_expired(self, policy: str, *, now: float | None = None) -> list[Takeover]:
        """Take over every other box whose lease ran out and that nobody took over yet, resolving
        its `sending` messages by `policy` ("resend" or "hold"). Each takeover is one transaction."""
        if self.box is None:
            return []
        now = time.time() if now is None else now
        candidates = await fetch_all(
            self.rdb,
            "SELECT name FROM boxes WHERE name <> ? AND lease_until < ? AND taken_over_by IS NULL",
            (self.box, now),
        )
        done: list[Takeover] = []
        for candidate in candidates:
            dead = str(candidate["name"])
            async with self._tx(critical=True) as db:
                cur = await db.execute(
                    "UPDATE boxes SET taken_over_by = ?, taken_over_at = ? "
                    "WHERE name = ? AND lease_until < ? AND taken_over_by IS NULL",
                    (self.box, now, dead, now),
                )
                if cur.rowcount != 1:
                    continue  # another box won, or the box came back meanwhile
                lease = await fetch_one(db, "SELECT lease_until FROM boxes WHERE name = ?", (dead,))
                lease_until = float(lease["lease_until"]) if lease is not None else now
                rows = await fetch_all(
                    db, "SELECT * FROM messages WHERE status = 'sending' AND held = 0 AND box = ?", (dead,)
                )
                why = (
                    f"box {dead} stopped (its lease ran out at {rfc3339(lease_until)}) and box {self.box} "
                    "took over"
                )
                for row in rows:
                    await self._unknown_outcome(db, message_row(row), policy, why, now)
                done.append(Takeover(dead, lease_until, tuple(str(r["id"]) for r in rows)))
        return done

    async def boxes(self) -> list[Box]:
        """Every box the ledger knows, by name (the status page's fleet table)."""
        rows = await fetch_all(self.rdb, f"SELECT {_BOX_COLUMNS} FROM boxes ORDER BY name", ())  # noqa: S608
        return [_box(r) for r in rows]


_BOX_COLUMNS = "name, started_at, heartbeat_at, lease_until, taken_over_by, taken_over_at, instance"


def _box(r: Any) -> Box:
    return Box(
        str(r["name"]),
        float(r["started_at"]),
        float(r["heartbeat_at"]),
        float(r["lease_until"]),
        r["taken_over_by"],
        None if r["taken_over_at"] is None else float(r["taken_over_at"]),
        r["instance"],
    )
