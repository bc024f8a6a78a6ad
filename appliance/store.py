"""The ledger: the only module with SQL, and the owner of the single write connection.

SQLite in WAL mode with synchronous=FULL, so that a message acknowledged to a LAN
app survives a power cut (WAL+NORMAL may roll back the last commits). Every state
change appends an `events` row and, in the same transaction, a webhook outbox row:
the ledger is the record, the modem only a transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import aiosqlite

from appliance.reserve import OPEN_RESERVE_BYTES, RESERVE_STEP_BYTES, Reserve
from appliance.states import FINAL, PartState, Priority, State, check

_LOGGER = logging.getLogger(__name__)

# A reply is threaded to the last message its sender got within this window ([inbound] reply_window_s).
REPLY_WINDOW_S = 7 * 86400
# Accepts committed together at most (group commit); bounds the latency one slow batch adds.
ACCEPT_BATCH_MAX = 256
PURGE_BATCH = 500  # rows per retention transaction: accepts wait for one batch at most
MASK = "•••"  # a purged number keeps its first 3 characters ("+49•••"): counts by country stay possible
DEFAULT_RESERVE_BYTES = 8 * 1024 * 1024
# A full VACUUM writes a copy of the ledger (and as much WAL) before freeing the old pages: it
# runs only with this many times the ledger's size free on its disk.
VACUUM_ROOM = 1.2
DISK_FULL = (
    "The ledger's disk is full: new messages are refused and sending is paused until space is freed "
    "(parts the modem already accepted are recorded in the space kept in reserve)."
)
_T = TypeVar("_T")
_P = ParamSpec("_P")

_MIGRATIONS: list[str] = [
    # 1: initial schema
    """
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        key_id INTEGER,
        to_number TEXT NOT NULL,
        body TEXT,
        encoding TEXT NOT NULL,
        segments INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        error_code TEXT,
        error_message TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        send_at REAL,
        not_before REAL NOT NULL,
        expires_at REAL NOT NULL,
        sent_at REAL,
        delivered_at REAL,
        final_at REAL,
        report_expired INTEGER NOT NULL DEFAULT 0,
        concat_ref INTEGER,
        modem TEXT,
        held INTEGER NOT NULL DEFAULT 0,
        ambiguous INTEGER NOT NULL DEFAULT 0,
        status_callback TEXT,
        metadata TEXT,
        source TEXT NOT NULL DEFAULT 'api',
        delay_reason TEXT
    );
    CREATE INDEX messages_queue ON messages(priority, not_before, seq) WHERE status = 'queued';
    CREATE INDEX messages_scheduled ON messages(not_before) WHERE status = 'scheduled';
    CREATE INDEX messages_sent ON messages(sent_at) WHERE status = 'sent';
    CREATE INDEX messages_status ON messages(status, seq);
    CREATE INDEX messages_to ON messages(to_number, seq);
    CREATE TABLE parts (
        message_id TEXT NOT NULL REFERENCES messages(id),
        seq INTEGER NOT NULL,
        total INTEGER NOT NULL,
        status TEXT NOT NULL,
        mr INTEGER,
        modem TEXT,
        submitted_at REAL,
        report_status INTEGER,
        report_at REAL,
        PRIMARY KEY (message_id, seq)
    );
    CREATE INDEX parts_mr ON parts(mr, submitted_at);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        from_status TEXT,
        to_status TEXT,
        detail TEXT
    );
    CREATE INDEX events_message ON events(message_id, id);
    CREATE TABLE idempotency (
        key_id INTEGER NOT NULL,
        key TEXT NOT NULL,
        message_id TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (key_id, key)
    );
    CREATE TABLE unmatched_reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mr INTEGER NOT NULL,
        recipient TEXT NOT NULL,
        status INTEGER NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE TABLE inbound (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        from_number TEXT NOT NULL,
        body TEXT,
        encoding TEXT NOT NULL,
        parts INTEGER NOT NULL,
        parts_expected INTEGER NOT NULL,
        complete INTEGER NOT NULL,
        sent_at REAL,
        received_at REAL NOT NULL,
        keyword TEXT
    );
    CREATE TABLE inbound_parts (
        sender TEXT NOT NULL,
        ref INTEGER NOT NULL,
        total INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        encoding TEXT NOT NULL,
        user_data BLOB NOT NULL,
        sent_at REAL,
        received_at REAL NOT NULL,
        PRIMARY KEY (sender, ref, total, seq)
    );
    CREATE TABLE optouts (
        number TEXT PRIMARY KEY,
        at REAL NOT NULL,
        keyword TEXT
    );
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL,
        last_used_at REAL
    );
    CREATE TABLE webhook_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook_id TEXT NOT NULL,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        delivered_at REAL,
        abandoned_at REAL,
        last_error TEXT
    );
    CREATE INDEX webhook_due ON webhook_outbox(next_attempt_at) WHERE delivered_at IS NULL AND abandoned_at IS NULL;
    CREATE TABLE modem_samples (
        at REAL NOT NULL,
        modem TEXT NOT NULL,
        state TEXT NOT NULL,
        registered INTEGER NOT NULL,
        signal_dbm INTEGER,
        operator TEXT
    );
    CREATE INDEX modem_samples_at ON modem_samples(at);
    CREATE TABLE heartbeats (
        name TEXT PRIMARY KEY,
        at REAL NOT NULL,
        progress_at REAL,
        detail TEXT
    );
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
    # 2: the status page's 24 h charts and last-sent time read index ranges, not 100k rows
    """
    CREATE INDEX messages_sent_at ON messages(sent_at) WHERE sent_at IS NOT NULL;
    CREATE INDEX messages_delivered_at ON messages(delivered_at) WHERE delivered_at IS NOT NULL;
    CREATE INDEX parts_submitted_at ON parts(submitted_at);
    """,
    # 3 (issue 11 item 1, wdcmd): on-call commands are kept redacted ("RESTART ******") with a keyed
    # digest of the PIN word beside them (watchdog/commands.py); rows stored before are redacted here.
    # Only the exact command shape `VERB <6..32 digits>` (command_shaped()): a migration cannot know
    # the on-call numbers, and a customer's "Status of my order 42?" must stay as received.
    """
    ALTER TABLE inbound ADD COLUMN command_digest TEXT;
    UPDATE inbound SET body = 'STATUS ******' WHERE upper(trim(body, ' ' || char(9, 10, 13))) GLOB 'STATUS[' || char(32, 9, 10, 13) || ']*'
        AND length(ltrim(substr(trim(body, ' ' || char(9, 10, 13)), 7), ' ' || char(9, 10, 13))) BETWEEN 6 AND 32 AND NOT ltrim(substr(trim(body, ' ' || char(9, 10, 13)), 7), ' ' || char(9, 10, 13)) GLOB '*[^0-9]*';
    UPDATE inbound SET body = 'ACK ******' WHERE upper(trim(body, ' ' || char(9, 10, 13))) GLOB 'ACK[' || char(32, 9, 10, 13) || ']*'
        AND length(ltrim(substr(trim(body, ' ' || char(9, 10, 13)), 4), ' ' || char(9, 10, 13))) BETWEEN 6 AND 32 AND NOT ltrim(substr(trim(body, ' ' || char(9, 10, 13)), 4), ' ' || char(9, 10, 13)) GLOB '*[^0-9]*';
    UPDATE inbound SET body = 'RESTART ******' WHERE upper(trim(body, ' ' || char(9, 10, 13))) GLOB 'RESTART[' || char(32, 9, 10, 13) || ']*'
        AND length(ltrim(substr(trim(body, ' ' || char(9, 10, 13)), 8), ' ' || char(9, 10, 13))) BETWEEN 6 AND 32 AND NOT ltrim(substr(trim(body, ' ' || char(9, 10, 13)), 8), ' ' || char(9, 10, 13)) GLOB '*[^0-9]*';
    UPDATE webhook_outbox SET payload = json_set(payload, '$.data.body', 'STATUS ******') WHERE type = 'message.received'
        AND upper(trim(json_extract(payload, '$.data.body'), ' ' || char(9, 10, 13))) GLOB 'STATUS[' || char(32, 9, 10, 13) || ']*'
        AND length(ltrim(substr(trim(json_extract(payload, '$.data.body'), ' ' || char(9, 10, 13)), 7), ' ' || char(9, 10, 13))) BETWEEN 6 AND 32 AND NOT ltrim(substr(trim(json_extract(payload, '$.data.body'), ' ' || char(9, 10, 13)), 7), ' ' || char(9, 10, 13)) GLOB '*[^0-9]*';
    UPDATE webhook_outbox SET payload = json_set(payload, '$.data.body', 'ACK ******') WHERE type = 'message.received'
        AND upper(trim(json_extract(payload, '$.data.body'), ' ' || char(9, 10, 13))) GLOB 'ACK[' || char(32, 9, 10, 13) || ']*'
        AND length(ltrim(substr(trim(json_extract(payload, '$.data.body'), ' ' || char(9, 10, 13)), 4), ' ' || char(9, 10, 13))) BETWEEN 6 AND 32 AND NOT ltrim(substr(trim(json_extract(payload, '$.data.body'), ' ' || char(9, 10, 13)), 4), ' ' || char(9, 10, 13)) GLOB '*[^0-9]*';
    UPDATE webhook_outbox SET payload = json_set(payload, '$.data.body', 'RESTART ******') WHERE type = 'message.received'
        AND upper(trim(json_extract(payload, '$.data.body'), ' ' || char(9, 10, 13))) GLOB 'RESTART[' || char(32, 9, 10, 13) || ']*'
        AND length(ltrim(substr(trim(json_extract(payload, '$.data.body'), ' ' || char(9, 10, 13)), 8), ' ' || char(9, 10, 13))) BETWEEN 6 AND 32 AND NOT ltrim(substr(trim(json_extract(payload, '$.data.body'), ' ' || char(9, 10, 13)), 8), ' ' || char(9, 10, 13)) GLOB '*[^0-9]*';
    """,
    # 4 (task bounded): per-target webhook queues; retention finds old rows by index
    """
    ALTER TABLE webhook_outbox ADD COLUMN target TEXT NOT NULL DEFAULT '';
    UPDATE webhook_outbox SET target = url;
    CREATE INDEX webhook_target ON webhook_outbox(target, id) WHERE delivered_at IS NULL AND abandoned_at IS NULL;
    CREATE INDEX messages_final_at ON messages(final_at) WHERE final_at IS NOT NULL;
    CREATE INDEX inbound_received_at ON inbound(received_at);
    """,
    # 5 (task "tenants", issue 11): keys as tenants and the audit trail.
    # A `read` key was "read everything" before scopes narrowed it to its own messages:
    # existing keys become `read_all` so that apps built on them keep working.
    """
    UPDATE api_keys SET scopes = trim(replace(',' || scopes || ',', ',read,', ',read_all,'), ',');
    ALTER TABLE api_keys ADD COLUMN per_hour INTEGER;
    ALTER TABLE api_keys ADD COLUMN per_day INTEGER;
    ALTER TABLE api_keys ADD COLUMN max_priority INTEGER;
    CREATE INDEX messages_key ON messages(key_id, seq);
    CREATE TABLE key_usage (
        key_id INTEGER NOT NULL,
        hour INTEGER NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (key_id, hour)
    ) WITHOUT ROWID;
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        detail TEXT
    );
    CREATE INDEX audit_at ON audit(at);
    """,
    # 6 (issue 10, quarantine): PDUs no decoder could read, kept before the modem deletes them
    """
    CREATE TABLE quarantine (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        at REAL NOT NULL,
        port TEXT NOT NULL,
        memory TEXT NOT NULL,
        idx INTEGER,
        pdu TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE UNIQUE INDEX quarantine_slot ON quarantine(port, memory, idx, pdu);
    """,
    # 7 (issue 10, items 6 and 7, branch appfield): an 8-bit and a 16-bit concatenation reference
    # with the same number are different messages, so the width is part of the reassembly key
    # (parts already waiting: a reference above 255 can only be 16-bit, the rest are taken as
    # 8-bit); and until when a limit holds a message back, for the status page (a rate limit
    # holds the head of the queue without moving its due time, which would reorder the queue).
    """
    CREATE TABLE inbound_parts_new (
        sender TEXT NOT NULL,
        ref_bits INTEGER NOT NULL,
        ref INTEGER NOT NULL,
        total INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        encoding TEXT NOT NULL,
        user_data BLOB NOT NULL,
        sent_at REAL,
        received_at REAL NOT NULL,
        PRIMARY KEY (sender, ref_bits, ref, total, seq)
    );
    INSERT INTO inbound_parts_new (sender, ref_bits, ref, total, seq, encoding, user_data, sent_at, received_at)
        SELECT sender, CASE WHEN ref > 255 THEN 16 ELSE 8 END, ref, total, seq, encoding, user_data, sent_at,
               received_at FROM inbound_parts;
    DROP TABLE inbound_parts;
    ALTER TABLE inbound_parts_new RENAME TO inbound_parts;
    ALTER TABLE messages ADD COLUMN held_until REAL;
    CREATE INDEX messages_held_back ON messages(held_until) WHERE status = 'queued' AND delay_reason IS NOT NULL;
    """,
    # 8 (task login): status-page admin sessions, ended by logout, expiry or revoking their API key
    """
    CREATE TABLE web_sessions (
        id TEXT PRIMARY KEY,
        actor TEXT NOT NULL,
        key_id INTEGER,
        address TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        ended_at REAL
    );
    CREATE INDEX web_sessions_expires ON web_sessions(expires_at);
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)
# Migration 4 can only copy `url` into `target`; the queue key is webhook_target(url) (Python),
# set in the same transaction so upgraded rows share the queue of new rows to the same receiver.
_WEBHOOK_TARGETS_ADDED = 4
# The parts of one concatenated message (a fixed clause; only values are bound).
_PARTS_KEY = "sender = ? AND ref_bits = ? AND ref = ? AND total = ?"


class StoreError(Exception):
    """Base of ledger errors the API maps to responses."""


class StorageFull(StoreError):
    """The disk is full: nothing new can be accepted (HTTP 507)."""


class QueueFull(StoreError):
    """More messages wait than the configured maximum (HTTP 503)."""


class NotFound(StoreError):
    """No such message."""


class Conflict(StoreError):
    """The request conflicts with the message's state (e.g. cancel after sending)."""


class IdempotencyMismatch(StoreError):
    """An idempotency key was reused with a different request."""


class OptedOut(StoreError):
    """The recipient sent STOP."""


class QuotaExceeded(StoreError):
    """The key used its messages for this hour or day (HTTP 429 with Retry-After)."""

    def __init__(self, window: str, limit: int, retry_after_s: int) -> None:
        super().__init__(f"{limit} messages per {window}")
        self.window = window
        self.limit = limit
        self.retry_after_s = retry_after_s


class KeyConflict(StoreError):
    """An imported key is already in the ledger as a revoked key."""


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

    def fingerprint(self) -> str:
        doc = {
            "to": self.to,
            "body": self.body,
            "priority": int(self.priority),
            "send_at": self.send_at,
            "validity_s": self.validity_s,
            "status_callback": self.status_callback,
            "metadata": self.metadata,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


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
    parts: tuple[Part, ...] = ()
    events: tuple[Event, ...] = ()


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

    @property
    def quota(self) -> Quota:
        return Quota(self.per_hour, self.per_day)


@dataclass(frozen=True)
class KeyLimits:
    """What `smsgw keys create/import` sets besides scopes; None is unlimited."""

    per_hour: int | None = None
    per_day: int | None = None
    max_priority: Priority | None = None

    @property
    def priority_value(self) -> int | None:
        return None if self.max_priority is None else int(self.max_priority)

    @classmethod
    def of(cls, key: ApiKey) -> KeyLimits:
        return cls(key.per_hour, key.per_day, key.max_priority)

    def describe(self) -> str:
        def show(n: int | None) -> str:
            return "unlimited" if n is None else str(n)

        top = "high" if self.max_priority is None else self.max_priority.name.lower()
        return f"{show(self.per_hour)}/hour, {show(self.per_day)}/day, priority up to {top}"


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


def webhook_target(url: str) -> str:
    """The queue a webhook waits in: its scheme, host and port (one dead receiver delays only itself)."""
    parts = urllib.parse.urlsplit(url.removeprefix("twilio:"))
    try:
        port = parts.port
    except ValueError:
        port = None
    host = (parts.hostname or "").lower()
    return f"{parts.scheme}://{host}:{port or (443 if parts.scheme == 'https' else 80)}"


async def _retarget_pending_webhooks(db: aiosqlite.Connection) -> None:
    rows = await db.execute_fetchall(
        "SELECT id, url FROM webhook_outbox WHERE delivered_at IS NULL AND abandoned_at IS NULL"
    )
    await db.executemany(
        "UPDATE webhook_outbox SET target = ? WHERE id = ?",
        [(webhook_target(r["url"]), r["id"]) for r in rows],
    )


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


@dataclass(frozen=True)
class _Accept:
    """One accept waiting for the next group commit."""

    new: NewMessage
    key_id: int | None
    queue_max: int
    quota: Quota | None
    actor: Actor | None
    future: asyncio.Future[tuple[Message, bool]]


@dataclass
class _BatchExtras:
    """Key usage and audit rows of one group commit, written in one trip each at its end:
    per accept they would add two trips to the database thread (~35% fewer accepts/s)."""

    loaded: dict[int, dict[int, int]] = field(default_factory=dict)  # key -> hour -> messages
    added: dict[tuple[int, int], int] = field(default_factory=dict)  # (key, hour) -> accepted now
    audits: list[tuple[Any, ...]] = field(default_factory=list)

    async def usage(self, db: aiosqlite.Connection, key_id: int, hour: int) -> list[tuple[int, int]]:
        """(hour, messages) of the key's last 24 hours, this batch included, oldest first."""
        if key_id not in self.loaded:
            rows = await _all(
                db, "SELECT hour, n FROM key_usage WHERE key_id = ? AND hour > ?", (key_id, hour - 24)
            )
            self.loaded[key_id] = {int(r["hour"]): int(r["n"]) for r in rows}
        buckets = dict(self.loaded[key_id])
        for (k, h), n in self.added.items():
            if k == key_id:
                buckets[h] = buckets.get(h, 0) + n
        return sorted((h, n) for h, n in buckets.items() if h > hour - 24)

    def accepted(
        self, key_id: int | None, hour: int, actor: Actor | None, msg_id: str, new: NewMessage, now: float
    ) -> None:
        if key_id is not None:
            self.added[key_id, hour] = self.added.get((key_id, hour), 0) + 1
        if actor is not None:
            action = "test_sms" if new.source == "page" else "send"
            detail = f"via {new.source}, priority {new.priority.name.lower()}"
            self.audits.append((now, actor.name[:200], actor.source[:200], action, msg_id, detail))

    async def write(self, db: aiosqlite.Connection) -> None:
        if self.added:
            await db.executemany(
                "INSERT INTO key_usage (key_id, hour, n) VALUES (?, ?, ?) "
                "ON CONFLICT(key_id, hour) DO UPDATE SET n = n + excluded.n",
                [(k, h, n) for (k, h), n in self.added.items()],
            )
        if self.audits:
            await db.executemany(
                "INSERT INTO audit (at, actor, source, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
                self.audits,
            )


def new_id(prefix: str) -> str:
    """Time-sortable id: prefix + 10 hex of milliseconds + 12 random hex."""
    return f"{prefix}_{int(time.time() * 1000):010x}{secrets.token_hex(6)}"


def hash_key(key: str) -> str:
    # API keys are 32 random bytes: SHA-256 suffices, a slow KDF buys nothing.
    return hashlib.sha256(key.encode()).hexdigest()


# SQLITE_IOERR_SHMSIZE: the -shm file could not be grown, which on a full disk is ENOSPC.
_FULL_CODES = {sqlite3.SQLITE_FULL, getattr(sqlite3, "SQLITE_IOERR_SHMSIZE", 4874)}


def _is_disk_full(exc: BaseException) -> bool:
    return (
        isinstance(exc, sqlite3.Error)
        and (getattr(exc, "sqlite_errorcode", None) in _FULL_CODES or "disk is full" in str(exc))
    ) or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)


def vital(
    method: Callable[Concatenate[Store, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[Store, _P], Coroutine[Any, Any, _T]]:
    """Mark a write that records what the modem or the network already did: it runs while the
    disk is full, on the reserve (its transactions use `_tx(critical=True)`)."""

    async def wrapper(self: Store, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await self._vital(lambda: method(self, *args, **kwargs))

    functools.update_wrapper(wrapper, method)
    return wrapper


class Store:
    """The ledger. One connection: every write is serialised through it (one writer)."""

    def __init__(
        self,
        path: str | Path,
        *,
        webhooks: Sequence[WebhookTarget] = (),
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    ) -> None:
        self.path = str(path)
        self._reserve = (
            None if self.path == ":memory:" else Reserve(Path(self.path + ".reserve"), reserve_bytes)
        )
        # Why the ledger takes only vital writes now (a sentence), or None; `writable` is its inverse.
        self.storage_problem: str | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self._releases = 0  # steps of the reserve given up so far
        self._db: aiosqlite.Connection | None = None
        self._rdb: aiosqlite.Connection | None = None
        self._accepts: list[_Accept] = []
        self._usage_pruned_hour = 0
        self._accept_task: asyncio.Task[None] | None = None
        self.outbox_changed = asyncio.Event()  # set after a commit that queued webhooks
        self._outbox_pending = False
        self._webhooks = tuple(webhooks)
        self._write_lock = asyncio.Lock()

    # ------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        """Open (creating and migrating as needed)."""
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if (
            self._reserve is not None
            and await asyncio.to_thread(self._reserve.free_bytes) < RESERVE_STEP_BYTES
        ):
            # Started on a full disk: SQLite cannot even create its -shm file to read the ledger.
            self._set_full(DISK_FULL)
            await self._release_reserve(floor=0)
        db = await aiosqlite.connect(self.path, isolation_level=None)
        db.row_factory = sqlite3.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA busy_timeout=5000")
        await db.execute("PRAGMA foreign_keys=ON")
        self._db = db
        row = await _one(db, "PRAGMA user_version", ())
        if row is not None and int(row[0]) == 0:
            # A new ledger: freed pages can be given back without a full VACUUM (compact()).
            await db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        await self._migrate()
        # Readers get their own connection: under WAL they see only committed rows,
        # never another task's open transaction on the writer.
        reader = await aiosqlite.connect(self.path, isolation_level=None)
        reader.row_factory = sqlite3.Row
        await reader.execute("PRAGMA busy_timeout=5000")
        await reader.execute("PRAGMA query_only=1")
        self._rdb = reader
        if self.storage_problem is None and not await self._fill_reserve():
            self._set_full(self._no_reserve())

    # ------------------------------------------------------------ disk space
    def _no_reserve(self) -> str:
        size = self._reserve.target if self._reserve is not None else 0
        return (
            f"The ledger's disk has no room for the {size / 2**20:g} MiB kept in reserve for recording sends: "
            "new messages are refused and sending is paused until space is freed."
        )

    def _set_full(self, why: str) -> None:
        if self.storage_problem is None:
            _LOGGER.error("%s", why)  # once per episode; writes refused meanwhile say nothing more
        self.storage_problem = why
        self.writable.clear()

    async def _fill_reserve(self) -> bool:
        return self._reserve is None or await asyncio.to_thread(self._reserve.fill)

    async def _release_reserve(self, *, floor: int = OPEN_RESERVE_BYTES) -> bool:
        """Give up a step of the reserve (a vital write failed, or the ledger must open on a full
        disk); False when none is left above `floor`."""
        if self._reserve is None:
            return False
        freed = await asyncio.to_thread(self._reserve.release, floor=floor)
        if freed:
            self._releases += 1
            _LOGGER.warning("gave up %d KiB of the ledger's disk reserve", freed // 1024)
        return freed > 0

    async def check_space(self) -> bool:
        """While the disk is full: once it has room again, restore the reserve and take writes.

        True when the ledger takes every write.
        """
        if self.storage_problem is None:
            return True
        if not await self._fill_reserve():
            return False
        self.storage_problem = None
        self.writable.set()
        _LOGGER.warning("the ledger's disk has room again (reserve restored): accepting and sending resume")
        return True

    async def _vital(self, op: Callable[[], Awaitable[_T]]) -> _T:
        """A write that must not be lost to a full disk (what the modem did, what the network said):
        on ENOSPC give up a step of the reserve and try again, until none is left."""
        while True:
            releases = self._releases
            try:
                return await op()
            except StorageFull:
                # Two vital writes failing together give up one step, not one each.
                if releases == self._releases and not await self._release_reserve():
                    raise

    @property
    def reserve_bytes(self) -> int:
        """The disk reserve held now (bytes)."""
        return 0 if self._reserve is None else self._reserve.size

    async def close(self) -> None:
        if self._rdb is not None:
            await self._rdb.close()
            self._rdb = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def rdb(self) -> aiosqlite.Connection:
        """The read connection (committed data only)."""
        if self._rdb is None:
            raise RuntimeError("store is not open")
        return self._rdb

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def _migrate(self) -> None:
        row = await _one(self.db, "PRAGMA user_version", ())
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"ledger schema {version} is newer than this smsgw ({SCHEMA_VERSION}): upgrade smsgw"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            async with self._tx(critical=True):
                for statement in _split_sql(_MIGRATIONS[target - 1]):
                    await self.db.execute(statement)
                if target == _WEBHOOK_TARGETS_ADDED:
                    await _retarget_pending_webhooks(self.db)
                await self.db.execute(f"PRAGMA user_version={target}")
            _LOGGER.info("ledger migrated to schema %d", target)

    class _Tx:
        def __init__(self, store: Store, critical: bool) -> None:
            self.store = store
            self.critical = critical

        async def __aenter__(self) -> aiosqlite.Connection:
            # On a full disk what room is left goes to vital writes; the rest fail at once.
            if not self.critical and self.store.storage_problem is not None:
                raise StorageFull(self.store.storage_problem)
            await self.store._write_lock.acquire()
            self.store._outbox_pending = False
            # Shielded: a cancelled caller must not leave a BEGIN running in the database
            # thread with nobody to end it (every later write would then fail).
            begin = asyncio.ensure_future(self.store.db.execute("BEGIN IMMEDIATE"))
            try:
                await asyncio.shield(begin)
            except asyncio.CancelledError:
                with contextlib.suppress(BaseException):
                    await begin
                    await self._rollback()
                self.store._write_lock.release()
                raise
            except BaseException:
                self.store._write_lock.release()
                raise
            return self.store.db

        async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
            try:
                if exc is None:
                    commit = asyncio.ensure_future(self.store.db.execute("COMMIT"))
                    try:
                        try:
                            await asyncio.shield(commit)
                        except asyncio.CancelledError:
                            # The COMMIT runs on regardless: let it finish before the lock is free.
                            with contextlib.suppress(BaseException):
                                await commit
                            raise
                        if self.store._outbox_pending:
                            self.store.outbox_changed.set()
                        if self.critical and self.store.storage_problem is not None:
                            await self._checkpoint()
                    except asyncio.CancelledError:
                        raise
                    except BaseException as commit_exc:
                        await self._rollback()
                        if _is_disk_full(commit_exc):
                            self.store._set_full(DISK_FULL)
                            raise StorageFull(DISK_FULL) from commit_exc
                        raise
                else:
                    await self._rollback()
                    if _is_disk_full(exc):
                        self.store._set_full(DISK_FULL)
                        raise StorageFull(DISK_FULL) from exc
            finally:
                self.store._write_lock.release()

        async def _checkpoint(self) -> None:
            # On a full disk the WAL must not grow (~5 KiB a heartbeat, up to 1000 pages before
            # SQLite's own checkpoint): copied back, the next write starts it over in place.
            with contextlib.suppress(sqlite3.Error):
                await self.store.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

        async def _rollback(self) -> None:
            with contextlib.suppress(sqlite3.Error):
                await self.store.db.execute("ROLLBACK")

    def _tx(self, *, critical: bool = False) -> Store._Tx:
        """BEGIN IMMEDIATE ... COMMIT, serialised with every other write.

        Only `critical` ones run while the disk is full (see `_vital`).
        """
        return Store._Tx(self, critical)

    # -------------------------------------------------------------- messages
    async def accept(
        self,
        new: NewMessage,
        *,
        key_id: int | None,
        queue_max: int,
        quota: Quota | None = None,
        actor: Actor | None = None,
    ) -> tuple[Message, bool]:
        """Commit a new message (or find the one with the same idempotency key): (message, created).

        Concurrent accepts share one transaction and so one fsync (group commit): with
        synchronous=FULL the fsync, not the SQL, is what limits accepts per second. The
        key's usage counter and the audit row are written in that same transaction.
        """
        future: asyncio.Future[tuple[Message, bool]] = asyncio.get_running_loop().create_future()
        self._accepts.append(_Accept(new, key_id, queue_max, quota, actor, future))
        if self._accept_task is None:
            self._accept_task = asyncio.create_task(self._accept_batches())
        return await future

    async def _accept_batches(self) -> None:
        try:
            while self._accepts:
                batch, self._accepts = self._accepts[:ACCEPT_BATCH_MAX], self._accepts[ACCEPT_BATCH_MAX:]
                outcomes: list[
                    tuple[asyncio.Future[tuple[Message, bool]], tuple[Message, bool] | BaseException]
                ] = []
                try:
                    async with self._tx() as db:
                        row = await _one(
                            db,
                            "SELECT count(*) AS n FROM messages WHERE status IN ('queued', 'scheduled', 'sending')",
                            (),
                        )
                        waiting = int(row["n"]) if row is not None else 0
                        await self._prune_usage(db)
                        extras = _BatchExtras()
                        for item in batch:
                            if item.future.done():  # the caller went away before we began: nothing to commit
                                continue
                            await db.execute("SAVEPOINT accept")
                            try:
                                result = await self._accept_one(db, item, waiting, extras)
                            except StoreError as exc:
                                await db.execute("ROLLBACK TO accept")
                                outcomes.append((item.future, exc))
                            else:
                                waiting += result[1]
                                outcomes.append((item.future, result))
                            await db.execute("RELEASE accept")
                        await extras.write(db)
                except (
                    BaseException
                ) as exc:  # the commit failed (disk full): nothing of the batch is accepted
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for future, outcome in outcomes:
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._accept_task = None

    async def _prune_usage(self, db: aiosqlite.Connection) -> None:
        """Usage older than a day counts for nothing: drop it once an hour."""
        hour = int(time.time() // 3600)
        if hour != self._usage_pruned_hour:
            await db.execute("DELETE FROM key_usage WHERE hour <= ?", (hour - 24,))
            self._usage_pruned_hour = hour

    async def _accept_one(
        self, db: aiosqlite.Connection, item: _Accept, waiting: int, extras: _BatchExtras
    ) -> tuple[Message, bool]:
        new, key_id, queue_max = item.new, item.key_id, item.queue_max
        now = time.time()
        if new.idempotency_key is not None:
            row = await _one(
                db,
                "SELECT message_id, request_hash FROM idempotency WHERE key_id IS ? AND key = ?",
                (key_id or 0, new.idempotency_key),
            )
            if row is not None:
                if row["request_hash"] != new.fingerprint():
                    raise IdempotencyMismatch(new.idempotency_key)
                existing = await self._get(db, row["message_id"])
                if existing is None:  # pragma: no cover  (a key always points at a message)
                    raise NotFound(row["message_id"])
                return existing, False
        if await _one(db, "SELECT 1 FROM optouts WHERE number = ?", (new.to,)) is not None:
            raise OptedOut(new.to)
        hour = int(now // 3600)
        quota = item.quota
        if (
            key_id is not None
            and quota is not None
            and (quota.per_hour is not None or quota.per_day is not None)
        ):
            _quota_check(quota, await extras.usage(db, key_id, hour), hour, now)
        if waiting >= queue_max:
            raise QueueFull(f"{waiting} messages are waiting")
        msg_id = new_id("msg")
        scheduled = new.send_at is not None and new.send_at > now
        status = State.SCHEDULED if scheduled else State.QUEUED
        start = new.send_at if scheduled and new.send_at is not None else now
        metadata = json.dumps(new.metadata) if new.metadata is not None else None
        cur = await db.execute(
            """INSERT INTO messages (id, key_id, to_number, body, encoding, segments, priority, status,
               created_at, updated_at, send_at, not_before, expires_at, status_callback, metadata, source)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                msg_id,
                key_id,
                new.to,
                new.body,
                new.encoding,
                new.segments,
                int(new.priority),
                status.value,
                now,
                now,
                new.send_at,
                start,
                start + new.validity_s,
                new.status_callback,
                metadata,
                new.source,
            ),
        )
        seq = int(cur.lastrowid or 0)
        await db.executemany(
            "INSERT INTO parts (message_id, seq, total, status) VALUES (?, ?, ?, 'pending')",
            [(msg_id, i, new.segments) for i in range(1, new.segments + 1)],
        )
        detail = f"accepted ({new.segments} segment{'s' if new.segments > 1 else ''}, {new.encoding})"
        if scheduled:
            detail += ", scheduled"
        await self._event(db, msg_id, "accepted", None, status, detail, now)
        if new.idempotency_key is not None:
            await db.execute(
                "INSERT INTO idempotency (key_id, key, message_id, request_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                (key_id or 0, new.idempotency_key, msg_id, new.fingerprint(), now),
            )
        # Built from what was just written: saves three queries per accept on the hot path.
        message = Message(
            seq=seq,
            id=msg_id,
            to=new.to,
            body=new.body,
            encoding=new.encoding,
            segments=new.segments,
            priority=new.priority,
            status=status,
            attempts=0,
            error_code=None,
            error_message=None,
            created_at=now,
            updated_at=now,
            send_at=new.send_at,
            not_before=start,
            expires_at=start + new.validity_s,
            sent_at=None,
            delivered_at=None,
            report_expired=False,
            concat_ref=None,
            modem=None,
            held=False,
            ambiguous=0,
            status_callback=new.status_callback,
            metadata=new.metadata,
            delay_reason=None,
            key_id=key_id,
            parts=tuple(
                Part(i, new.segments, PartState.PENDING, None, None, None, None, None)
                for i in range(1, new.segments + 1)
            ),
            events=(Event(now, "accepted", None, status.value, detail),),
        )
        await self._notify(db, message, now)
        extras.accepted(key_id, hour, item.actor, msg_id, new, now)
        return message, True

    async def get(self, msg_id: str) -> Message | None:
        """The message with parts and events, or None."""
        return await self._get(self.rdb, msg_id)

    async def list_messages(
        self,
        *,
        status: str | None = None,
        to: str | None = None,
        limit: int = 50,
        before_seq: int | None = None,
        key_id: int | None = None,
    ) -> list[Message]:
        """Newest first; `before_seq` continues a page."""
        sql, args = _page_query(
            "messages",
            [("status = ?", status), ("to_number = ?", to), ("seq < ?", before_seq), ("key_id = ?", key_id)],
            limit,
        )
        rows = await _all(self.rdb, sql, args)
        return [_message(r) for r in rows]

    async def cancel(self, msg_id: str, *, owner: int | None = None, actor: Actor | None = None) -> Message:
        """Cancel a message not yet handed to the modem; Conflict once sending began.

        With `owner`, a message another key sent is NotFound (its existence is not revealed).
        """
        now = time.time()
        async with self._tx() as db:
            msg = await self._get(db, msg_id)
            if msg is None or (owner is not None and msg.key_id != owner):
                raise NotFound(msg_id)
            if msg.status is State.CANCELED:
                return msg
            if msg.status not in (State.QUEUED, State.SCHEDULED):
                raise Conflict(msg.status.value)
            await self._transition(db, msg, State.CANCELED, "canceled", "canceled by request", now)
            if actor is not None:
                await _insert_audit(db, actor, "cancel", msg_id, f"was {msg.status.value}", now)
            result = await self._get(db, msg_id)
            assert result is not None  # noqa: S101
            return result

    async def claim_next(
        self,
        modem: str,
        *,
        now: float | None = None,
        skip: Iterable[str] = (),
        delay_until: dict[str, float] | None = None,
        delay_reason: str = "",
        mark_first_part: bool = False,
    ) -> Message | None:
        """Take the most urgent queued message due now: committed as `sending` before any AT.

        Recipients in `delay_until` (anti-flood) are passed over; their due messages are
        pushed back to that time with `delay_reason` in the timeline.
        """
        now = time.time() if now is None else now
        skip_set = set(skip)
        delays = delay_until or {}
        async with self._tx() as db:
            rows = await _all(
                db,
                "SELECT * FROM messages WHERE status = 'queued' AND not_before <= ? "
                "ORDER BY priority, not_before, seq LIMIT 64",
                (now,),
            )
            for row in rows:
                if row["to_number"] in skip_set:
                    continue
                if row["to_number"] in delays:
                    await self._delay(db, row, delays[row["to_number"]], delay_reason, now)
                    continue
                msg = _message(row)
                if msg.expires_at <= now:
                    await self._transition(
                        db,
                        msg,
                        State.FAILED,
                        "expired",
                        "validity expired before sending",
                        now,
                        error=("expired", "validity period expired before the message could be sent"),
                    )
                    continue
                check(msg.status, State.SENDING)
                ref = msg.concat_ref if msg.concat_ref is not None else secrets.randbelow(256)
                await db.execute(
                    "UPDATE messages SET status = 'sending', attempts = attempts + 1, modem = ?, concat_ref = ?, "
                    "updated_at = ?, delay_reason = NULL, held_until = NULL WHERE id = ?",
                    (modem, ref, now, msg.id),
                )
                if mark_first_part:
                    # Saves the caller a transaction before AT+CMGS: the part counts as handed over.
                    await db.execute(
                        "UPDATE parts SET status = 'sending' WHERE message_id = ? AND seq = "
                        "(SELECT min(seq) FROM parts WHERE message_id = ? AND status IN ('pending', 'sending'))",
                        (msg.id, msg.id),
                    )
                await self._event(
                    db,
                    msg.id,
                    "attempt",
                    msg.status,
                    State.SENDING,
                    f"attempt {msg.attempts + 1} on {modem}",
                    now,
                )
                claimed = await self._get(db, msg.id)
                assert claimed is not None  # noqa: S101
                await self._notify(db, claimed, now)
                return claimed
            return None

    async def next_due(self) -> float | None:
        """Earliest time a queued or scheduled message becomes due (None: nothing waits)."""
        row = await _one(
            self.rdb,
            "SELECT min(not_before) AS t FROM messages WHERE status IN ('queued', 'scheduled')",
            (),
        )
        return None if row is None or row["t"] is None else float(row["t"])

    async def submitted_since(self, modem: str, since: float) -> list[float]:
        """When `modem` handed parts to the network since `since` (the rate limit after a restart)."""
        rows = await _all(
            self.rdb,
            "SELECT submitted_at FROM parts WHERE submitted_at >= ? AND modem = ? ORDER BY submitted_at",
            (since, modem),
        )
        return [float(r["submitted_at"]) for r in rows]

    async def part_sending(self, msg_id: str, seq: int) -> None:
        """Commit that this part is about to go to AT+CMGS (crash point)."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE parts SET status = 'sending' WHERE message_id = ? AND seq = ? AND status = 'pending'",
                (msg_id, seq),
            )

    @vital
    async def part_submitted(
        self, msg_id: str, seq: int, mr: int, modem: str, *, at: float | None = None
    ) -> Message:
        """Record +CMGS: <mr> for one part; the message becomes `sent` with its last part."""
        now = time.time() if at is None else at
        async with self._tx(critical=True) as db:
            await db.execute(
                "UPDATE parts SET status = 'sent', mr = ?, modem = ?, submitted_at = ? WHERE message_id = ? AND seq = ?",
                (mr, modem, now, msg_id, seq),
            )
            msg = await self._get(db, msg_id)
            if msg is None:
                raise NotFound(msg_id)
            await self._event(
                db,
                msg_id,
                "part_submitted",
                None,
                None,
                f"part {seq}/{msg.segments} accepted by the network, MR {mr}",
                now,
            )
            if (
                all(
                    p.status is not PartState.PENDING and p.status is not PartState.SENDING for p in msg.parts
                )
                and msg.status is State.SENDING
            ):
                await self._transition(
                    db, msg, State.SENT, "sent", f"all {msg.segments} part(s) accepted by the network", now
                )
            # A report may have arrived before we recorded +CMGS (EC25: ~1 s after): match it now.
            pending = await _all(
                db,
                "SELECT * FROM unmatched_reports WHERE mr = ? AND received_at >= ? ORDER BY id",
                (mr, now - 600),
            )
            for rep in pending:
                outcome = await self._apply_report(
                    db, rep["mr"], rep["recipient"], rep["status"], rep["received_at"]
                )
                if outcome.matched:
                    await db.execute("DELETE FROM unmatched_reports WHERE id = ?", (rep["id"],))
            result = await self._get(db, msg_id)
            assert result is not None  # noqa: S101
            return result

    @vital
    async def send_failed(
        self,
        msg_id: str,
        *,
        code: str,
        message: str,
        retry_at: float | None,
        max_attempts: int,
    ) -> Message:
        """A send attempt failed: back to `queued` at retry_at (transient), else `failed`."""
        now = time.time()
        async with self._tx(critical=True) as db:
            msg = await self._get(db, msg_id)
            if msg is None:
                raise NotFound(msg_id)
            await db.execute(
                "UPDATE parts SET status = 'pending' WHERE message_id = ? AND status = 'sending'", (msg_id,)
            )
            if retry_at is not None and msg.attempts < max_attempts and retry_at < msg.expires_at:
                await db.execute("UPDATE messages SET not_before = ? WHERE id = ?", (retry_at, msg_id))
                await self._transition(
                    db,
                    msg,
                    State.QUEUED,
                    "retry",
                    f"{code}: {message}; retry in {retry_at - now:.0f} s",
                    now,
                    error=(code, message),
                )
            else:
                why = (
                    ""
                    if retry_at is None
                    else (
                        " (attempts exhausted)"
                        if msg.attempts >= max_attempts
                        else " (validity would expire)"
                    )
                )
                await self._transition(
                    db, msg, State.FAILED, "failed", f"{code}: {message}{why}", now, error=(code, message)
                )
            result = await self._get(db, msg_id)
            assert result is not None  # noqa: S101
            return result

    @vital
    async def release(self, msg_id: str, reason: str) -> None:
        """Put a claimed message back untouched (the modem went away before any AT)."""
        now = time.time()
        async with self._tx(critical=True) as db:
            msg = await self._get(db, msg_id)
            if msg is None or msg.status is not State.SENDING:
                return
            await db.execute(
                "UPDATE parts SET status = 'pending' WHERE message_id = ? AND status = 'sending'", (msg_id,)
            )
            await db.execute("UPDATE messages SET attempts = max(attempts - 1, 0) WHERE id = ?", (msg_id,))
            await self._transition(db, msg, State.QUEUED, "released", reason, now)

    async def delay(self, msg_id: str, until: float, reason: str, *, move: bool = True) -> None:
        """Hold a queued message back until `until`, saying why in the timeline (once per reason).

        `move=False` leaves its due time (and so its place in the queue) as it is: for a limit
        that holds the whole modem, not this message.
        """
        now = time.time()
        async with self._tx() as db:
            row = await _one(db, "SELECT id, status, delay_reason FROM messages WHERE id = ?", (msg_id,))
            if row is None or row["status"] != State.QUEUED.value:
                return
            await self._delay(db, row, until, reason, now, move=move)

    async def _delay(
        self,
        db: aiosqlite.Connection,
        row: sqlite3.Row,
        until: float,
        reason: str,
        now: float,
        *,
        move: bool = True,
    ) -> None:
        await db.execute(
            "UPDATE messages SET not_before = CASE WHEN ? THEN max(not_before, ?) ELSE not_before END, "
            "delay_reason = ?, held_until = ?, updated_at = ? WHERE id = ?",
            (int(move), until, reason, until, now, row["id"]),
        )
        if row["delay_reason"] != reason:
            await self._event(db, row["id"], "delayed", None, None, f"{reason} until {_rfc3339(until)}", now)

    async def peek_next(self, now: float) -> str | None:
        """Id of the message the next claim would take (for saying why it waits)."""
        row = await _one(
            self.rdb,
            "SELECT id FROM messages WHERE status = 'queued' AND not_before <= ? ORDER BY priority, not_before, seq LIMIT 1",
            (now,),
        )
        return None if row is None else str(row["id"])

    async def held_back(self, now: float) -> list[tuple[str, int, float]]:
        """(reason, messages, until) for queued messages a limit holds back past `now`."""
        rows = await _all(
            self.rdb,
            "SELECT delay_reason, count(*) AS n, max(held_until) AS until FROM messages "
            "WHERE status = 'queued' AND delay_reason IS NOT NULL AND held_until > ? GROUP BY delay_reason",
            (now,),
        )
        return [(str(r["delay_reason"]), int(r["n"]), float(r["until"])) for r in rows]

    @vital
    async def note(self, msg_id: str, kind: str, detail: str) -> None:
        """Add a timeline entry without a state change (e.g. an ambiguous outcome)."""
        now = time.time()
        async with self._tx(critical=True) as db:
            if kind == "outcome_unknown":
                await db.execute("UPDATE messages SET ambiguous = ambiguous + 1 WHERE id = ?", (msg_id,))
                await db.execute(
                    "INSERT INTO counters (name, value) VALUES ('ambiguous_parts', 1) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + 1"
                )
            await self._event(db, msg_id, kind, None, None, detail, now)

    async def promote_and_expire(self, now: float | None = None) -> int:
        """Scheduled messages that are due become queued; queued past validity fail."""
        now = time.time() if now is None else now
        changed = 0
        async with self._tx() as db:
            rows = await _all(
                db, "SELECT * FROM messages WHERE status = 'scheduled' AND not_before <= ?", (now,)
            )
            for row in rows:
                msg = _message(row)
                await self._transition(db, msg, State.QUEUED, "due", "scheduled time reached", now)
                changed += 1
            rows = await _all(
                db,
                "SELECT * FROM messages WHERE status IN ('queued', 'scheduled') AND expires_at <= ?",
                (now,),
            )
            for row in rows:
                msg = _message(row)
                await self._transition(
                    db,
                    msg,
                    State.FAILED,
                    "expired",
                    "validity expired before sending",
                    now,
                    error=("expired", "validity period expired before the message could be sent"),
                )
                changed += 1
        return changed

    @vital
    async def recover_inflight(self, policy: str) -> list[str]:
        """After a crash: messages left `sending` have an unknown outcome. Resend them, or hold them."""
        now = time.time()
        recovered: list[str] = []
        async with self._tx(critical=True) as db:
            rows = await _all(db, "SELECT * FROM messages WHERE status = 'sending' AND held = 0", ())
            for row in rows:
                msg = _message(row)
                parts = await _all(
                    db, "SELECT seq FROM parts WHERE message_id = ? AND status = 'sending'", (msg.id,)
                )
                unknown = [p["seq"] for p in parts]
                await db.execute(
                    "UPDATE messages SET ambiguous = ambiguous + ? WHERE id = ?", (len(unknown), msg.id)
                )
                await db.execute(
                    "INSERT INTO counters (name, value) VALUES ('ambiguous_parts', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (len(unknown),),
                )
                what = f"part(s) {', '.join(map(str, unknown))}" if unknown else "no part"
                if policy == "hold" and unknown:
                    await db.execute("UPDATE messages SET held = 1 WHERE id = ?", (msg.id,))
                    await self._event(
                        db,
                        msg.id,
                        "outcome_unknown",
                        None,
                        None,
                        f"the gateway stopped while {what} was being submitted: it may or may not have been sent; "
                        "held for an operator's decision (POST /api/v1/messages/{id}/resend or .../abandon)",
                        now,
                    )
                else:
                    await db.execute(
                        "UPDATE parts SET status = 'pending' WHERE message_id = ? AND status = 'sending'",
                        (msg.id,),
                    )
                    detail = (
                        f"the gateway stopped while {what} was being submitted: it may have been sent; "
                        "resending (the recipient may get it twice)"
                        if unknown
                        else "the gateway stopped before the modem was asked; sending again"
                    )
                    await self._transition(
                        db, msg, State.QUEUED, "outcome_unknown" if unknown else "recovered", detail, now
                    )
                recovered.append(msg.id)
        return recovered

    async def resolve_held(
        self, msg_id: str, action: str, *, owner: int | None = None, actor: Actor | None = None
    ) -> Message:
        """An operator's decision on a held message: 'resend' or 'cancel' (marks it failed)."""
        now = time.time()
        async with self._tx() as db:
            msg = await self._get(db, msg_id)
            if msg is None or (owner is not None and msg.key_id != owner):
                raise NotFound(msg_id)
            if not msg.held:
                raise Conflict("not held")
            await db.execute("UPDATE messages SET held = 0 WHERE id = ?", (msg_id,))
            if actor is not None:
                await _insert_audit(db, actor, "resend" if action == "resend" else "abandon", msg_id, "", now)
            if action == "resend":
                await db.execute(
                    "UPDATE parts SET status = 'pending' WHERE message_id = ? AND status = 'sending'",
                    (msg_id,),
                )
                await self._transition(db, msg, State.QUEUED, "operator", "operator chose to resend", now)
            else:
                await self._transition(
                    db,
                    msg,
                    State.FAILED,
                    "operator",
                    "operator chose not to resend",
                    now,
                    error=(
                        "outcome_unknown",
                        "the send was interrupted and the operator chose not to resend",
                    ),
                )
            result = await self._get(db, msg_id)
            assert result is not None  # noqa: S101
            return result

    # --------------------------------------------------------------- reports
    @vital
    async def apply_report(
        self, mr: int, recipient: str, status: int, *, at: float | None = None
    ) -> ReportOutcome:
        """Match a status report to a part by MR, recipient and time window; monotonic."""
        now = time.time() if at is None else at
        async with self._tx(critical=True) as db:
            outcome = await self._apply_report(db, mr, recipient, status, now)
            if not outcome.matched:
                await db.execute(
                    "INSERT INTO unmatched_reports (mr, recipient, status, received_at) VALUES (?, ?, ?, ?)",
                    (mr, recipient, status, now),
                )
            return outcome

    async def _apply_report(
        self, db: aiosqlite.Connection, mr: int, recipient: str, status: int, now: float
    ) -> ReportOutcome:
        from modem import same_subscriber  # noqa: PLC0415  (pure helper; the store stays modem-free otherwise)
        from modem.pdu import TpStatus  # noqa: PLC0415

        # References wrap at 256 and other software shares the modem: match on MR, recipient
        # and a window (Gammu smsd: DeliveryReportDelay 600 s; we allow days for late reports).
        rows = await _all(
            db,
            "SELECT p.message_id, p.seq, p.status, m.to_number FROM parts p JOIN messages m ON m.id = p.message_id "
            "WHERE p.mr = ? AND p.submitted_at >= ? ORDER BY p.submitted_at DESC LIMIT 20",
            (mr, now - 7 * 86400),
        )
        row = next((r for r in rows if same_subscriber(r["to_number"], recipient)), None)
        if row is None:
            return ReportOutcome(matched=False, note="no part with this reference and recipient")
        st = TpStatus(status)
        msg_id, seq = row["message_id"], row["seq"]
        part_state = PartState(row["status"])
        if part_state in (PartState.DELIVERED, PartState.UNDELIVERED):
            await self._event(
                db,
                msg_id,
                "report_ignored",
                None,
                None,
                f"part {seq}: late or duplicate report ({st.meaning}) after final",
                now,
            )
            return ReportOutcome(matched=True, message_id=msg_id, changed=False, note="duplicate")
        if not st.is_final:
            await db.execute(
                "UPDATE parts SET report_status = ?, report_at = ? WHERE message_id = ? AND seq = ?",
                (status, now, msg_id, seq),
            )
            await self._event(
                db,
                msg_id,
                "report",
                None,
                None,
                f"part {seq}: {st.meaning} (0x{status:02X}), network still trying",
                now,
            )
            return ReportOutcome(matched=True, message_id=msg_id, changed=False, note="intermediate")
        new_part = PartState.DELIVERED if st.is_success else PartState.UNDELIVERED
        await db.execute(
            "UPDATE parts SET status = ?, report_status = ?, report_at = ? WHERE message_id = ? AND seq = ?",
            (new_part.value, status, now, msg_id, seq),
        )
        await self._event(db, msg_id, "report", None, None, f"part {seq}: {st.meaning} (0x{status:02X})", now)
        msg = await self._get(db, msg_id)
        assert msg is not None  # noqa: S101
        if msg.status is State.SENT:
            states = [p.status for p in msg.parts]
            if any(s is PartState.UNDELIVERED for s in states):
                await self._transition(
                    db,
                    msg,
                    State.UNDELIVERED,
                    "undelivered",
                    f"part {seq} not delivered: {st.meaning}",
                    now,
                    error=(f"tp_status_{status:02x}", st.meaning),
                )
            elif all(s is PartState.DELIVERED for s in states):
                await self._transition(db, msg, State.DELIVERED, "delivered", "all parts delivered", now)
        return ReportOutcome(matched=True, message_id=msg_id, changed=True)

    async def expire_reports(self, timeout_s: float, *, now: float | None = None) -> int:
        """Messages `sent` with no final report after timeout_s: marked final without delivery proof."""
        now = time.time() if now is None else now
        async with self._tx() as db:
            rows = await _all(
                db,
                "SELECT id FROM messages WHERE status = 'sent' AND report_expired = 0 AND sent_at <= ?",
                (now - timeout_s,),
            )
            for row in rows:
                await db.execute(
                    "UPDATE messages SET report_expired = 1, final_at = ?, updated_at = ? WHERE id = ?",
                    (now, now, row["id"]),
                )
                await self._event(
                    db,
                    row["id"],
                    "report_timeout",
                    None,
                    None,
                    f"status report lost: none within {timeout_s / 3600:g} h; final as sent, delivery unconfirmed",
                    now,
                )
            if rows:
                await db.execute(
                    "INSERT INTO counters (name, value) VALUES ('reports_lost', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (len(rows),),
                )
            await db.execute("DELETE FROM unmatched_reports WHERE received_at < ?", (now - 7 * 86400,))
            return len(rows)

    # ------------------------------------------------------------------ inbound
    @vital  # a routed SMS (+CMT) not committed is gone; a stored one would fill the SIM
    async def add_inbound_part(
        self,
        *,
        sender: str,
        encoding: str,
        user_data: bytes,
        ref: int | None,
        total: int,
        seq: int,
        sent_at: float | None,
        join: Any,
        keyword_of: Any,
        seal: Any = None,
        ref_bits: int = 8,
    ) -> Inbound | None:
        """Commit one received part; returns the whole message once every part is here.

        Parts belong together by sender, reference width (8 or 16 bits: TS 23.040 9.2.3.24.1
        and .8 are different IEs, so 8-bit 42 and 16-bit 42 are two messages), reference and
        total. `join(encoding, [user_data...]) -> str` decodes the joined parts (UCS-2 surrogate
        pairs may be split across parts); `keyword_of(text) -> str|None` spots STOP/START;
        `seal(sender, text) -> (body, command_digest)` redacts an on-call command before it is stored.
        """
        now = time.time()
        async with self._tx(critical=True) as db:
            if ref is None or total <= 1:
                text = join(encoding, [user_data])
                return await self._commit_inbound(
                    db, sender, encoding, text, 1, 1, True, sent_at, now, keyword_of, seal
                )
            key = (sender, ref_bits, ref, total)
            await db.execute(
                "INSERT OR IGNORE INTO inbound_parts "
                "(sender, ref_bits, ref, total, seq, encoding, user_data, sent_at, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, seq, encoding, user_data, sent_at, now),
            )
            rows = await _all(db, f"SELECT * FROM inbound_parts WHERE {_PARTS_KEY} ORDER BY seq", key)  # noqa: S608
            if len(rows) < total:
                return None
            text = join(rows[0]["encoding"], [bytes(r["user_data"]) for r in rows])
            await db.execute(f"DELETE FROM inbound_parts WHERE {_PARTS_KEY}", key)  # noqa: S608
            first_sent = min((r["sent_at"] for r in rows if r["sent_at"] is not None), default=None)
            return await self._commit_inbound(
                db, sender, rows[0]["encoding"], text, total, total, True, first_sent, now, keyword_of, seal
            )

    async def flush_stale_inbound(
        self, timeout_s: float, *, join: Any, keyword_of: Any, seal: Any = None, now: float | None = None
    ) -> list[Inbound]:
        """Multipart messages missing parts after timeout_s: keep what arrived, marked incomplete."""
        now = time.time() if now is None else now
        out: list[Inbound] = []
        async with self._tx() as db:
            groups = await _all(
                db,
                "SELECT sender, ref_bits, ref, total, min(received_at) AS first FROM inbound_parts "
                "GROUP BY sender, ref_bits, ref, total HAVING first <= ?",
                (now - timeout_s,),
            )
            for g in groups:
                key = (g["sender"], g["ref_bits"], g["ref"], g["total"])
                rows = await _all(db, f"SELECT * FROM inbound_parts WHERE {_PARTS_KEY} ORDER BY seq", key)  # noqa: S608
                pieces = [join(r["encoding"], [bytes(r["user_data"])]) for r in rows]
                text = " […] ".join(pieces)
                await db.execute(f"DELETE FROM inbound_parts WHERE {_PARTS_KEY}", key)  # noqa: S608
                first_sent = min((r["sent_at"] for r in rows if r["sent_at"] is not None), default=None)
                out.append(
                    await self._commit_inbound(
                        db,
                        g["sender"],
                        rows[0]["encoding"],
                        text,
                        len(rows),
                        g["total"],
                        False,
                        first_sent,
                        now,
                        keyword_of,
                        seal,
                    )
                )
        return out

    async def _commit_inbound(
        self,
        db: aiosqlite.Connection,
        sender: str,
        encoding: str,
        text: str,
        parts: int,
        expected: int,
        complete: bool,
        sent_at: float | None,
        now: float,
        keyword_of: Any,
        seal: Any = None,
    ) -> Inbound:
        inbound_id = new_id("in")
        keyword = keyword_of(text) if complete else None
        body, command_digest = seal(sender, text) if seal is not None else (text, None)
        if not complete:
            command_digest = None  # a command is one whole SMS
        await db.execute(
            "INSERT INTO inbound (id, from_number, body, encoding, parts, parts_expected, complete, sent_at, received_at, keyword, command_digest) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                inbound_id,
                sender,
                body,
                encoding,
                parts,
                expected,
                int(complete),
                sent_at,
                now,
                keyword,
                command_digest,
            ),
        )
        if keyword == "stop":
            await db.execute(
                "INSERT OR REPLACE INTO optouts (number, at, keyword) VALUES (?, ?, ?)",
                (sender, now, text.strip()[:20]),
            )
        elif keyword == "start":
            await db.execute("DELETE FROM optouts WHERE number = ?", (sender,))
        row = await _one(db, "SELECT * FROM inbound WHERE id = ?", (inbound_id,))
        assert row is not None  # noqa: S101
        inbound = _inbound(row)
        await self._enqueue_webhooks(db, "message.received", inbound_payload(inbound), None, now)
        return inbound

    async def list_inbound(
        self,
        *,
        since: float | None = None,
        limit: int = 50,
        before_seq: int | None = None,
        replies_to_key: int | None = None,
    ) -> list[Inbound]:
        """Newest first. `replies_to_key`: only texts from a number whose latest outbound message
        before the text (within REPLY_WINDOW_S) was sent with that key: a reply is threaded
        to the last message its sender received."""
        sql, args = _page_query(
            "inbound",
            [
                ("received_at >= ?", since),
                ("seq < ?", before_seq),
                (
                    _THREADED_TO_KEY,
                    None if replies_to_key is None else (f"%{MASK}", REPLY_WINDOW_S, replies_to_key),
                ),
            ],
            limit,
        )
        return [_inbound(r) for r in await _all(self.rdb, sql, args)]

    async def is_opted_out(self, number: str) -> bool:
        return await _one(self.rdb, "SELECT 1 FROM optouts WHERE number = ?", (number,)) is not None

    # -------------------------------------------------------------- API keys
    async def create_key(
        self,
        name: str,
        scopes: Iterable[str],
        *,
        limits: KeyLimits | None = None,
        actor: Actor | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key: (record, plaintext shown once)."""
        plaintext = "sgw_" + secrets.token_urlsafe(32)
        rec, _created = await self._insert_key(plaintext, name, scopes, limits, actor, "key_create")
        return rec, plaintext

    async def import_key(
        self,
        plaintext: str,
        name: str,
        scopes: Iterable[str],
        *,
        limits: KeyLimits | None = None,
        actor: Actor | None = None,
    ) -> tuple[ApiKey, bool]:
        """Store a key made elsewhere (a vault), hashed: (record, created).

        Idempotent: importing a key that is already here sets its name and limits to these and
        creates nothing. Its scopes are never narrowed (an inventory written before `read_all`
        must not undo migration 5): the import's are added to those it has; the caller reports
        what was kept (`rec.scopes - scopes`). KeyConflict when that key was revoked (never revived).
        """
        return await self._insert_key(plaintext, name, scopes, limits, actor, "key_import")

    async def _insert_key(
        self,
        plaintext: str,
        name: str,
        scopes: Iterable[str],
        limits: KeyLimits | None,
        actor: Actor | None,
        action: str,
    ) -> tuple[ApiKey, bool]:
        now = time.time()
        scope_text = ",".join(sorted(set(scopes)))
        lim = limits or KeyLimits()
        digest = hash_key(plaintext)
        async with self._tx() as db:
            row = await _one(db, "SELECT id, revoked_at, scopes FROM api_keys WHERE hash = ?", (digest,))
            if row is not None and row["revoked_at"] is not None:
                raise KeyConflict(f"key {row['id']} with this secret was revoked; make a new one")
            if row is not None and action == "key_import":
                scope_text = ",".join(widest(scope_text.split(","), row["scopes"].split(",")))
            created = row is None
            if row is None:
                cur = await db.execute(
                    "INSERT INTO api_keys (name, prefix, hash, scopes, created_at, per_hour, per_day, max_priority) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        # Ours: "sgw_" and 8 random characters; an imported key shows less of itself.
                        plaintext[:12] if action == "key_create" else plaintext[:8],
                        digest,
                        scope_text,
                        now,
                        lim.per_hour,
                        lim.per_day,
                        lim.priority_value,
                    ),
                )
                key_id = int(cur.lastrowid or 0)
            else:
                key_id = int(row["id"])
                await db.execute(
                    "UPDATE api_keys SET name = ?, scopes = ?, per_hour = ?, per_day = ?, max_priority = ? "
                    "WHERE id = ?",
                    (name, scope_text, lim.per_hour, lim.per_day, lim.priority_value, key_id),
                )
            if actor is not None:
                what = f"{name}: {scope_text}; {lim.describe()}" + (
                    "" if created else " (already here: updated)"
                )
                await _insert_audit(db, actor, action, f"key {key_id}", what, now)
        rec = await self.get_key(key_id)
        assert rec is not None  # noqa: S101
        return rec, created

    async def update_key(
        self,
        ident: str,
        *,
        scopes: Iterable[str] | None = None,
        changes: dict[str, int | None] | None = None,
        actor: Actor | None = None,
    ) -> ApiKey | None:
        """Change a live key's scopes and limits (`changes`: per_hour, per_day, max_priority; None
        clears a limit). None when there is no such live key."""
        now = time.time()
        sets: list[str] = []
        args: list[Any] = []
        if scopes is not None:
            sets.append("scopes = ?")
            args.append(",".join(sorted(set(scopes))))
        for column, value in (changes or {}).items():
            if column not in ("per_hour", "per_day", "max_priority"):
                raise ValueError(f"not a key limit: {column}")
            sets.append(f"{column} = ?")
            args.append(value)
        async with self._tx() as db:
            row = await _one(db, _LIVE_KEY, (ident, ident, ident))
            if row is None:
                return None
            if sets:
                await db.execute(f"UPDATE api_keys SET {', '.join(sets)} WHERE id = ?", (*args, row["id"]))  # noqa: S608  (fixed column names)
            if actor is not None:
                after = _key(await _one(db, "SELECT * FROM api_keys WHERE id = ?", (row["id"],)) or row)
                what = f"{after.name}: {','.join(sorted(after.scopes))}; {KeyLimits.of(after).describe()}"
                await _insert_audit(db, actor, "key_update", f"key {row['id']}", what, now)
        return await self.get_key(int(row["id"]))

    async def get_key(self, key_id: int) -> ApiKey | None:
        row = await _one(self.rdb, "SELECT * FROM api_keys WHERE id = ?", (key_id,))
        return None if row is None else _key(row)

    async def list_keys(self) -> list[ApiKey]:
        return [_key(r) for r in await _all(self.rdb, "SELECT * FROM api_keys ORDER BY id", ())]

    async def revoke_key(self, ident: str, *, actor: Actor | None = None) -> ApiKey | None:
        """Revoke by id, name or prefix."""
        now = time.time()
        async with self._tx() as db:
            row = await _one(db, _LIVE_KEY, (ident, ident, ident))
            if row is None:
                return None
            await db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (now, row["id"]))
            if actor is not None:
                await _insert_audit(db, actor, "key_revoke", f"key {row['id']}", str(row["name"]), now)
        return await self.get_key(int(row["id"]))

    # ------------------------------------------------------------------ audit
    async def audit(
        self,
        actor: Actor,
        action: str,
        target: str | None = None,
        detail: str = "",
        *,
        critical: bool = False,
    ) -> None:
        """Record one action on its own (actions that change messages record it in their transaction).

        `critical` (logins and logouts): a tiny row that runs on a full disk too, so the admin can
        still log in to see why; no reserve is given up for it.
        """
        now = time.time()
        async with self._tx(critical=critical) as db:
            await _insert_audit(db, actor, action, target, detail, now)

    async def list_audit(
        self, *, since: float | None = None, limit: int = 50, before_seq: int | None = None
    ) -> list[AuditEvent]:
        """Newest first by time (watchdog commands are copied in late, at their own time); ties by
        seq. `before_seq` continues a page after that row."""
        where, args = [], []
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if before_seq is not None:
            where.append("(at, seq) < (SELECT at, seq FROM audit WHERE seq = ?)")
            args.append(before_seq)
        sql = "SELECT * FROM audit" + (" WHERE " + " AND ".join(where) if where else "")  # noqa: S608  (fixed clauses; values bound)
        sql += " ORDER BY at DESC, seq DESC LIMIT ?"  # the audit_at index holds (at, seq)
        return [_audit(r) for r in await _all(self.rdb, sql, [*args, limit])]

    async def watchdog_audit_mark(self) -> int:
        """The id of the last watchdog command copied into the audit trail (0: none yet)."""
        row = await _one(self.rdb, "SELECT value FROM counters WHERE name = 'watchdog_audit_id'", ())
        return int(row["value"]) if row else 0

    async def copy_watchdog_commands(self, rows: list[tuple[float, str, str, str]], last_id: int) -> None:
        """Watchdog command facts (at, source, target, detail) into the audit trail together with the
        id of the last one, in one transaction: nothing is copied twice, nothing skipped."""
        async with self._tx() as db:
            await db.executemany(
                "INSERT INTO audit (at, actor, source, action, target, detail) "
                "VALUES (?, 'watchdog', ?, 'watchdog_command', ?, ?)",
                rows,
            )
            await db.execute(
                "INSERT INTO counters (name, value) VALUES ('watchdog_audit_id', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (last_id,),
            )

    async def verify_key(self, plaintext: str) -> ApiKey | None:
        """The live key with this plaintext, or None (constant-time compare of digests)."""
        digest = hash_key(plaintext)
        row = await _one(self.rdb, "SELECT * FROM api_keys WHERE hash = ? AND revoked_at IS NULL", (digest,))
        if row is None or not hmac.compare_digest(row["hash"], digest):
            return None
        return _key(row)

    # --------------------------------------------------------------- webhooks
    async def due_webhook_targets(self, now: float, *, busy: Iterable[str] = (), limit: int = 8) -> list[str]:
        """Targets with a webhook due, those never failing first, oldest first; `busy` left out."""
        busy = list(busy)
        marks = ", ".join("?" * len(busy))
        sql = (
            "SELECT target FROM webhook_outbox WHERE delivered_at IS NULL AND abandoned_at IS NULL "  # noqa: S608
            f"AND next_attempt_at <= ? AND target NOT IN ({marks}) "
            "GROUP BY target ORDER BY max(attempts), min(id) LIMIT ?"
        )
        rows = await _all(self.rdb, sql, (now, *busy, limit))
        return [r["target"] for r in rows]

    async def due_webhooks(
        self, now: float, limit: int = 20, *, target: str | None = None
    ) -> list[OutboxItem]:
        where = "delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= ?"
        args: list[Any] = [now]
        if target is not None:
            where += " AND target = ?"
            args.append(target)
        rows = await _all(
            self.rdb,
            f"SELECT * FROM webhook_outbox WHERE {where} ORDER BY id LIMIT ?",  # noqa: S608  (fixed text)
            (*args, limit),
        )
        return [
            OutboxItem(
                r["id"],
                r["webhook_id"],
                r["url"],
                r["secret"],
                r["type"],
                r["payload"],
                r["created_at"],
                r["attempts"],
                r["target"],
            )
            for r in rows
        ]

    async def next_webhook_due(self, *, busy: Iterable[str] = ()) -> float | None:
        busy = list(busy)
        marks = ", ".join("?" * len(busy))
        sql = (
            "SELECT min(next_attempt_at) AS t FROM webhook_outbox "  # noqa: S608  (placeholders only)
            f"WHERE delivered_at IS NULL AND abandoned_at IS NULL AND target NOT IN ({marks})"
        )
        row = await _one(self.rdb, sql, busy)
        return None if row is None or row["t"] is None else float(row["t"])

    async def defer_webhook_target(self, target: str, until: float, *, abandon_before: float) -> int:
        """A target failed: its whole queue waits until `until`; what is older than the window is abandoned."""
        now = time.time()
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE webhook_outbox SET abandoned_at = ?, last_error = coalesce(last_error, 'target down') "
                "WHERE target = ? AND delivered_at IS NULL AND abandoned_at IS NULL AND created_at < ?",
                (now, target, abandon_before),
            )
            await db.execute(
                "UPDATE webhook_outbox SET next_attempt_at = max(next_attempt_at, ?) "
                "WHERE target = ? AND delivered_at IS NULL AND abandoned_at IS NULL",
                (until, target),
            )
            return cur.rowcount or 0

    async def webhook_result(
        self, item_id: int, *, ok: bool, error: str = "", next_at: float | None = None
    ) -> None:
        """Record an attempt. A delivery is marked done even on a full disk (critical, a tiny
        update, no reserve given up): unmarked, the receiver would get it again later."""
        now = time.time()
        async with self._tx(critical=ok) as db:
            if ok:
                await db.execute(
                    "UPDATE webhook_outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
                    (now, item_id),
                )
            elif next_at is None:
                await db.execute(
                    "UPDATE webhook_outbox SET abandoned_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
                    (now, error, item_id),
                )
            else:
                await db.execute(
                    "UPDATE webhook_outbox SET next_attempt_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
                    (next_at, error, item_id),
                )

    async def webhook_backlog(self) -> int:
        row = await _one(
            self.rdb,
            "SELECT count(*) AS n FROM webhook_outbox WHERE delivered_at IS NULL AND abandoned_at IS NULL",
            (),
        )
        return int(row["n"]) if row else 0

    async def _enqueue_webhooks(
        self,
        db: aiosqlite.Connection,
        event_type: str,
        data: dict[str, Any],
        callback: str | None,
        now: float,
    ) -> None:
        targets = [(t.url, t.secret) for t in self._webhooks if event_type in t.events]
        if callback:
            targets.append((callback, ""))
        if targets:
            self._outbox_pending = True
        for url, secret in targets:
            webhook_id = new_id("wh")
            payload = json.dumps(
                {"type": event_type, "timestamp": _rfc3339(now), "data": data},
                separators=(",", ":"),
                ensure_ascii=False,
            )
            target = webhook_target(url)
            # Behind a target that is failing (its queue's head deferred): wait with its queue.
            row = await _one(
                db,
                "SELECT next_attempt_at AS t FROM webhook_outbox WHERE target = ? "
                "AND delivered_at IS NULL AND abandoned_at IS NULL ORDER BY id LIMIT 1",
                (target,),
            )
            due = max(now, float(row["t"])) if row is not None and row["t"] is not None else now
            await db.execute(
                "INSERT INTO webhook_outbox (webhook_id, url, secret, type, payload, created_at, next_attempt_at, target) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (webhook_id, url, secret, event_type, payload, now, due, target),
            )

    # ------------------------------------------------------- status and samples
    async def heartbeat(self, name: str, *, progress: bool, detail: str = "") -> None:
        """Written every few seconds; the watchdog reads it to know the daemon lives.

        Critical (a tiny row): on a full disk the daemon still lives, answering 507, and the
        watchdog must not page a stale heartbeat for it; not vital (no reserve given up for it)."""
        now = time.time()
        async with self._tx(critical=True) as db:
            await db.execute(
                "INSERT INTO heartbeats (name, at, progress_at, detail) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET at = excluded.at, detail = excluded.detail, "
                "progress_at = CASE WHEN ? THEN excluded.at ELSE heartbeats.progress_at END",
                (name, now, now if progress else None, detail, int(progress)),
            )

    async def add_modem_sample(
        self, modem: str, state: str, registered: bool, signal_dbm: int | None, operator: str
    ) -> None:
        now = time.time()
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO modem_samples (at, modem, state, registered, signal_dbm, operator) VALUES (?, ?, ?, ?, ?, ?)",
                (now, modem, state, int(registered), signal_dbm, operator),
            )
            await db.execute("DELETE FROM modem_samples WHERE at < ?", (now - 8 * 86400,))

    async def stats(self) -> Stats:
        stats = Stats()
        for status_row in await _all(self.rdb, "SELECT status, count(*) AS n FROM messages GROUP BY status"):
            stats.by_status[status_row["status"]] = int(status_row["n"])
        row = await _one(
            self.rdb,
            "SELECT min(max(created_at, coalesce(send_at, created_at))) AS t FROM messages "
            "WHERE status IN ('queued', 'sending')",
            (),
        )
        stats.oldest_queued_at = None if row is None or row["t"] is None else float(row["t"])
        row = await _one(self.rdb, "SELECT max(submitted_at) AS t FROM parts", ())
        stats.last_sent_at = None if row is None or row["t"] is None else float(row["t"])
        row = await _one(self.rdb, "SELECT value FROM counters WHERE name = 'ambiguous_parts'", ())
        stats.ambiguous_total = int(row["value"]) if row else 0
        row = await _one(self.rdb, "SELECT value FROM counters WHERE name = 'reports_lost'", ())
        stats.reports_lost_total = int(row["value"]) if row else 0
        row = await _one(self.rdb, "SELECT count(*) AS n FROM quarantine", ())
        stats.quarantined_total = int(row["n"]) if row else 0
        return stats

    # -------------------------------------------------------------- quarantine
    @vital
    async def quarantine(
        self, *, port: str, memory: str, index: int | None, pdu: str, reason: str, at: float | None = None
    ) -> Quarantined:
        """Keep an undecodable PDU (committed before the modem deletes it); the same slot twice is one row.

        Vital: a routed PDU acknowledged by the modem is gone from the network, and a stored one
        is deleted from the SIM once this returns."""
        now = time.time() if at is None else at
        async with self._tx(critical=True) as db:
            await db.execute(
                "INSERT OR IGNORE INTO quarantine (id, at, port, memory, idx, pdu, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (new_id("pdu"), now, port, memory, index, pdu, reason),
            )
            row = await _one(
                db,
                "SELECT * FROM quarantine WHERE port = ? AND memory = ? AND idx IS ? AND pdu = ? "
                "ORDER BY seq DESC LIMIT 1",
                (port, memory, index, pdu),
            )
        assert row is not None  # noqa: S101
        return _quarantined(row)

    async def list_quarantine(self, *, limit: int = 50, before_seq: int | None = None) -> list[Quarantined]:
        sql, args = _page_query("quarantine", [("seq < ?", before_seq)], limit)
        return [_quarantined(r) for r in await _all(self.rdb, sql, args)]

    async def purge_bodies(self, retention_days: int, idempotency_hours: int) -> int:
        """Data minimisation: bodies of final messages after retention; metadata and events stay."""
        now = time.time()
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE messages SET body = NULL WHERE body IS NOT NULL AND status IN ('delivered','undelivered','failed','canceled','sent') "
                "AND updated_at < ?",
                (now - retention_days * 86400,),
            )
            await db.execute(
                "UPDATE inbound SET body = NULL WHERE body IS NOT NULL AND received_at < ?",
                (now - retention_days * 86400,),
            )
            await db.execute(
                "DELETE FROM idempotency WHERE created_at < ?", (now - idempotency_hours * 3600,)
            )
            await db.execute(
                "DELETE FROM webhook_outbox WHERE (delivered_at IS NOT NULL OR abandoned_at IS NOT NULL) AND created_at < ?",
                (now - retention_days * 86400,),
            )
            return cur.rowcount or 0

    async def purge(self, retention: Retention, *, now: float | None = None) -> dict[str, int]:
        """Data minimisation past the body purge: numbers masked, metadata and events dropped, then
        whole final messages (and inbound texts) deleted, so the ledger stops growing.

        Work goes in batches of PURGE_BATCH rows, each its own transaction, so that accepts
        interleave with a large first purge. Returns rows touched per kind.
        """
        now = time.time() if now is None else now
        done = {"numbers": 0, "metadata": 0, "events": 0, "messages": 0, "inbound": 0, "audit": 0}
        if retention.numbers_days > 0:
            cutoff = now - retention.numbers_days * 86400
            done["numbers"] = await self._batches(
                "UPDATE messages SET to_number = substr(to_number, 1, 3) || ? WHERE seq IN "
                "(SELECT seq FROM messages WHERE final_at < ? AND to_number NOT LIKE ? LIMIT ?)",
                (MASK, cutoff, f"%{MASK}"),
            )
            done["numbers"] += await self._batches(
                "UPDATE inbound SET from_number = substr(from_number, 1, 3) || ? WHERE seq IN "
                "(SELECT seq FROM inbound WHERE received_at < ? AND from_number NOT LIKE ? LIMIT ?)",
                (MASK, cutoff, f"%{MASK}"),
            )
            done["numbers"] += await self._batches(
                "DELETE FROM unmatched_reports WHERE id IN "
                "(SELECT id FROM unmatched_reports WHERE received_at < ? LIMIT ?)",
                (cutoff,),
            )
        if retention.metadata_days > 0:
            done["metadata"] = await self._batches(
                "UPDATE messages SET metadata = NULL, status_callback = NULL WHERE seq IN "
                "(SELECT seq FROM messages WHERE final_at < ? "
                "AND (metadata IS NOT NULL OR status_callback IS NOT NULL) LIMIT ?)",
                (now - retention.metadata_days * 86400,),
            )
        if retention.events_days > 0:
            done["events"] = await self._batches(
                "DELETE FROM events WHERE id IN (SELECT e.id FROM messages m JOIN events e "
                "ON e.message_id = m.id WHERE m.final_at < ? LIMIT ?)",
                (now - retention.events_days * 86400,),
            )
        if retention.messages_days > 0:
            cutoff = now - retention.messages_days * 86400
            done["messages"] = await self._delete_messages(cutoff)
            done["inbound"] = await self._batches(
                "DELETE FROM inbound WHERE seq IN (SELECT seq FROM inbound WHERE received_at < ? LIMIT ?)",
                (cutoff,),
            )
        if retention.audit_days > 0:
            done["audit"] = await self._batches(
                "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE at < ? LIMIT ?)",
                (now - retention.audit_days * 86400,),
            )
        if any(done.values()):
            _LOGGER.info("retention: %s", ", ".join(f"{n} {k}" for k, n in done.items() if n))
        return done

    async def _batches(self, sql: str, args: tuple[Any, ...]) -> int:
        total = 0
        while True:
            async with self._tx() as db:
                cur = await db.execute(sql, (*args, PURGE_BATCH))
                n = cur.rowcount or 0
            total += n
            if n < PURGE_BATCH:
                return total

    async def _delete_messages(self, cutoff: float) -> int:
        total = 0
        while True:
            async with self._tx() as db:
                rows = await _all(
                    db,
                    "SELECT id FROM messages WHERE final_at < ? ORDER BY final_at LIMIT ?",
                    (cutoff, PURGE_BATCH),
                )
                ids = [r["id"] for r in rows]
                if ids:
                    marks = ", ".join("?" * len(ids))
                    for table, column in (
                        ("parts", "message_id"),
                        ("events", "message_id"),
                        ("idempotency", "message_id"),
                    ):
                        await db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)  # noqa: S608  (fixed names)
                    await db.execute(f"DELETE FROM messages WHERE id IN ({marks})", ids)  # noqa: S608
            total += len(ids)
            if len(ids) < PURGE_BATCH:
                return total

    async def compact(self, *, max_pages: int = 4096) -> int:
        """Give free pages back to the file system; returns the pages freed.

        Ledgers made since schema 3 use incremental vacuum (a few thousand pages at a time,
        cheap); an older one is converted by one full VACUUM once a quarter of it is free and the
        disk has room for the copy VACUUM writes (VACUUM_ROOM x the ledger): it holds every
        write meanwhile, and would fail half-way on a nearly full disk. A failure is one log line.
        """
        try:
            return await self._compact(max_pages)
        except sqlite3.Error as exc:
            # VACUUM rolls back whole (a disk filled by its copy is free again): retried next period.
            _LOGGER.warning("ledger: compaction failed (retried later): %s", exc)
            return 0

    async def _compact(self, max_pages: int) -> int:
        mode_row = await _one(self.db, "PRAGMA auto_vacuum", ())
        free_row = await _one(self.db, "PRAGMA freelist_count", ())
        pages_row = await _one(self.db, "PRAGMA page_count", ())
        size_row = await _one(self.db, "PRAGMA page_size", ())
        mode = int(mode_row[0]) if mode_row else 0
        free = int(free_row[0]) if free_row else 0
        pages = int(pages_row[0]) if pages_row else 0
        if free == 0:
            return 0
        async with self._write_lock:
            if mode == 2:  # INCREMENTAL
                await self.db.execute_fetchall(f"PRAGMA incremental_vacuum({int(max_pages)})")
                return min(free, max_pages)
            if free * 4 < pages:
                return 0
            size = pages * (int(size_row[0]) if size_row else 4096)
            room = await asyncio.to_thread(self._reserve.free_bytes) if self._reserve is not None else None
            if room is not None and room <= VACUUM_ROOM * size:
                _LOGGER.info(
                    "ledger: %d of %d pages free, but only %d KiB free on its disk for a %d KiB VACUUM: "
                    "not compacted",
                    free,
                    pages,
                    room // 1024,
                    size // 1024,
                )
                return 0
            _LOGGER.warning(
                "ledger: %d of %d pages free: one VACUUM (and incremental from now on)", free, pages
            )
            await self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            await self.db.execute("VACUUM")
            return free

    # ---------------------------------------------------- status-page sessions
    async def start_web_session(
        self,
        digest: str,
        actor: str,
        *,
        key_id: int | None,
        address: str,
        created_at: float,
        expires_at: float,
    ) -> None:
        """Record an admin login (`digest` is the SHA-256 of the cookie's id); drops dead sessions.

        Critical (a tiny row, no reserve given up): the admin can log in while the disk is full."""
        async with self._tx(critical=True) as db:
            await db.execute(
                "DELETE FROM web_sessions WHERE expires_at < ? OR ended_at IS NOT NULL", (created_at,)
            )
            await db.execute(
                "INSERT INTO web_sessions (id, actor, key_id, address, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (digest, actor, key_id, address, created_at, expires_at),
            )

    async def live_web_session(self, digest: str, now: float) -> tuple[str, int | None] | None:
        """(actor, key id) of a session neither ended nor expired; None otherwise."""
        row = await _one(
            self.rdb,
            "SELECT actor, key_id FROM web_sessions WHERE id = ? AND ended_at IS NULL AND expires_at > ?",
            (digest, now),
        )
        if row is None:
            return None
        return str(row["actor"]), None if row["key_id"] is None else int(row["key_id"])

    async def end_web_session(self, digest: str, now: float) -> bool:
        """Logout; True when a live session ended (critical, like the login)."""
        async with self._tx(critical=True) as db:
            cur = await db.execute(
                "UPDATE web_sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL", (now, digest)
            )
            return (cur.rowcount or 0) > 0

    # --------------------------------------------------------------- internals
    async def _get(self, db: aiosqlite.Connection, msg_id: str) -> Message | None:
        row = await _one(db, "SELECT * FROM messages WHERE id = ?", (msg_id,))
        if row is None:
            return None
        parts = await _all(db, "SELECT * FROM parts WHERE message_id = ? ORDER BY seq", (msg_id,))
        events = await _all(db, "SELECT * FROM events WHERE message_id = ? ORDER BY id", (msg_id,))
        return dataclasses.replace(
            _message(row),
            parts=tuple(
                Part(
                    p["seq"],
                    p["total"],
                    PartState(p["status"]),
                    p["mr"],
                    p["modem"],
                    p["submitted_at"],
                    p["report_status"],
                    p["report_at"],
                )
                for p in parts
            ),
            events=tuple(
                Event(e["at"], e["kind"], e["from_status"], e["to_status"], e["detail"]) for e in events
            ),
        )

    async def _transition(
        self,
        db: aiosqlite.Connection,
        msg: Message,
        new: State,
        kind: str,
        detail: str,
        now: float,
        *,
        error: tuple[str, str] | None = None,
    ) -> None:
        check(msg.status, new)
        sets = ["status = ?", "updated_at = ?"]
        args: list[Any] = [new.value, now]
        if new is State.SENT:
            sets.append("sent_at = ?")
            args.append(now)
        if new is State.DELIVERED:
            sets.append("delivered_at = ?")
            args.append(now)
        if new in FINAL:
            sets.append("final_at = ?")
            args.append(now)
        if error is not None:
            sets += ["error_code = ?", "error_message = ?"]
            args += list(error)
        args.append(msg.id)
        await db.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id = ?", args)  # noqa: S608  (fixed column names)
        await self._event(db, msg.id, kind, msg.status, new, detail, now)
        if self._webhooks or msg.status_callback:  # the payload needs the row as it is now
            updated = await self._get(db, msg.id)
            assert updated is not None  # noqa: S101
            await self._notify(db, updated, now)

    async def _event(
        self,
        db: aiosqlite.Connection,
        msg_id: str,
        kind: str,
        old: State | None,
        new: State | None,
        detail: str,
        now: float,
    ) -> None:
        await db.execute(
            "INSERT INTO events (message_id, at, kind, from_status, to_status, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (msg_id, now, kind, old.value if old else None, new.value if new else None, detail),
        )

    async def _notify(self, db: aiosqlite.Connection, msg: Message, now: float) -> None:
        await self._enqueue_webhooks(db, "message.status", status_payload(msg), msg.status_callback, now)


# ------------------------------------------------------------------- helpers
def _page_query(table: str, conditions: list[tuple[str, Any]], limit: int) -> tuple[str, list[Any]]:
    """SELECT of one page, newest first; conditions whose value is None are left out.

    A tuple value binds several placeholders of its clause, in order.
    """
    used = [(clause, value) for clause, value in conditions if value is not None]
    where = " WHERE " + " AND ".join(c for c, _v in used) if used else ""
    values: list[Any] = []
    for _c, v in used:
        values.extend(v if isinstance(v, tuple) else (v,))
    # Table and clauses are fixed strings from this module; only values are bound.
    return f"SELECT * FROM {table}{where} ORDER BY seq DESC LIMIT ?", [*values, limit]  # noqa: S608


_LIVE_KEY = (
    "SELECT * FROM api_keys WHERE (CAST(id AS TEXT) = ? OR name = ? OR prefix = ?) AND revoked_at IS NULL "
    "ORDER BY id LIMIT 1"
)


def widest(scopes: Iterable[str], kept: Iterable[str]) -> list[str]:
    """Both sets of scopes, sorted; `read` is dropped where `read_all` (which grants it) is there."""
    out = {s for s in (*scopes, *kept) if s}
    if "read_all" in out:
        out.discard("read")
    return sorted(out)


# The key of the latest outbound message to an inbound text's sender, sent before it arrived.
# A number masked by retention ("+49•••") is shared by every sender of its country: such a text
# threads to no key (else a `read` key would see other tenants' replies through the mask).
_THREADED_TO_KEY = (
    "inbound.from_number NOT LIKE ? AND "
    "(SELECT m.key_id FROM messages m WHERE m.to_number = inbound.from_number "
    "AND m.created_at <= inbound.received_at AND m.created_at >= inbound.received_at - ? "
    "ORDER BY m.seq DESC LIMIT 1) = ?"
)


# One trip to the database thread per query (execute + fetch together): on the
# dispatcher's hot path these trips, not SQLite, are the cost.
async def _all(db: aiosqlite.Connection, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, args))


async def _one(db: aiosqlite.Connection, sql: str, args: Sequence[Any]) -> sqlite3.Row | None:
    rows = await db.execute_fetchall(sql, args)
    for row in rows:
        return row
    return None


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _message(r: sqlite3.Row) -> Message:
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
        metadata=json.loads(r["metadata"]) if r["metadata"] else None,
        delay_reason=r["delay_reason"],
        key_id=r["key_id"],
    )


def _inbound(r: sqlite3.Row) -> Inbound:
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
    )


def _key(r: sqlite3.Row) -> ApiKey:
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
    )


def _audit(r: sqlite3.Row) -> AuditEvent:
    return AuditEvent(r["seq"], r["at"], r["actor"], r["source"], r["action"], r["target"], r["detail"])


async def _insert_audit(
    db: aiosqlite.Connection, actor: Actor, action: str, target: str | None, detail: str, now: float
) -> None:
    await db.execute(
        "INSERT INTO audit (at, actor, source, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (now, actor.name[:200], actor.source[:200], action, target, detail[:1000]),
    )


def _quota_check(quota: Quota, usage: list[tuple[int, int]], hour: int, now: float) -> None:
    """Raise QuotaExceeded when one more message breaks the hour (fixed) or day (last 24 hours) limit.

    `usage` is (hour, messages) for the key's last 24 hour buckets, oldest first.
    """
    if quota.per_hour is not None:
        this_hour = sum(n for h, n in usage if h == hour)
        if this_hour >= quota.per_hour:
            raise QuotaExceeded("hour", quota.per_hour, max(1, int((hour + 1) * 3600 - now) + 1))
    if quota.per_day is not None:
        total = sum(n for _h, n in usage)
        if total >= quota.per_day:
            # The day frees up as the oldest hours slide out of the 24-hour window.
            excess, freed, frees_at = total - quota.per_day + 1, 0, hour + 1
            for h, n in usage:
                freed += n
                if freed >= excess:
                    frees_at = h + 24
                    break
            raise QuotaExceeded("day", quota.per_day, max(1, int(frees_at * 3600 - now) + 1))


def _rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


def rfc3339(t: float | None) -> str | None:
    """Unix time as RFC 3339 UTC with milliseconds."""
    return _rfc3339(t)


def status_payload(msg: Message) -> dict[str, Any]:
    """The `data` of a message.status webhook."""
    return {
        "id": msg.id,
        "to": msg.to,
        "status": msg.status.value,
        "segments": msg.segments,
        "attempts": msg.attempts,
        "error": {"code": msg.error_code, "message": msg.error_message} if msg.error_code else None,
        "updated_at": _rfc3339(msg.updated_at),
        "sent_at": _rfc3339(msg.sent_at),
        "delivered_at": _rfc3339(msg.delivered_at),
        "metadata": msg.metadata,
    }


def _quarantined(r: sqlite3.Row) -> Quarantined:
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


def quarantine_payload(item: Quarantined) -> dict[str, Any]:
    """The API's quarantine item."""
    return {
        "id": item.id,
        "at": _rfc3339(item.at),
        "port": item.port,
        "memory": item.memory,
        "index": item.index,
        "pdu": item.pdu,
        "reason": item.reason,
    }


def inbound_payload(inbound: Inbound) -> dict[str, Any]:
    """The `data` of a message.received webhook, and the API's inbound object."""
    return {
        "id": inbound.id,
        "from": inbound.from_number,
        "body": inbound.body,
        "encoding": inbound.encoding,
        "parts": inbound.parts,
        "parts_expected": inbound.parts_expected,
        "complete": inbound.complete,
        "keyword": inbound.keyword,
        "sent_at": _rfc3339(inbound.sent_at),
        "received_at": _rfc3339(inbound.received_at),
    }


def disk_free_bytes(path: str) -> int:
    """Free bytes on the ledger's filesystem."""
    st = os.statvfs(Path(path).parent if path != ":memory:" else ".")
    return st.f_bavail * st.f_frsize
