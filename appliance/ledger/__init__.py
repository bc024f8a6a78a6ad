"""The ledger: the only package with SQL, and the owner of the single write connection.

SQLite in WAL mode with synchronous=FULL, so that a message acknowledged to a LAN
app survives a power cut (WAL+NORMAL may roll back the last commits). Every state
change appends an `events` row and, in the same transaction, a webhook outbox row:
the ledger is the record, the modem only a transport.

Modules: `connection` (connections, transactions, the disk reserve), `migrations` (the schema),
`models` (records and row mappers), `payloads` (their JSON), `errors`, `dialect` (fetch helpers and
what differs between SQLite and PostgreSQL), `postgres` and `translate` (the ledger on a PostgreSQL
server: `[store] url`),
then one per concept: `messages` (accept, read, cancel), `sending` (the send queue), `reports`,
`timeline` (state changes with events), `inbound` (received texts, opt-outs), `threads` (which
message a text answers, replies, conversations), `keys` (keys, audit,
web sessions), `outbox` (webhooks), `escalations` (escalation chains and their e-mail outbox), `telemetry` (heartbeats, samples, stats, quarantine),
`balance` (the SIM's balance checks), `fleet` (boxes sharing the ledger: leases, takeovers), `retention` (purge, compaction), `templates` (message templates, one row per version); `store`
composes them into `Store`. `backend` names the interface
a second backend implements (`LedgerBackend`).

The watchdog never imports this package: it reads the ledger read-only through the `*_facts` views
of migration 9, which the daemon reads too (one definition of each fact).
"""

from appliance.ledger.balance import BalanceRow, LatestBalance
from appliance.ledger.connection import DEFAULT_RESERVE_BYTES, DISK_FULL, LedgerFile
from appliance.ledger.errors import (
    Conflict,
    IdempotencyMismatch,
    KeyConflict,
    LedgerUnreachable,
    NotFound,
    OptedOut,
    QueueFull,
    QuotaExceeded,
    StorageFull,
    StoreError,
)
from appliance.ledger.escalations import EscalationMail
from appliance.ledger.fleet import Box, Takeover
from appliance.ledger.models import (
    MASK,
    REPLY_WINDOW_S,
    Actor,
    ApiKey,
    AuditEvent,
    Escalation,
    EscalationSpec,
    Event,
    Inbound,
    KeyLimits,
    Message,
    NewMessage,
    OutboxItem,
    Part,
    Quarantined,
    Quota,
    ReportOutcome,
    Retention,
    Stats,
    WebhookTarget,
    hash_key,
    new_id,
    webhook_target,
)
from appliance.ledger.payloads import (
    escalation_payload,
    inbound_payload,
    quarantine_payload,
    rfc3339,
    status_payload,
)
from appliance.ledger.store import Store

__all__ = [
    "DEFAULT_RESERVE_BYTES",
    "DISK_FULL",
    "MASK",
    "REPLY_WINDOW_S",
    "Actor",
    "ApiKey",
    "AuditEvent",
    "BalanceRow",
    "Box",
    "Conflict",
    "Escalation",
    "EscalationMail",
    "EscalationSpec",
    "Event",
    "IdempotencyMismatch",
    "Inbound",
    "KeyConflict",
    "KeyLimits",
    "LatestBalance",
    "LedgerFile",
    "LedgerUnreachable",
    "Message",
    "NewMessage",
    "NotFound",
    "OptedOut",
    "OutboxItem",
    "Part",
    "Quarantined",
    "QueueFull",
    "Quota",
    "QuotaExceeded",
    "ReportOutcome",
    "Retention",
    "Stats",
    "StorageFull",
    "Store",
    "StoreError",
    "Takeover",
    "WebhookTarget",
    "escalation_payload",
    "hash_key",
    "inbound_payload",
    "new_id",
    "quarantine_payload",
    "rfc3339",
    "status_payload",
    "webhook_target",
]
