"""On-call replies: `STATUS <pin>`, `ACK <pin>`, `RESTART <pin>` from an allow-listed number.

Replies reach the watchdog two ways: while the daemon lives it stores every received SMS in the
ledger's `inbound` table (read here, read-only); while it is down the SMS stay on the SIM and the
watchdog takes only the on-call ones from there, leaving the rest for the daemon's next sweep.
Anything else, or from any other number, is ignored and logged.
"""

from __future__ import annotations

import hmac
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from modem import same_subscriber

_LOGGER = logging.getLogger(__name__)

COMMANDS = ("STATUS", "ACK", "RESTART")


@dataclass(frozen=True)
class Reply:
    """A received SMS the watchdog may act on; `key` makes handling it idempotent."""

    key: str
    sender: str
    text: str


def parse(reply: Reply, oncall: tuple[str, ...], pin: str) -> str | None:
    """The command (STATUS/ACK/RESTART) when sender and PIN are allowed; None otherwise."""
    if not pin or not any(same_subscriber(reply.sender, n) for n in oncall):
        return None
    words = reply.text.strip().split()
    if len(words) != 2:
        return None
    command, given = words[0].upper(), words[1]
    if command not in COMMANDS or not hmac.compare_digest(given.encode(), pin.encode()):
        return None
    return command


def is_oncall(sender: str, oncall: tuple[str, ...]) -> bool:
    return any(same_subscriber(sender, n) for n in oncall)


class LedgerInbox:
    """New rows of the ledger's `inbound` table since the watchdog started."""

    def __init__(self, ledger_path: str) -> None:
        self.path = Path(ledger_path)
        self.last_seq: int | None = None

    def __repr__(self) -> str:
        return f"LedgerInbox({str(self.path)!r}, last_seq={self.last_seq})"

    def read_new(self) -> list[Reply]:
        if not self.path.exists():
            return []
        try:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=2)
        except sqlite3.Error:
            return []
        try:
            if self.last_seq is None:
                # Only what arrives from now on: an old "RESTART" must not act again after a reboot.
                self.last_seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM inbound").fetchone()[0]
                return []
            rows = db.execute(
                "SELECT seq, from_number, body, sent_at FROM inbound WHERE seq > ? AND complete = 1 ORDER BY seq",
                (self.last_seq,),
            ).fetchall()
        except sqlite3.Error as exc:
            _LOGGER.info("reading inbound failed: %s", exc)
            return []
        finally:
            db.close()
        out: list[Reply] = []
        for seq, sender, body, sent_at in rows:
            self.last_seq = seq
            out.append(Reply(reply_key(sender, body or "", sent_at), sender, body or ""))
        return out


def reply_key(sender: str, text: str, sent_at: float | None) -> str:
    """The same SMS seen in the ledger and on the SIM gets the same key."""
    digits = "".join(c for c in sender if c.isdigit())[-9:]
    return f"{digits}|{round(sent_at or 0)}|{text.strip()}"
