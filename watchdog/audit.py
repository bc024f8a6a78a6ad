"""What the watchdog keeps of on-call commands, in its state file: audit facts, PIN failures, seen keys.

Never a command's text: the audit holds who, which verb, accepted or refused (and why), when, and
by which way it came. Every table is bounded by age (`purge`), and the file zeroes what it deletes
(secure_delete), so a purged row is gone from the disk too.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchdog.ledgerdb import read_file

HOUR_S = 3600.0
GUESS_WINDOW_S = HOUR_S
SEEN_KEEP_S = 7 * 86400.0  # a command seen on the SIM and later in the ledger: far longer apart never
AUDIT_KEEP_S = 90 * 86400.0
# Rows kept at most, whatever their age: a flood of command-shaped SMS must not fill the disk.
SEEN_MAX_ROWS = 20_000
AUDIT_MAX_ROWS = 100_000
PURGE_EVERY_S = HOUR_S

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_replies (
    key TEXT PRIMARY KEY,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pin_failures (
    sender TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pin_failures_sender ON pin_failures(sender, at);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    sender TEXT NOT NULL,
    verb TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    via TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_at ON commands(at);
DROP TABLE IF EXISTS replies;
"""


@dataclass(frozen=True)
class CommandFact:
    """One audited command: `outcome` is accepted/refused; `detail` the reason or the result."""

    at: float
    sender: str
    verb: str
    outcome: str
    detail: str
    via: str


class CommandLog:
    """The command tables of the watchdog's state file (shares its connection)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        # The old `replies` table held whole texts (PINs): dropped, and its pages zeroed.
        self.db.execute("PRAGMA secure_delete=ON")
        self.db.executescript(SCHEMA)
        self.purged_at: float | None = None

    def __repr__(self) -> str:
        return "CommandLog()"

    def seen(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM seen_replies WHERE key = ?", (key,)).fetchone() is not None

    def mark_seen(self, key: str, now: float) -> None:
        self.db.execute("INSERT OR IGNORE INTO seen_replies (key, at) VALUES (?, ?)", (key, now))

    def failures(self, sender: str, now: float) -> int:
        """Wrong PINs from `sender` within the last hour (survives a restart of the watchdog)."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM pin_failures WHERE sender = ? AND at > ?", (sender, now - GUESS_WINDOW_S)
        ).fetchone()
        return int(row[0])

    def add_failure(self, sender: str, now: float) -> int:
        """Count one wrong PIN; returns the count within the hour, this one included."""
        self.db.execute("INSERT INTO pin_failures (sender, at) VALUES (?, ?)", (sender, now))
        return self.failures(sender, now)

    def record(self, fact: CommandFact) -> None:
        self.db.execute(
            "INSERT INTO commands (at, sender, verb, outcome, detail, via) VALUES (?, ?, ?, ?, ?, ?)",
            (fact.at, fact.sender, fact.verb, fact.outcome, fact.detail, fact.via),
        )

    def purge(self, now: float) -> None:
        """Keep only what is still needed (by age, and a row cap); runs at most once an hour."""
        if self.purged_at is not None and now - self.purged_at < PURGE_EVERY_S:
            return
        self.purged_at = now
        self.db.execute("DELETE FROM seen_replies WHERE at < ?", (now - SEEN_KEEP_S,))
        self.db.execute("DELETE FROM pin_failures WHERE at < ?", (now - GUESS_WINDOW_S,))
        self.db.execute("DELETE FROM commands WHERE at < ?", (now - AUDIT_KEEP_S,))
        self.db.execute(
            "DELETE FROM seen_replies WHERE rowid <= (SELECT MAX(rowid) FROM seen_replies) - ?",
            (SEEN_MAX_ROWS,),
        )
        self.db.execute(
            "DELETE FROM commands WHERE id <= (SELECT MAX(id) FROM commands) - ?", (AUDIT_MAX_ROWS,)
        )


# The columns of an audit fact, as the readers below hand them on (the keys of each dict).
_FACT = ("id", "at", "sender", "verb", "outcome", "detail", "via")
_FACTS = f"SELECT {', '.join(_FACT)} FROM commands"  # noqa: S608  (fixed names)


def _facts(rows: list[Any]) -> list[dict[str, Any]]:
    return [dict(zip(_FACT, r, strict=True)) for r in rows]


def read_commands(path: Path, *, limit: int = 50, before_id: int | None = None) -> list[dict[str, Any]]:
    """The audit facts, newest first, read-only (for the audit API); empty without a state file."""

    def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
        rows = db.execute(
            f"{_FACTS} WHERE id < ? ORDER BY id DESC LIMIT ?",
            (before_id if before_id is not None else 2**63 - 1, limit),
        ).fetchall()
        return [{**fact, "actor": "watchdog"} for fact in _facts(rows)]

    return read_file(path, read, [])


def commands_after(path: Path, after_id: int, *, limit: int = 500) -> list[dict[str, Any]]:
    """Audit facts with an id above `after_id`, oldest first, read-only (the daemon copies them into
    its own audit trail). A state file made anew (its newest id behind `after_id`) is read from its
    start. Empty without a state file."""

    def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
        newest = db.execute("SELECT MAX(id) FROM commands").fetchone()[0]
        start = 0 if newest is not None and newest < after_id else after_id
        return _facts(db.execute(f"{_FACTS} WHERE id > ? ORDER BY id LIMIT ?", (start, limit)).fetchall())

    return read_file(path, read, [])
