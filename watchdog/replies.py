"""On-call replies: `STATUS <pin>`, `ACK <pin>`, `RESTART <pin>` from an on-call number.

Replies reach the watchdog two ways, depending on which process holds the port that receives SMS:
while the daemon lives it stores every received SMS in the ledger (read here, read-only, through
its `inbound_facts` view), a command redacted to its verb with a digest of its PIN word (watchdog/commands.py);
while it is down the SMS stay on the SIM and the watchdog takes only on-call commands from there,
leaving everything else for the daemon's next sweep. In both ways the whole text lives only in a
local variable here: a `Reply` carries the redacted text and whether the PIN matched.

Authorisation: the sender must *be* an on-call number once both are in E.164 (national forms read
in the default region): the suffix match that pairs status reports with messages would let
+15112345678 pass for +4915112345678. Then the PIN, with at most GUESSES_PER_HOUR wrong ones per
sender; after that the sender is ignored, right PIN or not, until its failures age out of the hour.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from watchdog.commands import KEY_BYTES, e164, load_key, pin_matches, redact, seal, valid_pin, verb_of
from watchdog.keyfile import DamagedKey
from watchdog.ledgerdb import LEDGER_ERRORS, numbered, on_connection, on_postgres, open_readonly

_LOGGER = logging.getLogger(__name__)

GUESSES_PER_HOUR = 3


@dataclass(frozen=True)
class Reply:
    """A received SMS the watchdog may act on; `key` makes handling it idempotent."""

    key: str
    sender: str
    text: str  # redacted: safe to log and keep
    pin_ok: bool
    via: str  # "ledger" or "sim"


@dataclass(frozen=True)
class Decision:
    """What to do with one command; `sender` is in E.164 when it parses."""

    verb: str
    sender: str
    accepted: bool
    reason: str = ""  # why refused: not_oncall, no_pin, locked, wrong_pin
    wrong_pin: bool = False  # counts against the sender's hourly allowance


def sim_reply(key: bytes, pin: str, sender: str, text: str, sent_at: float | None) -> Reply:
    """A reply read off the SIM, made the same as its ledger row would be (the whole text stays here)."""
    _, token_digest = seal(key, text)
    return _reply(key, pin, sender, redact(text), token_digest, sent_at, "sim")


def _reply(
    key: bytes,
    pin: str,
    sender: str,
    redacted: str,
    token_digest: str | None,
    sent_at: float | None,
    via: str,
) -> Reply:
    ok = pin_matches(key, pin, token_digest)
    return Reply(reply_key(sender, redacted, token_digest, sent_at), sender, redacted, ok, via)


def oncall_set(oncall: tuple[str, ...], region: str) -> frozenset[str]:
    return frozenset(n for n in (e164(x, region) for x in oncall) if n is not None)


def is_oncall(sender: str, oncall: frozenset[str], region: str) -> bool:
    """Exactly an on-call number (E.164 after normalisation), never a suffix match."""
    return e164(sender, region) in oncall


def decide(reply: Reply, *, oncall: frozenset[str], region: str, pin: str, failures: int) -> Decision | None:
    """The decision on one reply; None when it is no command at all (then it is not ours)."""
    verb = verb_of(reply.text)
    if verb is None:
        return None
    sender = e164(reply.sender, region) or reply.sender
    if sender not in oncall:
        return Decision(verb, sender, accepted=False, reason="not_oncall")
    if not valid_pin(pin):
        return Decision(verb, sender, accepted=False, reason="no_pin")
    if failures >= GUESSES_PER_HOUR:
        return Decision(verb, sender, accepted=False, reason="locked", wrong_pin=not reply.pin_ok)
    if not reply.pin_ok:
        return Decision(verb, sender, accepted=False, reason="wrong_pin", wrong_pin=True)
    return Decision(verb, sender, accepted=True)


class LedgerInbox:
    """New rows of the ledger's `inbound` table since the watchdog started (a SQLite file or the
    fleet's PostgreSQL ledger, through `inbound_facts`).

    In a fleet (`box`) only the texts this box's modems received: each box seals the commands it
    receives with its own key (beside its ledger, `key_dir`), so a reply that reached a peer's
    number is that peer's to judge; read here it would count as a wrong PIN against its sender.
    `seq` follows commit order within one box (one writer per box), so `last_seq` skips none of
    this box's rows; across boxes on PostgreSQL it would not (a lower seq may commit later)."""

    def __init__(
        self, ledger: str, pin: str, started_at: float, *, key_dir: Path | None = None, box: str = ""
    ) -> None:
        self.ledger = ledger
        self.key_dir = key_dir if key_dir is not None else Path(ledger).parent
        self.box = box
        self.started_at = started_at
        self.last_seq: int | None = None
        self._pin = pin
        self._key: bytes | None = None

    def __repr__(self) -> str:
        return f"LedgerInbox(box={self.box!r}, last_seq={self.last_seq})"

    def read_new(self) -> list[Reply]:
        rows = self._read_postgres() if on_postgres(self.ledger) else self._read_sqlite()
        out: list[Reply] = []
        for seq, sender, body, token_digest, sent_at in rows:
            self.last_seq = int(seq)
            # The daemon stored it redacted (and an older one did not: redacted here too).
            text = redact(body or "")
            out.append(_reply(self.key, self._pin, sender, text, token_digest, sent_at, "ledger"))
        return out

    def _read_sqlite(self) -> list[Any]:
        if not Path(self.ledger).exists():
            return []
        try:
            db = open_readonly(self.ledger)
        except sqlite3.Error:
            return []
        try:
            try:
                return self._rows_sqlite(db, self.box)
            except sqlite3.OperationalError as exc:
                if not self.box or "no such column" not in str(exc):
                    raise
                return self._rows_sqlite(db, "")  # a ledger before migration 17: one box's rows only
        except sqlite3.Error as exc:
            _LOGGER.debug("reading inbound failed: %s", exc)  # every cycle while it lasts
            return []
        finally:
            db.close()

    def _rows_sqlite(self, db: sqlite3.Connection, box: str) -> list[Any]:
        mine, args = (" AND box = ?", (box,)) if box else ("", ())
        if self.last_seq is None:
            # Only what arrived since this start: an old "RESTART" must not act again after a
            # reboot, and one sent while the watchdog was starting must not be skipped.
            self.last_seq = int(
                db.execute(
                    f"{_LAST_BEFORE}{mine}",
                    (self.started_at, *args),
                ).fetchone()[0]
            )
        return db.execute(f"{_NEW_ROWS}{mine}{_IN_ORDER}", (self.last_seq, *args)).fetchall()

    def _read_postgres(self) -> list[Any]:
        mine, args = (" AND box = ?", (self.box,)) if self.box else ("", ())

        async def rows(db: asyncpg.Connection) -> list[Any]:
            if self.last_seq is None:  # as in _rows_sqlite
                first = numbered(f"{_LAST_BEFORE}{mine}")
                self.last_seq = int(await db.fetchval(first, self.started_at, *args))
            return list(await db.fetch(numbered(f"{_NEW_ROWS}{mine}{_IN_ORDER}"), self.last_seq, *args))

        try:
            return on_connection(self.ledger, rows)
        except LEDGER_ERRORS as exc:
            _LOGGER.debug("reading inbound failed: %s", exc)  # read_ledger says so once per cycle
            return []

    def sim_reply(self, sender: str, text: str, sent_at: float | None) -> Reply:
        return sim_reply(self.key, self._pin, sender, text, sent_at)

    @property
    def key(self) -> bytes:
        """The digest key beside the ledger (made here when the daemon has not made it yet)."""
        if self._key is None:
            try:
                self._key = load_key(self.key_dir)
            except DamagedKey as exc:
                # Alerts and the canary go on; the SIM's commands are checked with a key of this
                # run, the daemon's stored digests match none (the daemon does not start anyway).
                _LOGGER.error("on-call commands in the ledger are refused until this restarts: %s", exc)  # noqa: TRY400
                self._key = secrets.token_bytes(KEY_BYTES)
        return self._key


# inbound_facts, read the same on both backends (PostgreSQL numbers the placeholders).
_LAST_BEFORE = "SELECT COALESCE(MAX(seq), 0) FROM inbound_facts WHERE received_at < ?"
_NEW_ROWS = (
    "SELECT seq, from_number, body, command_digest, sent_at FROM inbound_facts WHERE seq > ? AND complete = 1"
)
_IN_ORDER = " ORDER BY seq"


def reply_key(sender: str, redacted: str, token_digest: str | None, sent_at: float | None) -> str:
    """The same SMS seen in the ledger and on the SIM gets the same key; two that differ only in
    their PIN word do not (the keyed digest tells them apart). No number, text or PIN in it."""
    # The whole number: a foreign one sharing its last digits must not shadow an on-call command.
    raw = f"{sender}|{round(sent_at or 0)}|{redacted.strip()}|{token_digest or ''}"
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:32]
