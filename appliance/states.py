"""Message states and their legal transitions, as one table (h11 style).

```
scheduled ─▶ queued ─▶ sending ─▶ sent ─▶ delivered
                │          │         └──▶ undelivered   (status report: permanent failure)
                │          ├──▶ queued  (transient error, retry after backoff)
                │          └──▶ failed  (permanent error, attempts or validity exhausted)
                ├──▶ canceled | failed (validity expired before sending)
                └──▶ scheduled (its send window closed before a modem took it)
```
Transitions are monotonic: nothing leaves a final state.
"""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({State.DELIVERED, State.UNDELIVERED, State.FAILED, State.CANCELED})

TRANSITIONS: dict[State, frozenset[State]] = {
    State.SCHEDULED: frozenset({State.QUEUED, State.CANCELED, State.FAILED}),
    # queued -> scheduled: a backlog carried it past the end of its send window.
    State.QUEUED: frozenset({State.SENDING, State.SCHEDULED, State.CANCELED, State.FAILED}),
    # sending -> sending: a crash left the outcome unknown and the part is sent again.
    State.SENDING: frozenset({State.SENT, State.QUEUED, State.FAILED}),
    State.SENT: frozenset({State.DELIVERED, State.UNDELIVERED}),
    State.DELIVERED: frozenset(),
    State.UNDELIVERED: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELED: frozenset(),
}


class IllegalTransition(ValueError):
    """A transition not in TRANSITIONS was attempted; the ledger refuses it."""

    def __init__(self, old: State, new: State) -> None:
        super().__init__(f"illegal transition {old.value} -> {new.value}")
        self.old = old
        self.new = new


def check(old: State, new: State) -> None:
    """Raise IllegalTransition unless old -> new is in the table."""
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(old, new)


class PartState(enum.StrEnum):
    """One segment of a message: its own MR and report."""

    PENDING = "pending"  # not yet accepted by the network
    SENDING = "sending"  # committed before AT+CMGS; after a crash: outcome unknown
    SENT = "sent"  # +CMGS: <mr> received
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"


class Priority(enum.IntEnum):
    HIGH = 0
    NORMAL = 1
    BULK = 2
