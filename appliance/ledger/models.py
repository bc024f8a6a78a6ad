"""The ledger's records (frozen dataclasses), the row mappers that build them, ids and key digests."""

from __future__ import annotations

import hashlib
import json
import operator
import secrets
import sqlite3
import time
import urllib.parse
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from appliance.states import PartState, Priority, State

MASK = "•••"  # a purged number keeps its first 3 characters ("+49•••"): counts by country stay possible


# A reply is threaded to the last message its sender got within this window (the default of
# [inbound] reply_window_s; threads.py).
REPLY_WINDOW_S = 7 * 86400


@dataclass(frozen=True)
class Actor:
    """Who did something, for the audit trail: a key name, `web:<user>` or `cli`; and from where."""

    name: str
    source: str


@dataclass(frozen=True)
class Quota:
    """A key's message allowance; None is unlimited."""

    per_hour: int | None = None
    per_day: int | None = None


@dataclass(frozen=True)
class EscalationSpec:
    """A message's `escalation` as requested: who gets the text next when nobody confirms it.

    `then` holds E.164 numbers first, then `mailto:` targets (validation keeps that order)."""

    after_s: int
    until: str  # "delivered" | "replied"
    then: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"after_s": self.after_s, "until": self.until, "then": list(self.then)}


@dataclass(frozen=True)
class Escalation:
    """A message's escalation chain and its progress (ledger/escalations.py).

    `step`: how many entries of `then` were reached (0: only the original so far); `next_at`: when
    the next step is due, None once the chain ended; `outcome`: why it ended (None while running)."""

    spec: EscalationSpec
    step: int = 0
    next_at: float | None = None
    outcome: str | None = None
    ended_at: float | None = None


@dataclass(frozen=True)
class NewMessage:
    """A validated send request."""

    to: str
    body: str
    encoding: str
    segments: int
    priority: Priority = Priority.NORMAL
    send_at: float | None = None
    validity_s: int = 86400
    status_callback: str | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None
    source: str = "api"
    callback_format: str = "json"  # how status_callback is posted: "json" (ours) or "twilio" (form)
    # Send windows (appliance.send_windows): the window it waits for (windows.Window.to_json) and
    # whose it is ("message", "template", "key"); `release_at` when that window moved it later than
    # asked, and the timeline line saying why (or which window priority high bypassed).
    window: dict[str, str] | None = None
    window_source: str | None = None
    release_at: float | None = None
    window_note: str | None = None
    template_name: str | None = None  # the template the body was rendered from, and its version
    template_version: int | None = None
    escalation: EscalationSpec | None = None
    # This message is step `[1]` of the escalation chain of message `[0]` (committed with it).
    escalation_of: tuple[str, int] | None = None
    # The id chosen before the accept (spool.py): an accept whose COMMIT the server's outage cut
    # off is spooled under the same id, and the drain's ON CONFLICT (id) makes it one message.
    id: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # A batch's 1,000 come back from its worker process (batch_worker.py): as one tuple of
        # values each they pickle and load in a third of the time of the dataclass's state.
        return (_new_message_from, (_new_message_values(self),))

    def fingerprint(self) -> str:
        doc = {
            "to": self.to,
            "body": self.body,
            "priority": int(self.priority),
            "send_at": self.send_at,
            "validity_s": self.validity_s,
            # As the prefix that tagged a Twilio callback before migration 10 wrote it: a retry
            # straddling the upgrade keeps its fingerprint.
            "status_callback": (
                f"twilio:{self.status_callback}"
                if self.callback_format == "twilio" and self.status_callback
                else self.status_callback
            ),
            "metadata": self.metadata,
        }
        if self.window is not None and self.window_source == "message":  # a key's own may change
            doc["window"] = self.window
        if self.escalation is not None:  # only then: fingerprints of requests without one stay as they were
            doc["escalation"] = self.escalation.as_dict()
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


_NEW_MESSAGE_FIELDS = tuple(f.name for f in fields(NewMessage))
_NEW_MESSAGE_DEFAULTS = {f.name: f.default for f in fields(NewMessage)}
_NEW_MESSAGE_REQUIRED = {name for name, default in _NEW_MESSAGE_DEFAULTS.items() if default is MISSING}
_new_message_values = operator.attrgetter(*_NEW_MESSAGE_FIELDS)


def new_message_record(**values: Any) -> NewMessage:
    """NewMessage(**values) without the frozen __init__'s object.__setattr__ for each of its 23
    fields (~3 µs of each item of a batch): the same record, the same TypeError for a wrong field."""
    if not _NEW_MESSAGE_REQUIRED <= values.keys() <= _NEW_MESSAGE_DEFAULTS.keys():
        return NewMessage(**values)  # raises, naming the missing or unknown field
    return _filled(_NEW_MESSAGE_DEFAULTS | values)


def _new_message_from(values: tuple[Any, ...]) -> NewMessage:
    """NewMessage.__reduce__'s inverse (its values were checked when it was made)."""
    return _filled(dict(zip(_NEW_MESSAGE_FIELDS, values, strict=True)))


def _filled(values: dict[str, Any]) -> NewMessage:
    """The record holding `values`, one for each of its fields (the one place that skips __init__)."""
    new: NewMessage = object.__new__(NewMessage)
    new.__dict__.update(values)
    return new


@dataclass(frozen=True)
class Part:
    seq: int
    total: int
    status: PartState
    mr: int | None
    modem: str | None
    submitted_at: float | None
    report_status: int | None
    report_at: float | None


@dataclass(frozen=True)
class Event:
    at: float
    kind: str
    from_status: str | None
    to_status: str | None
    detail: str | None


@dataclass(frozen=True)
class Message:
    seq: int
    id: str
    to: str
    body: str | None
    encoding: str
    segments: int
    priority: Priority
    status: State
    attempts: int
    error_code: str | None
    error_message: str | None
    created_at: float
    updated_at: float
    send_at: float | None
    not_before: float
    expires_at: float
    sent_at: float | None
    delivered_at: float | None
    report_expired: bool
    concat_ref: int | None
    modem: str | None
    held: bool
    ambiguous: int
    status_callback: str | None
    metadata: dict[str, Any] | None
    delay_reason: str | None
    key_id: int | None
    callback_format: str = "json"
    window: dict[str, str] | None = None  # the send window it waits for (windows.Window.to_json)
    template_name: str | None = None
    template_version: int | None = None
    parts: tuple[Part, ...] = ()
    events: tuple[Event, ...] = ()
    escalated_from: str | None = None  # the message whose escalation chain sent this one
    escalation: Escalation | None = None
    box: str | None = None  # the fleet box that last claimed it (ledger/fleet.py)


@dataclass(frozen=True)
class Inbound:
    seq: int
    id: str
    from_number: str
    body: str | None
    encoding: str
    parts: int
    parts_expected: int
    complete: bool
    sent_at: float | None
    received_at: float
    keyword: str | None
    in_reply_to: str | None = None  # the id of the sent message this text answers (threads.py)


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    scopes: frozenset[str]
    created_at: float
    revoked_at: float | None
    last_used_at: float | None
    per_hour: int | None = None
    per_day: int | None = None
    max_priority: Priority | None = None  # None: any priority
    window: dict[str, str] | None = None  # default send window of its messages (windows.Window.to_json)
    window_bypass_high: bool = False  # its priority high messages skip that window (and a template's)

    @property
    def quota(self) -> Quota:
        return Quota(self.per_hour, self.per_day)


@dataclass(frozen=True)
class KeyLimits:
    """What `smsgw keys create/import` sets besides scopes; None is unlimited."""

    per_hour: int | None = None
    per_day: int | None = None
    max_priority: Priority | None = None
    window: dict[str, str] | None = None
    window_bypass_high: bool = False

    @property
    def priority_value(self) -> int | None:
        return None if self.max_priority is None else int(self.max_priority)

    @property
    def window_text(self) -> str | None:
        """The window as the ledger stores it (JSON), None without one."""
        return None if self.window is None else json.dumps(self.window, sort_keys=True)

    @classmethod
    def of(cls, key: ApiKey) -> KeyLimits:
        return cls(key.per_hour, key.per_day, key.max_priority, key.window, key.window_bypass_high)

    def describe(self) -> str:
        def show(n: int | None) -> str:
            return "unlimited" if n is None else str(n)

        top = "high" if self.max_priority is None else self.max_priority.name.lower()
        text = f"{show(self.per_hour)}/hour, {show(self.per_day)}/day, priority up to {top}"
        if self.window is not None:
            w = self.window
            text += f", send window {w['days']} {w['start']}-{w['end']} {w['tz']}"
            text += " (priority high bypasses it)" if self.window_bypass_high else ""
        return text


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    at: float
    actor: str
    source: str
    action: str
    target: str | None
    detail: str | None


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret: str
    events: tuple[str, ...]


@dataclass(frozen=True)
class OutboxItem:
    id: int
    webhook_id: str
    url: str
    secret: str
    type: str
    payload: str
    created_at: float
    attempts: int
    target: str = ""
    format: str = "json"  # "twilio": Twilio's form fields, signed as Twilio signs them


@dataclass(frozen=True)
class Retention:
    """Days after which the ledger forgets (0 = never); see config.RetentionConfig."""

    numbers_days: int = 0
    metadata_days: int = 0
    events_days: int = 0
    messages_days: int = 0
    audit_days: int = 0


@dataclass(frozen=True)
class ReportOutcome:
    """What a status report did to the ledger."""

    matched: bool
    message_id: str | None = None
    changed: bool = False
    note: str = ""


@dataclass
class Stats:
    """Queue and throughput figures for /api/v1/status, the page and metrics."""

    by_status: dict[str, int] = field(default_factory=dict)
    oldest_queued_at: float | None = None
    last_sent_at: float | None = None
    ambiguous_total: int = 0
    reports_lost_total: int = 0  # messages that became final without their status report
    quarantined_total: int = 0  # undecodable PDUs kept in the quarantine table


@dataclass(frozen=True)
class Quarantined:
    """An undecodable PDU, as the modem gave it, with where it was found."""

    seq: int
    id: str
    at: float
    port: str
    memory: str
    index: int | None
    pdu: str
    reason: str


def new_id(prefix: str) -> str:
    """Time-sortable id: prefix + 10 hex of milliseconds + 12 random hex."""
    return f"{prefix}_{int(time.time() * 1000):010x}{secrets.token_hex(6)}"


def new_ids(prefix: str, count: int) -> list[str]:
    """`count` ids as `new_id` makes them, from one read of the random source: a read per id
    gives the GIL up each time, and a batch's 1,000 then wait on every other thread."""
    ms = f"{prefix}_{int(time.time() * 1000):010x}"
    rnd = secrets.token_hex(6 * count)
    return [ms + rnd[12 * i : 12 * i + 12] for i in range(count)]


def hash_key(key: str) -> str:
    # API keys are 32 random bytes: SHA-256 suffices, a slow KDF buys nothing.
    return hashlib.sha256(key.encode()).hexdigest()


def webhook_target(url: str) -> str:
    """The queue a webhook waits in: its scheme, host and port (one dead receiver delays only itself)."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = (parts.hostname or "").lower()
    return f"{parts.scheme}://{host}:{port or (443 if parts.scheme == 'https' else 80)}"


def message_row(
    r: sqlite3.Row,
    *,
    parts: tuple[Part, ...] = (),
    events: tuple[Event, ...] = (),
    escalation: Escalation | None = None,
) -> Message:
    """A `messages` row; `whole_message` passes its parts, events and chain in (a second
    dataclass built by `dataclasses.replace` cost a quarter of a list page's mapping)."""
    return Message(
        seq=r["seq"],
        id=r["id"],
        to=r["to_number"],
        body=r["body"],
        encoding=r["encoding"],
        segments=r["segments"],
        priority=Priority(r["priority"]),
        status=State(r["status"]),
        attempts=r["attempts"],
        error_code=r["error_code"],
        error_message=r["error_message"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        send_at=r["send_at"],
        not_before=r["not_before"],
        expires_at=r["expires_at"],
        sent_at=r["sent_at"],
        delivered_at=r["delivered_at"],
        report_expired=bool(r["report_expired"]),
        concat_ref=r["concat_ref"],
        modem=r["modem"],
        held=bool(r["held"]),
        ambiguous=r["ambiguous"],
        status_callback=r["status_callback"],
        callback_format=r["callback_format"],
        template_name=r["template_name"],
        template_version=r["template_version"],
        metadata=json.loads(r["metadata"]) if r["metadata"] else None,
        delay_reason=r["delay_reason"],
        key_id=r["key_id"],
        window=json.loads(r["send_window"]) if r["send_window"] else None,
        escalated_from=r["escalated_from"],
        box=r["box"],
        parts=parts,
        events=events,
        escalation=escalation,
    )


def _real(text: str | None) -> float | None:
    return None if text is None else float(text)


def whole_message(r: sqlite3.Row) -> Message:
    """A row of timeline.WHOLE_MESSAGE: the message with its parts (by seq) and events (by id)."""
    parts = sorted(json.loads(r["parts_json"]), key=lambda p: int(p[0]))
    events = sorted(json.loads(r["events_json"]), key=lambda e: int(e[0]))
    return message_row(
        r,
        parts=tuple(
            Part(seq, total, PartState(status), mr, modem, _real(sub), report, _real(report_at))
            for seq, total, status, mr, modem, sub, report, report_at in parts
        ),
        events=tuple(Event(float(at), kind, old, new, detail) for _id, at, kind, old, new, detail in events),
        escalation=escalation_of_json(r["escalation_json"]),
    )


def escalation_row(r: sqlite3.Row) -> Escalation:
    """A row of the `escalations` table."""
    return Escalation(
        EscalationSpec(int(r["after_s"]), r["until"], tuple(json.loads(r["targets"]))),
        int(r["step"]),
        r["next_at"],
        r["outcome"],
        r["ended_at"],
    )


def escalation_of_json(text: str | None) -> Escalation | None:
    """timeline.WHOLE_MESSAGE's `escalation_json` (a JSON array of the row's columns), or None."""
    if text is None:
        return None
    after_s, until, targets, step, next_at, outcome, ended_at = json.loads(text)
    return Escalation(
        EscalationSpec(int(after_s), until, tuple(json.loads(targets))),
        int(step),
        _real(next_at),
        outcome,
        _real(ended_at),
    )


def inbound_row(r: sqlite3.Row) -> Inbound:
    return Inbound(
        seq=r["seq"],
        id=r["id"],
        from_number=r["from_number"],
        body=r["body"],
        encoding=r["encoding"],
        parts=r["parts"],
        parts_expected=r["parts_expected"],
        complete=bool(r["complete"]),
        sent_at=r["sent_at"],
        received_at=r["received_at"],
        keyword=r["keyword"],
        in_reply_to=r["in_reply_to"],
    )


def key_row(r: sqlite3.Row) -> ApiKey:
    return ApiKey(
        id=r["id"],
        name=r["name"],
        prefix=r["prefix"],
        scopes=frozenset(s for s in r["scopes"].split(",") if s),
        created_at=r["created_at"],
        revoked_at=r["revoked_at"],
        last_used_at=r["last_used_at"],
        per_hour=r["per_hour"],
        per_day=r["per_day"],
        max_priority=None if r["max_priority"] is None else Priority(r["max_priority"]),
        window=json.loads(r["send_window"]) if r["send_window"] else None,
        window_bypass_high=bool(r["window_bypass_high"]),
    )


def audit_row(r: sqlite3.Row) -> AuditEvent:
    return AuditEvent(r["seq"], r["at"], r["actor"], r["source"], r["action"], r["target"], r["detail"])


def quarantined_row(r: sqlite3.Row) -> Quarantined:
    return Quarantined(
        seq=r["seq"],
        id=r["id"],
        at=r["at"],
        port=r["port"],
        memory=r["memory"],
        index=r["idx"],
        pdu=r["pdu"],
        reason=r["reason"],
    )
