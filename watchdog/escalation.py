"""The escalation chain of an incident: on-call numbers one after another, then e-mail.

With `escalate_after_s` > 0 an incident's opening alert goes to the first on-call number only; each
`escalate_after_s` without an ACK (by SMS from any on-call number, or on the status page) the next
number is texted, and after the last number every `escalate_email` target gets an e-mail. With 0
(the default) there is one step: every number and target at once, as before chains existed.
Repeats go to the numbers told so far; RESOLVED to everyone told (numbers and e-mail).

The time runs from when a step was decided, not from when its SMS left: a modem that cannot send
is exactly when the next step (in the end, e-mail) must not wait. Progress is kept in the
watchdog's own state file, so a restarted watchdog continues a chain instead of starting it over.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

from watchdog.alert import Incident
from watchdog.mail import is_mailto

SCHEMA = """
CREATE TABLE IF NOT EXISTS escalations (
    incident_id INTEGER PRIMARY KEY,
    step INTEGER NOT NULL,
    stepped_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Step:
    """One step taken: `index` 0 is the opening alert; `recipients` are numbers or mailto: targets."""

    incident_id: int
    index: int
    recipients: tuple[str, ...]
    last: bool


@dataclass
class Chain:
    """Who hears of an incident, and when (pure: time comes in through `now`)."""

    numbers: tuple[str, ...]
    emails: tuple[str, ...] = ()
    after_s: float = 0.0
    progress: dict[int, tuple[int, float]] = field(default_factory=dict)  # incident id -> (step, at)

    @property
    def steps(self) -> list[tuple[str, ...]]:
        if self.after_s <= 0:
            return [(*self.numbers, *self.emails)]
        return [(n,) for n in self.numbers] + ([self.emails] if self.emails else [])

    def start(self, incident_id: int, now: float) -> Step:
        """The first step of a new incident (again the same, should its opening alert repeat)."""
        if incident_id not in self.progress:
            self.progress[incident_id] = (0, now)
        steps = self.steps
        return Step(incident_id, 0, steps[0] if steps else (), len(steps) <= 1)

    def due(self, incidents: Iterable[Incident], now: float) -> list[Step]:
        """The next step of every started, unacknowledged incident whose `after_s` has run out."""
        out: list[Step] = []
        steps = self.steps
        for incident in incidents:
            at = self.progress.get(incident.id)
            if at is None or incident.acked_at is not None:
                continue
            index, stepped_at = at
            if index + 1 >= len(steps) or now - stepped_at < self.after_s:
                continue
            self.progress[incident.id] = (index + 1, now)
            out.append(Step(incident.id, index + 1, steps[index + 1], index + 2 >= len(steps)))
        return out

    def told(self, incident_id: int, *, email: bool = True) -> tuple[str, ...]:
        """Everyone reached so far; an incident without a chain (older state file): everyone."""
        steps = self.steps
        index = self.progress.get(incident_id, (len(steps) - 1, 0.0))[0]
        reached = [r for step in steps[: index + 1] for r in step]
        return tuple(r for r in reached if email or not is_mailto(r))

    def forget(self, incident_id: int) -> None:
        self.progress.pop(incident_id, None)


class ChainLog:
    """The chain's progress in the watchdog's state file (shares its connection)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.db.executescript(SCHEMA)

    def __repr__(self) -> str:
        return "ChainLog()"

    def restore(self, chain: Chain, open_ids: Iterable[int]) -> None:
        wanted = set(open_ids)
        for incident_id, step, at in self.db.execute("SELECT incident_id, step, stepped_at FROM escalations"):
            if incident_id in wanted:
                chain.progress[incident_id] = (min(step, max(0, len(chain.steps) - 1)), at)

    def save(self, step: Step, at: float) -> None:
        self.db.execute(
            "INSERT INTO escalations (incident_id, step, stepped_at) VALUES (?, ?, ?) "
            "ON CONFLICT(incident_id) DO UPDATE SET step = excluded.step, stepped_at = excluded.stepped_at",
            (step.incident_id, step.index, at),
        )

    def forget(self, incident_id: int) -> None:
        self.db.execute("DELETE FROM escalations WHERE incident_id = ?", (incident_id,))
