"""One way in for a new message, whichever door it came through (API, Twilio, Alertmanager, the page).

Each door turns its request into a `NewMessage` (segments.new_message: segmentation done
once) and calls `Intake.submit`, which checks for room on the ledger's disk, commits
(store.accept: opt-outs, idempotency, queue cap, quota), counts the accepted metric and
wakes the dispatcher. A refusal is raised as the store's exception; `refusal` turns it into
one (status, code, message) the native API answers with, and the other doors translate
that into their own reply shape, so no door can forget a check or word it differently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from appliance.ledger import (
    Actor,
    ApiKey,
    IdempotencyMismatch,
    LedgerUnreachable,
    Message,
    NewMessage,
    OptedOut,
    QueueFull,
    QuotaExceeded,
    StorageFull,
    Store,
    StoreError,
)
from appliance.metrics import Metrics
from appliance.send_windows import apply_window
from appliance.status import GatewayView, ledger_problem
from appliance.validation import ApiError
from appliance.windows import Window

_LOGGER = logging.getLogger(__name__)

SOURCES = (
    "api",
    "twilio",
    "alertmanager",
    "page",
    "escalation",
)  # NewMessage.source: the metric's label values
QUEUE_FULL_RETRY_AFTER_S = 30  # long enough for the dispatcher to drain a few messages


@dataclass(frozen=True)
class Refusal:
    """Why a message was not accepted, in the native API's terms (DESIGN.md's codes)."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def error(self) -> ApiError:
        return ApiError(self.status, self.code, self.message, headers=self.headers)


def refusal(exc: StoreError, *, key: ApiKey | None, queue_max: int) -> Refusal:
    """The one table of intake refusals: store exception -> (status, code, message)."""
    if isinstance(exc, StorageFull):
        return Refusal(507, "storage_full", str(exc) or "the gateway's disk is full")
    if isinstance(exc, LedgerUnreachable):  # only without a spool (`smsgw serve` always has one)
        return Refusal(503, "ledger_unreachable", str(exc), {"Retry-After": str(QUEUE_FULL_RETRY_AFTER_S)})
    if isinstance(exc, QueueFull):
        return Refusal(
            503,
            "queue_full",
            f"{queue_max} messages are already waiting; retry later",
            {"Retry-After": str(QUEUE_FULL_RETRY_AFTER_S)},
        )
    if isinstance(exc, OptedOut):
        return Refusal(
            422, "opted_out", "the recipient opted out (sent STOP) and receives no messages until START"
        )
    if isinstance(exc, IdempotencyMismatch):
        return Refusal(
            422,
            "idempotency_mismatch",
            "this idempotency key was already used with a different request; use a new key",
        )
    if isinstance(exc, QuotaExceeded):
        name = repr(key.name) if key is not None else "of this request"
        return Refusal(
            429,
            "quota_exceeded",
            f"the API key {name} may send {exc.limit} messages per {exc.window}; "
            f"retry in {exc.retry_after_s} s",
            {"Retry-After": str(exc.retry_after_s)},
        )
    raise TypeError(f"not an intake refusal: {exc!r}")  # NotFound/Conflict never come from accept


@dataclass
class Intake:
    """The submit path every front door shares."""

    store: Store
    queue_max: int
    gateway: GatewayView
    metrics: Metrics
    min_free_bytes: int

    def __post_init__(self) -> None:
        for source in SOURCES:  # every door shows in /metrics from the start, at 0
            self.metrics.accepted_total.labels(source=source)

    def room_problem(self) -> str | None:
        """Why the ledger cannot take a new message now (the sentence /readyz shows), or None."""
        return ledger_problem(self.store, min_free_bytes=self.min_free_bytes)

    async def submit(
        self,
        new: NewMessage,
        *,
        key: ApiKey | None,
        actor: Actor,
        template_window: Window | None = None,
    ) -> tuple[Message, bool]:
        """Commit `new`: (message, created). Raises StorageFull, QueueFull, OptedOut,
        IdempotencyMismatch or QuotaExceeded (see `refusal`); a repeat of an idempotency
        key returns the original with created False and counts nothing.

        Its send window (its own, else `template_window`, else the key's default) may store it
        `scheduled` until the window opens (send_windows.apply_window)."""
        self.check_room()
        new = apply_window(new, key=key, template_window=template_window, now=time.time())
        # On PostgreSQL the spool decides: the server, or the local spool while it is unreachable.
        msg, created = await (self.store.spool or self.store).accept(
            new,
            key_id=None if key is None else key.id,
            queue_max=self.queue_max,
            quota=None if key is None else key.quota,
            actor=actor,
        )
        if created:
            self.metrics.accepted_total.labels(source=new.source).inc()
            _LOGGER.info(
                "accepted %s from %s (%d segment(s), %s)", msg.id, actor.name, msg.segments, new.source
            )
            self.gateway.wake(chains=msg.escalation is not None)
        return msg, created

    def check_room(self) -> None:
        """Raise StorageFull when the ledger cannot take a new message now."""
        refuse_without_room(self.room_problem())

    def counted(self, count: BatchCount, *, actor: Actor) -> None:
        """A batch committed (here or by the batch worker process): the metric, a log line, the dispatcher woken."""
        if not count.created:
            return
        for source, n in count.per_source.items():
            self.metrics.accepted_total.labels(source=source).inc(n)
        _LOGGER.info(
            "accepted %d of %d messages of a batch from %s (%d segment(s))",
            count.created,
            count.items,
            actor.name,
            count.segments,
        )
        self.gateway.wake(chains=count.chains > 0)


def refuse_without_room(problem: str | None) -> None:
    """StorageFull naming `problem` (Intake.room_problem's answer, made here or in the daemon
    for the batch worker process), when there is one."""
    if problem is not None:
        raise StorageFull(problem)


@dataclass(frozen=True)
class BatchCount:
    """What a committed batch adds to the metrics and the log (small: it crosses from the worker)."""

    items: int
    created: int
    segments: int
    per_source: dict[str, int]
    chains: int = 0  # created with an escalation: the escalator is woken for them

    @classmethod
    def of(
        cls, news: Sequence[NewMessage], outcomes: Sequence[tuple[Message, bool] | StoreError]
    ) -> BatchCount:
        per_source: dict[str, int] = {}
        created = segments = chains = 0
        for new, outcome in zip(news, outcomes, strict=True):
            if isinstance(outcome, tuple) and outcome[1]:
                created += 1
                segments += outcome[0].segments
                per_source[new.source] = per_source.get(new.source, 0) + 1
                chains += new.escalation is not None
        return cls(len(news), created, segments, per_source, chains)


def windowed(
    news: Sequence[NewMessage], *, key: ApiKey | None, template_windows: Sequence[Window | None] | None
) -> list[NewMessage]:
    """Each message with its send window applied (`template_windows[i]`: its template's), as `submit` does."""
    now = time.time()
    windows = template_windows if template_windows is not None else [None] * len(news)
    return [
        apply_window(new, key=key, template_window=window, now=now)
        for new, window in zip(news, windows, strict=True)
    ]
