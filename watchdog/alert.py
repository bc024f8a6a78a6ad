"""Alert policy (pure, clock passed in) and the watchdog's state file (incidents, alerts).

One incident per subject ("daemon", "queue", "modem", ...): one SMS to every on-call number when
it opens, again every `repeat_s` while it lasts (unless ACKed), RESOLVED when it clears, and at most
`cap_per_hour` alerts per rolling hour across all incidents so a flapping box cannot drain the SIM.
A daily "alive" SMS at `alive_at` (local time) makes silence itself noticeable.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from watchdog.checks import Finding
from watchdog.ledgerdb import read_file

HOUR_S = 3600.0


@dataclass
class Incident:
    """An open problem of one subject."""

    id: int
    subject: str
    what: str
    hint: str
    since: float
    opened_at: float
    last_alert_at: float | None = None
    acked_at: float | None = None
    alerts: int = 0
    alerted: bool = False  # whether its opening alert went out (RESOLVED only follows one that did)


@dataclass(frozen=True)
class Alert:
    """One text for every on-call number; `kind` is open/repeat/resolved/alive/reply."""

    kind: str
    subject: str
    text: str
    incident_id: int | None = None


@dataclass
class Policy:
    """Decides which alerts go out; all time comes in through `now` (epoch s)."""

    box: str
    repeat_s: float = 1800.0
    cap_per_hour: int = 10
    alive_at: str = "09:00"
    incidents: dict[str, Incident] = field(default_factory=dict)
    sent_at: deque[float] = field(default_factory=deque)
    alive_sent_on: date | None = None
    next_id: int = 1
    suppressed: int = 0

    def step(self, findings: list[Finding], now: float) -> tuple[list[Alert], list[Alert]]:
        """Update incidents from this cycle's findings; returns (alerts to send, alerts suppressed by the cap)."""
        out: list[Alert] = []
        by_subject: dict[str, list[Finding]] = {}
        for f in findings:
            by_subject.setdefault(f.subject, []).append(f)
        for subject, group in by_subject.items():
            incident = self.incidents.get(subject)
            if incident is None:
                first = min(group, key=lambda f: f.since)
                incident = Incident(
                    self.next_id, subject, _join(group), first.hint, first.since, opened_at=now
                )
                self.next_id += 1
                self.incidents[subject] = incident
                out.append(Alert("open", subject, self._text(incident, now), incident.id))
            else:
                incident.what = _join(group)
                due = incident.last_alert_at is None or now - incident.last_alert_at >= self.repeat_s
                if incident.acked_at is None and due:
                    kind = "repeat" if incident.alerted else "open"
                    out.append(Alert(kind, subject, self._text(incident, now), incident.id))
        for subject in [s for s in self.incidents if s not in by_subject]:
            incident = self.incidents.pop(subject)
            if incident.alerted:
                text = f"RESOLVED {self.box}: {incident.what} (lasted {_span(now - incident.since)})"
                out.append(Alert("resolved", subject, text, incident.id))
        alive = self._alive_due(now)
        sendable: list[Alert] = []
        suppressed: list[Alert] = []
        self._expire(now)
        for alert in out:
            if len(self.sent_at) >= self.cap_per_hour:
                suppressed.append(alert)
                self.suppressed += 1
                incident = self.incidents.get(alert.subject)
                if incident is not None:
                    incident.last_alert_at = now  # retry at the next repeat, not every cycle
                continue
            self.sent_at.append(now)
            sendable.append(alert)
            incident = self.incidents.get(alert.subject)
            if incident is not None:
                incident.last_alert_at = now
                incident.alerts += 1
                incident.alerted = True
        if alive is not None:
            sendable.append(alive)  # once a day, outside the cap: silence must stay noticeable
        return sendable, suppressed

    def ack(self, now: float) -> list[Incident]:
        """Silence repeats of every open incident (RESOLVED still comes); returns those acked."""
        acked = [i for i in self.incidents.values() if i.acked_at is None]
        for incident in acked:
            incident.acked_at = now
        return acked

    def summary(self, now: float) -> str:
        """One line for STATUS replies and the alive message."""
        if not self.incidents:
            return "all clear"
        parts = [
            f"{i.what} since {_clock(i.since)}{' (acked)' if i.acked_at else ''}"
            for i in self.incidents.values()
        ]
        return "; ".join(parts)

    def text_of(self, incident: Incident, now: float) -> str:
        """The incident's alert text as it reads now (the escalation chain sends it on)."""
        return self._text(incident, now)

    def _text(self, incident: Incident, now: float) -> str:
        return f"{self.box}: {incident.what} since {_clock(incident.since)}. {incident.hint}"

    def _expire(self, now: float) -> None:
        while self.sent_at and now - self.sent_at[0] >= HOUR_S:
            self.sent_at.popleft()

    def _alive_due(self, now: float) -> Alert | None:
        if not self.alive_at:
            return None
        local = datetime.fromtimestamp(now)  # noqa: DTZ006  (the operator's wall clock)
        hh, mm = (int(x) for x in self.alive_at.split(":"))
        before = (local.hour, local.minute) < (hh, mm)
        if self.alive_sent_on is None:
            # First look: started after today's time, the first alive message is tomorrow's (no burst
            # at every restart); started before it, today's is due.
            self.alive_sent_on = local.date() - timedelta(days=1) if before else local.date()
        if before or self.alive_sent_on >= local.date():
            return None
        self.alive_sent_on = local.date()
        return Alert("alive", "alive", f"{self.box} watchdog alive: {self.summary(now)}")


def _join(group: list[Finding]) -> str:
    return "; ".join(f.what for f in group)


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S")  # noqa: DTZ006  (the operator's wall clock)


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}min"


SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    subject TEXT NOT NULL,
    what TEXT NOT NULL,
    since REAL NOT NULL,
    opened_at REAL NOT NULL,
    acked_at REAL,
    resolved_at REAL
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    incident_id INTEGER,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    text TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ack_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL,
    at REAL NOT NULL,
    by TEXT NOT NULL,
    applied_at REAL
);
"""


class StateFile:
    """The watchdog's own SQLite file: every incident and alert (commands: watchdog/audit.py); the status page reads it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, timeout=5)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def __repr__(self) -> str:
        return f"StateFile({str(self.path)!r})"

    def close(self) -> None:
        self.db.close()

    def restore(self, policy: Policy, now: float) -> None:
        """Reload open incidents and the last hour's alert times (a restarted watchdog keeps its cap)."""
        for row in self.db.execute(
            "SELECT id, subject, what, since, opened_at, acked_at FROM incidents WHERE resolved_at IS NULL"
        ):
            last = self.db.execute(
                "SELECT MAX(at) FROM alerts WHERE incident_id = ? AND outcome = 'sent'", (row[0],)
            ).fetchone()[0]
            policy.incidents[row[1]] = Incident(
                row[0], row[1], row[2], "", row[3], row[4], last, row[5], alerted=last is not None
            )
        top = self.db.execute("SELECT MAX(id) FROM incidents").fetchone()[0]
        policy.next_id = (top or 0) + 1
        times = self.db.execute(
            "SELECT DISTINCT at FROM alerts WHERE at > ? AND outcome = 'sent' AND kind NOT IN ('alive', 'escalate') "
            "AND recipient NOT LIKE 'mailto:%' ORDER BY at",
            (now - HOUR_S,),
        )
        policy.sent_at.extend(t for (t,) in times)
        alive = self.db.execute("SELECT MAX(at) FROM alerts WHERE kind = 'alive'").fetchone()[0]
        if alive is not None:
            policy.alive_sent_on = datetime.fromtimestamp(alive).date()  # noqa: DTZ006

    def apply_ack_requests(self, policy: Policy, now: float) -> list[Incident]:
        """ACKs made on the status page (rows the daemon adds): silence repeats of those incidents."""
        acked: list[Incident] = []
        by_id = {i.id: i for i in policy.incidents.values()}
        for request_id, incident_id in self.db.execute(
            "SELECT id, incident_id FROM ack_requests WHERE applied_at IS NULL"
        ).fetchall():
            incident = by_id.get(incident_id)
            if incident is not None and incident.acked_at is None:
                incident.acked_at = now
                acked.append(incident)
            self.db.execute("UPDATE ack_requests SET applied_at = ? WHERE id = ?", (now, request_id))
        return acked

    def sync_incidents(self, policy: Policy, now: float) -> None:
        """Write open incidents and mark those no longer open as resolved."""
        open_ids = {i.id for i in policy.incidents.values()}
        for i in policy.incidents.values():
            self.db.execute(
                "INSERT INTO incidents (id, subject, what, since, opened_at, acked_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET what = excluded.what, acked_at = excluded.acked_at",
                (i.id, i.subject, i.what, i.since, i.opened_at, i.acked_at),
            )
        for (incident_id,) in self.db.execute(
            "SELECT id FROM incidents WHERE resolved_at IS NULL"
        ).fetchall():
            if incident_id not in open_ids:
                self.db.execute("UPDATE incidents SET resolved_at = ? WHERE id = ?", (now, incident_id))

    def record_alert(self, alert: Alert, recipient: str, outcome: str, now: float | None = None) -> None:
        self.db.execute(
            "INSERT INTO alerts (at, incident_id, kind, recipient, text, outcome) VALUES (?, ?, ?, ?, ?, ?)",
            (
                time.time() if now is None else now,
                alert.incident_id,
                alert.kind,
                recipient,
                alert.text,
                outcome,
            ),
        )


def read_state(path: Path, limit: int = 20) -> dict[str, Any]:
    """The status document's `watchdog` part, read-only; empty when there is no state file yet."""
    doc: dict[str, Any] = {"incidents": [], "alerts": []}

    def read(db: sqlite3.Connection) -> dict[str, Any]:
        doc["incidents"] = [
            {
                "id": r[0],
                "subject": r[1],
                "what": r[2],
                "since": r[3],
                "opened_at": r[4],
                "acked_at": r[5],
                "resolved_at": r[6],
                "open": r[6] is None,
            }
            for r in db.execute(
                "SELECT id, subject, what, since, opened_at, acked_at, resolved_at FROM incidents "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            )
        ]
        doc["alerts"] = [
            {"at": r[0], "incident_id": r[1], "kind": r[2], "to": r[3], "text": r[4], "outcome": r[5]}
            for r in db.execute(
                "SELECT at, incident_id, kind, recipient, text, outcome FROM alerts ORDER BY id DESC LIMIT ?",
                (limit,),
            )
        ]
        return doc

    return read_file(path, read, doc)  # what was read before a failing query stays


def request_ack(path: Path, incident_id: int, *, by: str, now: float | None = None) -> bool:
    """Ask the watchdog to silence an open incident (the status page's ACK); False if none is open."""
    if not path.exists():
        return False
    db = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        db.executescript(SCHEMA)
        row = db.execute(
            "SELECT 1 FROM incidents WHERE id = ? AND resolved_at IS NULL", (incident_id,)
        ).fetchone()
        if row is None:
            return False
        db.execute(
            "INSERT INTO ack_requests (incident_id, at, by) VALUES (?, ?, ?)",
            (incident_id, time.time() if now is None else now, by),
        )
        return True
    finally:
        db.close()
