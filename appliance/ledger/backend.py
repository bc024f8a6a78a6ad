"""The interface a ledger backend implements: what the daemon, the API and the page call.

`Store` implements it on both backends: SQLite (a file, the embedded default) and PostgreSQL
(`[store] url`, a fleet's shared server, asyncpg), chosen by what it opens (connection.py), and
`mypy` checks the fit (store.py). The concept modules hold one SQL text for both:
- postgres.py gives asyncpg the aiosqlite surface they use (execute with rowcount, executemany,
  execute_fetchall; asyncpg's Record reads like sqlite3.Row);
- translate.py spells each distinct statement for PostgreSQL once (placeholders, `INSERT OR
  IGNORE`, scalar max/min, iif, json_group_array / json_array / json_each, printf('%!.17g'),
  CAST AS INTEGER, rowid, column types, PRAGMAs; the schema version in `smsgw_schema`), so a
  migration appended in SQLite SQL runs on both; what it cannot spell (`INSERT OR REPLACE`,
  GLOB) is refused: such SQL is written portably (ON CONFLICT ... DO UPDATE with the table's
  name on the existing row's columns, RETURNING instead of lastrowid);
- dialect.py holds what differs in behaviour: the seqs of inserted messages, the claim's
  `SKIP_LOCKED` (several boxes claim at once), the idempotency race between boxes (the accept runs
  again and finds the other box's message), NOTIFY of new messages (`queue_changed`).
Writes are serialised per box by one writer connection; across boxes PostgreSQL's row locks.
The views of migrations.py (`queue_facts`, `heartbeat_facts`, `modem_facts`, `outcome_facts`,
`inbound_facts`, `balance_facts`, `peer_facts`, `box_modem_facts`) exist on both: the watchdog reads them (and
claims `peer_incidents`).
The disk reserve and `storage_problem` concern a local file: on PostgreSQL the database lives on
another host (`storage_problem` stays None, `check_space` returns True).
Times are Unix seconds as float (REAL; DOUBLE PRECISION there), returned exactly as stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from appliance.ledger.balance import LatestBalance
from appliance.ledger.errors import StoreError
from appliance.ledger.escalations import EscalationMail
from appliance.ledger.fleet import Box, Takeover
from appliance.ledger.models import (
    REPLY_WINDOW_S,
    Actor,
    ApiKey,
    AuditEvent,
    Escalation,
    Inbound,
    KeyLimits,
    Message,
    NewMessage,
    OutboxItem,
    Quarantined,
    Quota,
    ReportOutcome,
    Retention,
    Stats,
)
from appliance.ledger.telemetry import ModemTraffic
from appliance.sms_templates import TemplateDraft, TemplateRecord

if TYPE_CHECKING:
    from appliance.ledger.spool import Spool


class LedgerBackend(Protocol):
    """Everything outside appliance/ledger/ may call on the ledger."""

    path: str  # the SQLite file, or the postgresql:// URL
    postgres: bool  # the ledger is on a PostgreSQL server (no local disk to watch)
    box: str | None  # this box's name in a fleet ([fleet] box); None: a single box
    instance: str  # this start of the box: the holder of its name's lease (fleet.py)
    storage_problem: str | None  # why only vital writes are taken now (a sentence), or None
    writable: asyncio.Event  # set while every write is taken
    outbox_changed: asyncio.Event  # set after a commit that queued webhooks
    queue_changed: asyncio.Event  # PostgreSQL: set when any box committed new messages
    reachable: asyncio.Event  # PostgreSQL: set while the server answers (always set on SQLite)
    spool: Spool | None  # PostgreSQL in `smsgw serve`: where accepts go while the server is unreachable

    # --- messages
    async def accept(
        self,
        new: NewMessage,
        *,
        key_id: int | None,
        queue_max: int,
        quota: Quota | None = None,
        actor: Actor | None = None,
    ) -> tuple[Message, bool]:
        """Commit a new message (or find the one with the same idempotency key): (message, created)."""
        ...

    async def accept_many(
        self,
        news: Sequence[NewMessage],
        *,
        key_id: int | None,
        queue_max: int,
        quota: Quota | None = None,
        actor: Actor | None = None,
    ) -> list[tuple[Message, bool] | StoreError]:
        """Commit a batch in one transaction, each item checked like `accept` in order: per item
        (message, created) or its refusal; every accepted item is committed, or none (raises)."""
        ...

    async def get(self, msg_id: str) -> Message | None:
        """The message with parts and events, or None."""
        ...

    async def list_messages(
        self,
        *,
        status: str | None = None,
        to: str | None = None,
        limit: int = 50,
        before_seq: int | None = None,
        key_id: int | None = None,
        to_suffix: str | None = None,
    ) -> list[Message]:
        """Newest first, whole (parts and events), in one query; `before_seq` continues a page."""
        ...

    async def idempotency_used_since(self, key_id: int, key: str, since: float) -> bool:
        """Whether this key's idempotency key was used at or after `since`."""
        ...

    async def recent_events(self, kinds: Sequence[str], *, scan: int, limit: int) -> list[dict[str, Any]]:
        """The newest events of these kinds among the last `scan` events (message_id, at, kind, detail)."""
        ...

    async def cancel(self, msg_id: str, *, owner: int | None = None, actor: Actor | None = None) -> Message:
        """Cancel a message not yet handed to the modem; Conflict once sending began."""
        ...

    # --- sending
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
        """Take the most urgent queued message due now: committed as `sending` before any AT."""
        ...

    async def next_due(self) -> float | None:
        """Earliest time a queued or scheduled message becomes due (None: nothing waits)."""
        ...

    async def submitted_since(self, modem: str, since: float) -> list[float]:
        """When `modem` handed parts to the network since `since` (the rate limit after a restart)."""
        ...

    async def part_sending(self, msg_id: str, seq: int) -> None:
        """Commit that this part is about to go to AT+CMGS (crash point)."""
        ...

    async def part_submitted(
        self, msg_id: str, seq: int, mr: int, modem: str, *, at: float | None = None
    ) -> Message:
        """Record +CMGS: <mr> for one part; the message becomes `sent` with its last part."""
        ...

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
        ...

    async def release(self, msg_id: str, reason: str) -> None:
        """Put a claimed message back untouched (the modem went away before any AT)."""
        ...

    async def release_cut_off_claim(self, modem: str, claimed_at: float) -> list[str]:
        """A claim whose COMMIT the server's outage cut off: the message it took, if it made it, back to the queue."""
        ...

    async def delay(self, msg_id: str, until: float, reason: str, *, move: bool = True) -> None:
        """Hold a queued message back until `until`, saying why in the timeline (once per reason)."""
        ...

    async def peek_next(self, now: float) -> str | None:
        """Id of the message the next claim would take (for saying why it waits)."""
        ...

    async def held_back(self, now: float) -> list[tuple[str, int, float]]:
        """(reason, messages, until) for queued messages a limit holds back past `now`."""
        ...

    async def note(self, msg_id: str, kind: str, detail: str) -> None:
        """Add a timeline entry without a state change (e.g. an ambiguous outcome)."""
        ...

    async def promote_and_expire(self, now: float | None = None) -> int:
        """Scheduled messages that are due become queued; queued past validity fail."""
        ...

    async def recover_inflight(self, policy: str) -> list[str]:
        """After a crash: messages left `sending` have an unknown outcome. Resend them, or hold them."""
        ...

    async def resolve_held(
        self, msg_id: str, action: str, *, owner: int | None = None, actor: Actor | None = None
    ) -> Message:
        """An operator's decision on a held message: 'resend' or 'cancel' (marks it failed)."""
        ...

    # --- fleet (fleet.py): leases and the takeover of a stopped box, exactly once
    async def register_box(
        self, lease_s: float, *, now: float | None = None, previous: str | None = None
    ) -> Box | None:
        """At start: a fresh lease for this box; a takeover of its earlier life is forgotten.
        The name's row held by another start whose lease lives (and is not `previous`): refused."""
        ...

    async def release_box(self) -> None:
        """At a clean stop: let the box's name go (the next start need not wait for the lease)."""
        ...

    async def renew_lease(self, lease_s: float, *, now: float | None = None) -> str | None:
        """Extend this box's lease; None when renewed, else the box that took it over."""
        ...

    async def take_over_expired(self, policy: str, *, now: float | None = None) -> list[Takeover]:
        """Take over boxes whose lease ran out (one winner each) and resolve their in-flight messages."""
        ...

    async def boxes(self) -> list[Box]:
        """Every box the ledger knows, by name."""
        ...

    # --- reports
    async def apply_report(
        self, mr: int, recipient: str, status: int, *, at: float | None = None
    ) -> ReportOutcome:
        """Match a status report to a part by MR, recipient and time window; monotonic."""
        ...

    async def expire_reports(self, timeout_s: float, *, now: float | None = None) -> int:
        """Messages `sent` with no final report after timeout_s: marked final without delivery proof."""
        ...

    # --- inbound
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
        reply_window_s: float = REPLY_WINDOW_S,
    ) -> Inbound | None:
        """Commit one received part; returns the whole message once every part is here, with
        `in_reply_to` the latest message sent to its sender within `reply_window_s` (threads.py)."""
        ...

    async def flush_stale_inbound(
        self,
        timeout_s: float,
        *,
        join: Any,
        keyword_of: Any,
        seal: Any = None,
        now: float | None = None,
        reply_window_s: float = REPLY_WINDOW_S,
    ) -> list[Inbound]:
        """Multipart messages missing parts after timeout_s: keep what arrived, marked incomplete."""
        ...

    async def list_inbound(
        self,
        *,
        since: float | None = None,
        limit: int = 50,
        before_seq: int | None = None,
        replies_to_key: int | None = None,
        from_suffix: str | None = None,
    ) -> list[Inbound]:
        """Newest first. `replies_to_key`: only texts threaded to a message sent with that key."""
        ...

    async def is_opted_out(self, number: str) -> bool: ...

    # --- threads
    async def list_replies(
        self, message_id: str, *, limit: int = 50, before_seq: int | None = None
    ) -> list[Inbound]:
        """Inbound texts whose `in_reply_to` is this message, newest first."""
        ...

    async def conversation(self, number: str, *, limit: int = 100) -> tuple[list[Message], list[Inbound]]:
        """The newest `limit` messages to and texts from one number (each newest first)."""
        ...

    # --- outbox
    async def due_webhook_targets(self, now: float, *, busy: Iterable[str] = (), limit: int = 8) -> list[str]:
        """Targets with a webhook due, those never failing first, oldest first; `busy` left out."""
        ...

    async def due_webhooks(
        self, now: float, limit: int = 20, *, target: str | None = None
    ) -> list[OutboxItem]: ...

    async def next_webhook_due(self, *, busy: Iterable[str] = ()) -> float | None: ...

    async def defer_webhook_target(self, target: str, until: float, *, abandon_before: float) -> int:
        """A target failed: its whole queue waits until `until`; what is older than the window is abandoned."""
        ...

    async def webhook_result(
        self, item_id: int, *, ok: bool, error: str = "", next_at: float | None = None
    ) -> None:
        """Record an attempt. A delivery is marked done even on a full disk (critical, a tiny"""
        ...

    async def webhook_backlog(self) -> int: ...

    # --- escalation chains (escalations.py; the accept path records steps in accept's transaction)
    async def due_escalations(self, now: float, limit: int = 50) -> list[tuple[str, Escalation]]:
        """Chains whose next step is due, oldest due first: (original message id, chain)."""
        ...

    async def next_escalation_due(self) -> float | None:
        """When the next step or e-mail of any chain is due (None: nothing waits)."""
        ...

    async def stop_escalations(self, now: float | None = None) -> list[tuple[str, str]]:
        """End every running chain whose message (or a message it sent) was delivered, was answered"""
        ...

    async def end_escalation(
        self, msg_id: str, outcome: str, detail: str, *, now: float | None = None
    ) -> bool:
        """End a running chain (no more steps); False when it had ended already."""
        ...

    async def skip_escalation_step(self, msg_id: str, step: int, reason: str) -> bool:
        """Step `step` cannot be taken (its number opted out): pass over it, the next one due now."""
        ...

    async def defer_escalation(self, msg_id: str, until: float) -> None:
        """The next step could not be taken now (queue full, disk full, quota): try again at `until`."""
        ...

    async def escalate_to_mail(
        self, msg_id: str, first_step: int, addresses: list[str], subject: str, body: str
    ) -> bool:
        """After the numbers: queue an e-mail to each mailto: target (steps first_step..n) and end the"""
        ...

    async def due_escalation_mail(self, now: float, limit: int = 10) -> list[EscalationMail]: ...

    async def escalation_mail_result(
        self, item: EscalationMail, *, ok: bool, error: str = "", next_at: float | None = None
    ) -> None:
        """Record an attempt: sent, retried at `next_at` (transient), or given up (next_at None)."""
        ...

    # --- keys
    async def create_key(
        self,
        name: str,
        scopes: Iterable[str],
        *,
        limits: KeyLimits | None = None,
        actor: Actor | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key: (record, plaintext shown once)."""
        ...

    async def import_key(
        self,
        plaintext: str,
        name: str,
        scopes: Iterable[str],
        *,
        limits: KeyLimits | None = None,
        actor: Actor | None = None,
    ) -> tuple[ApiKey, bool]:
        """Store a key made elsewhere (a vault), hashed: (record, created)."""
        ...

    async def update_key(
        self,
        ident: str,
        *,
        scopes: Iterable[str] | None = None,
        changes: dict[str, int | str | None] | None = None,
        actor: Actor | None = None,
    ) -> ApiKey | None:
        """Change a live key's scopes and limits (`changes`: per_hour, per_day, max_priority,
        send_window, window_bypass_high; None clears one)."""
        ...

    async def get_key(self, key_id: int) -> ApiKey | None: ...

    async def list_keys(self) -> list[ApiKey]: ...

    async def revoke_key(self, ident: str, *, actor: Actor | None = None) -> ApiKey | None:
        """Revoke by id, name or prefix."""
        ...

    async def verify_key(self, plaintext: str) -> ApiKey | None:
        """The live key with this plaintext, or None (constant-time compare of digests)."""
        ...

    async def audit(
        self,
        actor: Actor,
        action: str,
        target: str | None = None,
        detail: str = "",
        *,
        critical: bool = False,
    ) -> None:
        """Record one action on its own (actions that change messages record it in their transaction)."""
        ...

    async def list_audit(
        self, *, since: float | None = None, limit: int = 50, before_seq: int | None = None
    ) -> list[AuditEvent]:
        """Newest first by time (watchdog commands are copied in late, at their own time); ties by"""
        ...

    async def watchdog_audit_mark(self) -> int:
        """The id of the last watchdog command copied into the audit trail (0: none yet)."""
        ...

    async def copy_watchdog_commands(self, rows: list[tuple[float, str, str, str]], last_id: int) -> None:
        """Watchdog command facts (at, source, target, detail) into the audit trail together with the"""
        ...

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
        """Record an admin login (`digest` is the SHA-256 of the cookie's id); drops dead sessions."""
        ...

    async def live_web_session(self, digest: str, now: float) -> tuple[str, int | None] | None:
        """(actor, key id) of a session neither ended nor expired; None otherwise."""
        ...

    async def end_web_session(self, digest: str, now: float) -> bool:
        """Logout; True when a live session ended (critical, like the login)."""
        ...

    # --- telemetry
    async def heartbeat(self, name: str, *, progress: bool, detail: str = "") -> None:
        """Written every few seconds; the watchdog reads it to know the daemon lives."""
        ...

    async def add_modem_sample(
        self,
        modem: str,
        state: str,
        registered: bool,
        signal_dbm: int | None,
        operator: str,
        *,
        at: float | None = None,
    ) -> None: ...

    async def per_bucket(
        self, column: Literal["sent_at", "delivered_at"], start: float, end: float, bucket_s: int
    ) -> list[tuple[int, int]]:
        """(bucket, messages) with `column` in [start, end], bucket 0 starting at `start`."""
        ...

    async def signal_buckets(self, start: float, bucket_s: int) -> list[tuple[str, float, int | None]]:
        """(modem, last sample time, mean signal in dBm) per modem and bucket since `start`, in order."""
        ...

    async def per_modem(self, since: float, lookback: float) -> dict[str, ModemTraffic]:
        """Per modem name: sent, parts and failed since `since`, in flight now, last send since `lookback`."""
        ...

    async def stats(self) -> Stats: ...

    async def quarantine(
        self, *, port: str, memory: str, index: int | None, pdu: str, reason: str, at: float | None = None
    ) -> Quarantined:
        """Keep an undecodable PDU (committed before the modem deletes it); the same slot twice is one row."""
        ...

    async def list_quarantine(
        self, *, limit: int = 50, before_seq: int | None = None
    ) -> list[Quarantined]: ...

    # --- balance: the SIM's balance checks
    async def record_balance(
        self, modem: str, *, at: float, ok: bool, value: float | None, text: str, error: str
    ) -> None:
        """Keep one balance check (its text already redacted by the checker)."""
        ...

    async def latest_balances(self) -> dict[str, LatestBalance]:
        """Per modem that was ever checked: its last check and its last check that found an amount."""
        ...

    # --- retention
    async def purge_bodies(self, retention_days: int, idempotency_hours: int) -> int:
        """Data minimisation: bodies of final messages after retention; metadata and events stay."""
        ...

    async def purge(self, retention: Retention, *, now: float | None = None) -> dict[str, int]:
        """Data minimisation past the body purge: numbers masked, metadata and events dropped, then"""
        ...

    async def compact(self, *, max_pages: int = 4096) -> int:
        """Give free pages back to the file system; returns the pages freed."""
        ...

    # --- templates
    async def template(self, name: str) -> TemplateRecord | None:
        """The latest live version of the template `name`, or None."""
        ...

    async def list_templates(self) -> list[TemplateRecord]:
        """The latest live version of every template, by name."""
        ...

    async def save_template(
        self, draft: TemplateDraft, *, create_only: bool, actor: Actor | None = None
    ) -> tuple[TemplateRecord, bool]:
        """Insert the next version of `draft.name` (v1 when new): (record, created); Conflict when
        `create_only` and the name is live; TemplateError 409 on a stale expected version."""
        ...

    async def delete_template(self, name: str, *, actor: Actor | None = None) -> TemplateRecord:
        """Mark every version of `name` deleted; NotFound when none is live."""
        ...

    # --- connection
    @property
    def unreachable_since(self) -> float | None:
        """PostgreSQL: when the server stopped answering (None while it answers)."""
        ...

    async def ping(self) -> bool:
        """Whether the server answers now (a probe while it is unreachable); True on SQLite."""
        ...

    async def open(self) -> None:
        """Open (creating and migrating as needed)."""
        ...

    async def check_space(self) -> bool:
        """While the disk is full: once it has room again, restore the reserve and take writes."""
        ...

    @property
    def is_open(self) -> bool:
        """Between open() and close()."""
        ...

    @property
    def reserve_bytes(self) -> int:
        """The disk reserve held now (bytes)."""
        ...

    async def close(self) -> None: ...
