"""Watching the other boxes of a fleet that share this box's ledger: one text per silent peer.

Every box's daemon renews its row in `boxes` with its heartbeat (appliance/ledger/fleet.py); the
watchdog reads them through the `peer_facts` view. A peer silent for longer than `peer_silent_s`
is an incident, and every watchdog of the fleet sees it: before texting, a watchdog claims it
with an INSERT into `peer_incidents`, keyed by the peer and its last heartbeat (one silence
episode) with ON CONFLICT DO NOTHING, so the one whose row went in texts and the others stay
quiet. The claimant texts RESOLVED once the peer beats again (one UPDATE, one winner).

This is the watchdog's only write to the ledger: the claim must be shared by the fleet. The ledger
is a SQLite file or, for a fleet of boxes, a postgresql:// URL: the same statements, spelt for
each (`?` or `$n`), over sqlite3 or asyncpg (one short connection per statement, in a thread).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from watchdog.ledgerdb import LEDGER_ERRORS, numbered, on_connection, on_postgres, open_readonly

_LOGGER = logging.getLogger(__name__)


def _pg_rows(url: str, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]] | None:
    """The rows of a query on PostgreSQL; None when the fleet's tables do not exist there yet."""

    async def work(db: asyncpg.Connection) -> list[tuple[Any, ...]] | None:
        try:
            return [tuple(r) for r in await db.fetch(numbered(sql), *args)]
        except asyncpg.UndefinedTableError:
            return None

    return on_connection(url, work)


def _pg_changed(url: str, sql: str, args: tuple[Any, ...]) -> int:
    """Rows an INSERT or UPDATE on PostgreSQL changed (its command tag: "INSERT 0 1", "UPDATE 2")."""

    async def work(db: asyncpg.Connection) -> int:
        tag: str = await db.execute(numbered(sql), *args)
        return int(tag.rsplit(" ", 1)[-1])

    return on_connection(url, work)


@dataclass(frozen=True)
class Peer:
    """Another box of the fleet, as `peer_facts` shows it."""

    name: str
    heartbeat_at: float
    taken_over_by: str | None


@dataclass(frozen=True)
class PeerNews:
    """What to text on-call about a peer: it fell silent, or it is back."""

    peer: str
    resolved: bool
    text: str


_PEERS = "SELECT name, heartbeat_at, taken_over_by FROM peer_facts WHERE name <> ? ORDER BY name"
_CLAIM = (
    "INSERT INTO peer_incidents (peer, silent_since, claimed_by, claimed_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (peer, silent_since) DO NOTHING"
)
_RESOLVE = (
    "UPDATE peer_incidents SET resolved_at = ? WHERE peer = ? AND claimed_by = ? "
    "AND resolved_at IS NULL AND silent_since < ?"
)
_OPEN_CLAIMS = "SELECT DISTINCT peer FROM peer_incidents WHERE claimed_by = ? AND resolved_at IS NULL"


def _rows(ledger_path: str, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The rows of a query on the fleet's tables; none on a ledger without them (from before
    fleets), nor on a SQLite file that cannot be read (one log line)."""
    if on_postgres(ledger_path):
        return _pg_rows(ledger_path, sql, args) or []
    if not Path(ledger_path).exists():
        return []
    try:
        db = open_readonly(ledger_path)
    except sqlite3.Error as exc:
        _LOGGER.warning("cannot open the ledger read-only: %s", exc)
        return []
    try:
        return [tuple(r) for r in db.execute(sql, args).fetchall()]
    except sqlite3.Error as exc:
        if "no such table" not in str(exc):
            _LOGGER.warning("reading the fleet's tables failed: %s", exc)
        return []
    finally:
        db.close()


def read_peers(ledger_path: str, me: str) -> list[Peer]:
    """The other boxes (none on a ledger without the fleet schema, or one that cannot be read)."""
    return [Peer(str(r[0]), float(r[1]), r[2]) for r in _rows(ledger_path, _PEERS, (me,))]


def _claim(ledger_path: str, peer: Peer, me: str, now: float) -> bool:
    """Claim the silence of `peer` that began at its last heartbeat; True for the one claimant."""
    args = (peer.name, peer.heartbeat_at, me, now)
    if on_postgres(ledger_path):
        return _pg_changed(ledger_path, _CLAIM, args) == 1
    with _Writer(ledger_path) as db:
        return db.execute(_CLAIM, args).rowcount == 1


def _resolve(ledger_path: str, peer: Peer, me: str, now: float) -> bool:
    """Close this watchdog's open claims on `peer` (it beats again); True when there was one."""
    args = (now, peer.name, me, peer.heartbeat_at)
    if on_postgres(ledger_path):
        return _pg_changed(ledger_path, _RESOLVE, args) > 0
    with _Writer(ledger_path) as db:
        return db.execute(_RESOLVE, args).rowcount > 0


class _Writer:
    """One short transaction on the ledger (busy waits up to 5 s for the daemons' writes)."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, timeout=5, isolation_level=None)

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.db.execute("COMMIT" if exc is None else "ROLLBACK")
        finally:
            self.db.close()


def _open_claims(ledger_path: str, me: str) -> set[str]:
    """Peers whose silence this watchdog claimed and has not resolved (after its restart)."""
    return {str(r[0]) for r in _rows(ledger_path, _OPEN_CLAIMS, (me,))}


class PeerWatch:
    """Which peers this watchdog has seen silent, and the texts its claims earn."""

    def __init__(self, ledger_path: str, me: str, box_name: str, silent_s: float) -> None:
        self.ledger_path = ledger_path  # a SQLite file or a postgresql:// URL
        self.me = me
        self.box_name = box_name
        self.silent_s = silent_s
        self._tried: dict[str, float] = {}  # peer -> the silence (last heartbeat) claimed or lost
        self._silent: set[str] | None = None  # peers seen silent (read from the ledger at the first cycle)

    def check(self, now: float) -> list[PeerNews]:
        """One cycle (blocking: run it in a thread). Errors are one log line; the next cycle retries."""
        news: list[PeerNews] = []
        try:
            if self._silent is None:
                self._silent = _open_claims(self.ledger_path, self.me)
            for peer in read_peers(self.ledger_path, self.me):
                age = now - peer.heartbeat_at
                if age > self.silent_s:
                    self._silent.add(peer.name)
                    if self._tried.get(peer.name) == peer.heartbeat_at:
                        continue  # this silence is claimed already, by us or another watchdog
                    won = _claim(self.ledger_path, peer, self.me, now)
                    self._tried[peer.name] = peer.heartbeat_at
                    if won:
                        _LOGGER.warning("fleet box %s silent for %.0f s: texting on-call", peer.name, age)
                        news.append(PeerNews(peer.name, False, self._silent_text(peer, age)))
                elif peer.name in self._silent:
                    self._silent.discard(peer.name)
                    if _resolve(self.ledger_path, peer, self.me, now):
                        news.append(
                            PeerNews(
                                peer.name,
                                True,
                                f"RESOLVED {self.box_name}: fleet box {peer.name} beats again",
                            )
                        )
        except LEDGER_ERRORS as exc:
            _LOGGER.warning("watching the fleet's boxes: %s", exc)
        return news

    def _silent_text(self, peer: Peer, age: float) -> str:
        taken = (
            f"its in-flight messages taken over by box {peer.taken_over_by}"
            if peer.taken_over_by
            else "nobody took its messages over yet"
        )
        return f"{self.box_name}: fleet box {peer.name} silent for {age:.0f}s; {taken}. Check it"
