"""The ledger's schema: every migration ever shipped, in order, and how one is applied.

Existing ledgers have run these: an entry is never edited, a change is a new entry appended at the end
(PRAGMA user_version counts those applied)."""

from __future__ import annotations

import aiosqlite

from appliance.ledger.dialect import split_sql
from appliance.ledger.models import webhook_target

MIGRATIONS: list[str] = [
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
    # 9 (issue 12, ledger): the facts the watchdog reads, as views: one definition both processes
    # read (the watchdog never imports appliance/; it reads these names read-only, the daemon its
    # stats). A message waits since it became due: when it was accepted, or its send_at when that
    # is later (a send_at in the past does not make it older than it is).
    """
    CREATE VIEW queue_facts AS SELECT
        (SELECT min(max(created_at, coalesce(send_at, created_at))) FROM messages
            WHERE status IN ('queued', 'sending')) AS oldest_queued_at,
        (SELECT max(submitted_at) FROM parts) AS last_sent_at;
    CREATE VIEW heartbeat_facts AS SELECT name, at, progress_at, detail FROM heartbeats;
    CREATE VIEW modem_facts AS SELECT
        (SELECT at FROM modem_samples ORDER BY at DESC LIMIT 1) AS sample_at,
        (SELECT state FROM modem_samples ORDER BY at DESC LIMIT 1) AS sample_state,
        (SELECT registered FROM modem_samples ORDER BY at DESC LIMIT 1) AS sample_registered,
        (SELECT max(at) FROM modem_samples WHERE registered = 1 AND state = 'ready') AS last_ok_at,
        (SELECT min(at) FROM modem_samples WHERE at > coalesce(
            (SELECT max(at) FROM modem_samples WHERE registered = 1 AND state = 'ready'), 0.0)) AS first_bad_at;
    CREATE VIEW outcome_facts AS SELECT id, status, final_at FROM messages
        WHERE final_at IS NOT NULL AND status IN ('delivered', 'undelivered', 'failed');
    CREATE VIEW inbound_facts AS SELECT seq, from_number, body, command_digest, sent_at, received_at, complete
        FROM inbound;
    """,
    # 10 (issue 12, ledger): how a status callback is posted, as a column: 'json' (ours, Standard
    # Webhooks) or 'twilio' (Twilio's form fields), instead of a "twilio:" prefix on the URL that
    # tagged it and showed in the API's status_callback.
    """
    ALTER TABLE messages ADD COLUMN callback_format TEXT NOT NULL DEFAULT 'json';
    UPDATE messages SET callback_format = 'twilio', status_callback = substr(status_callback, 8)
        WHERE substr(status_callback, 1, 7) = 'twilio:';
    ALTER TABLE webhook_outbox ADD COLUMN format TEXT NOT NULL DEFAULT 'json';
    UPDATE webhook_outbox SET format = 'twilio', url = substr(url, 8) WHERE substr(url, 1, 7) = 'twilio:';
    """,
    # 11 (issue 13 item 4, task threading): an inbound text records the message it answers: the
    # latest one sent to its sender (and not reported undelivered) within the reply window, found
    # by messages_to_sent when the text is committed (threads.py), with that message's key beside it
    # (a `read` key lists the texts threaded to it by index). Texts already received are threaded
    # here with the default window (7 days); a masked number threads to nothing.
    """
    ALTER TABLE inbound ADD COLUMN in_reply_to TEXT;
    ALTER TABLE inbound ADD COLUMN reply_key_id INTEGER;
    CREATE INDEX messages_to_sent ON messages(to_number, sent_at) WHERE sent_at IS NOT NULL;
    CREATE INDEX inbound_in_reply_to ON inbound(in_reply_to, seq) WHERE in_reply_to IS NOT NULL;
    CREATE INDEX inbound_from ON inbound(from_number, seq);
    CREATE INDEX inbound_reply_key ON inbound(reply_key_id, seq) WHERE reply_key_id IS NOT NULL;
    UPDATE inbound SET in_reply_to = (SELECT m.id FROM messages m WHERE m.to_number = inbound.from_number
        AND m.sent_at IS NOT NULL AND m.sent_at <= inbound.received_at AND m.sent_at >= inbound.received_at - 604800
        AND m.status != 'undelivered' ORDER BY m.sent_at DESC LIMIT 1)
        WHERE from_number NOT LIKE '%•••';
    UPDATE inbound SET reply_key_id = (SELECT m.key_id FROM messages m WHERE m.id = inbound.in_reply_to)
        WHERE in_reply_to IS NOT NULL;
    """,
    # 12 (issue 13, windows): send windows. The window a message waits for (JSON, as
    # windows.Window.to_json: its own, its template's or its key's), a key's default window and
    # whether the key's `high` messages may bypass it. "send_window": WINDOW is an SQL keyword.
    """
    ALTER TABLE messages ADD COLUMN send_window TEXT;
    ALTER TABLE api_keys ADD COLUMN send_window TEXT;
    ALTER TABLE api_keys ADD COLUMN window_bypass_high INTEGER NOT NULL DEFAULT 0;
    """,
    # 13 (issue 13, task templates): named message templates, one row per version (a message keeps
    # the version it used, so a PUT never rewrites a row); DELETE marks every version of a name.
    # `send_window` is Window.to_json() as JSON (not `window`: an SQL keyword).
    """
    CREATE TABLE templates (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        body TEXT NOT NULL,
        allowed_keys TEXT,
        send_window TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        deleted_at REAL,
        PRIMARY KEY (name, version)
    );
    ALTER TABLE messages ADD COLUMN template_name TEXT;
    ALTER TABLE messages ADD COLUMN template_version INTEGER;
    """,
    # 14 (issue 13, escalation): a message's escalation chain (its spec, how far it got, when the next
    # step is due, why it ended), the link from an escalated message to its original, and the
    # durable outbox of the chain's e-mails (attempts, transient retry, give-up), as the webhooks'.
    """
    CREATE TABLE escalations (
        message_id TEXT PRIMARY KEY REFERENCES messages(id),
        after_s INTEGER NOT NULL,
        until TEXT NOT NULL,
        targets TEXT NOT NULL,
        step INTEGER NOT NULL DEFAULT 0,
        next_at REAL,
        outcome TEXT,
        ended_at REAL
    );
    CREATE INDEX escalations_due ON escalations(next_at) WHERE next_at IS NOT NULL;
    ALTER TABLE messages ADD COLUMN escalated_from TEXT;
    CREATE INDEX messages_escalated_from ON messages(escalated_from) WHERE escalated_from IS NOT NULL;
    CREATE INDEX inbound_from_received ON inbound(from_number, received_at);
    CREATE TABLE escalation_mail (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL,
        step INTEGER NOT NULL,
        address TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        sent_at REAL,
        abandoned_at REAL,
        last_error TEXT,
        UNIQUE (message_id, step)
    );
    CREATE INDEX escalation_mail_due ON escalation_mail(next_at) WHERE sent_at IS NULL AND abandoned_at IS NULL;
    """,
    # 15 (issue 13, ussdwire): the prepaid SIM's balance checks (appliance/balance.py), one row per
    # check, good or bad; `balance_facts` is the latest amount found per modem, for the watchdog.
    """
    CREATE TABLE sim_balance (
        at REAL NOT NULL,
        modem TEXT NOT NULL,
        ok INTEGER NOT NULL,
        value REAL,
        text TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX sim_balance_at ON sim_balance(at);
    CREATE VIEW balance_facts AS SELECT b.modem AS modem, b.at AS at, b.value AS value FROM sim_balance b
        WHERE b.ok = 1 AND b.at = (SELECT max(at) FROM sim_balance WHERE ok = 1 AND modem = b.modem);
    """,
    # 16 (issue 14, fleet): several boxes share one ledger (ledger/fleet.py). Each box holds a
    # lease it renews with its heartbeat; a box whose lease ran out is taken over by exactly one
    # other (the conditional UPDATE on `taken_over_by`), which resolves its in-flight messages.
    # `box` on messages and parts: the box that claimed / handed the part to its modem; on
    # unmatched_reports the box whose modem got the report (MRs of two boxes' modems collide).
    # `peer_incidents`: a watchdog claims a silent peer (one row per peer and silence episode,
    # keyed by the peer's last heartbeat) before texting, so one watchdog texts, not each.
    # `peer_facts` gives times, not ages: the reader subtracts from its own clock (an age needs
    # "now", which SQLite and PostgreSQL spell differently).
    """
    CREATE TABLE boxes (
        name TEXT PRIMARY KEY,
        started_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL,
        lease_until REAL NOT NULL,
        taken_over_by TEXT,
        taken_over_at REAL
    );
    ALTER TABLE messages ADD COLUMN box TEXT;
    ALTER TABLE parts ADD COLUMN box TEXT;
    ALTER TABLE unmatched_reports ADD COLUMN box TEXT;
    CREATE INDEX messages_sending_box ON messages(box) WHERE status = 'sending';
    CREATE TABLE peer_incidents (
        peer TEXT NOT NULL,
        silent_since REAL NOT NULL,
        claimed_by TEXT NOT NULL,
        claimed_at REAL NOT NULL,
        resolved_at REAL,
        PRIMARY KEY (peer, silent_since)
    );
    CREATE VIEW peer_facts AS SELECT name, started_at, heartbeat_at, lease_until, taken_over_by, taken_over_at
        FROM boxes;
    """,
    # 17 (issue 14, fleetwd): what the watchdog reads is per box. `box` on inbound (a reply is
    # judged with the digest key of the box whose modem got it: keys are per box), on
    # modem_samples (box_modem_facts: one row per box, over that box's samples only) and on
    # sim_balance (balance_facts: the latest amount per box and modem). `instance` on boxes: the
    # start holding the name's lease, so a second box started with the same name is refused
    # while that lease lives (fleet.py). Rows written before stay NULL: "before fleets".
    """
    ALTER TABLE inbound ADD COLUMN box TEXT;
    ALTER TABLE modem_samples ADD COLUMN box TEXT;
    ALTER TABLE sim_balance ADD COLUMN box TEXT;
    ALTER TABLE boxes ADD COLUMN instance TEXT;
    CREATE INDEX inbound_box ON inbound(box, seq);
    CREATE INDEX modem_samples_box ON modem_samples(box, at);
    DROP VIEW inbound_facts;
    CREATE VIEW inbound_facts AS SELECT seq, from_number, body, command_digest, sent_at, received_at, complete, box
        FROM inbound;
    CREATE VIEW box_modem_facts AS SELECT k.name AS box,
        (SELECT s.at FROM modem_samples s WHERE s.box = k.name ORDER BY s.at DESC LIMIT 1) AS sample_at,
        (SELECT s.state FROM modem_samples s WHERE s.box = k.name ORDER BY s.at DESC LIMIT 1) AS sample_state,
        (SELECT s.registered FROM modem_samples s WHERE s.box = k.name ORDER BY s.at DESC LIMIT 1)
            AS sample_registered,
        (SELECT max(s.at) FROM modem_samples s WHERE s.box = k.name AND s.registered = 1 AND s.state = 'ready')
            AS last_ok_at,
        (SELECT min(s.at) FROM modem_samples s WHERE s.box = k.name AND s.at > coalesce(
            (SELECT max(o.at) FROM modem_samples o WHERE o.box = k.name AND o.registered = 1 AND o.state = 'ready'),
            0.0)) AS first_bad_at
        FROM boxes k;
    DROP VIEW balance_facts;
    CREATE VIEW balance_facts AS SELECT b.modem AS modem, b.at AS at, b.value AS value, b.box AS box
        FROM sim_balance b WHERE b.ok = 1 AND b.at = (SELECT max(s.at) FROM sim_balance s WHERE s.ok = 1
            AND s.modem = b.modem AND coalesce(s.box, '') = coalesce(b.box, ''));
    """,
    # 18: the queue's periodic questions in one index seek each, not a walk of every waiting row
    # (a full queue is when the box can least spare it): the expiry sweep every second (40 ms at
    # 80,000 queued) and "oldest queued" in every heartbeat and watchdog cycle (25 ms). The view
    # names its index: SQLite's planner would take messages_status (PostgreSQL drops the hint).
    """
    CREATE INDEX messages_expiry ON messages(expires_at) WHERE status IN ('queued', 'scheduled');
    CREATE INDEX messages_waiting_since ON messages((max(created_at, coalesce(send_at, created_at))))
        WHERE status IN ('queued', 'sending');
    DROP VIEW queue_facts;
    CREATE VIEW queue_facts AS SELECT
        (SELECT min(max(created_at, coalesce(send_at, created_at))) FROM messages INDEXED BY messages_waiting_since
            WHERE status IN ('queued', 'sending')) AS oldest_queued_at,
        (SELECT max(submitted_at) FROM parts) AS last_sent_at;
    """,
]


SCHEMA_VERSION = len(MIGRATIONS)


# Migration 4 can only copy `url` into `target`; the queue key is webhook_target(url) (Python),
# set in the same transaction so upgraded rows share the queue of new rows to the same receiver.
_WEBHOOK_TARGETS_ADDED = 4


async def _retarget_pending_webhooks(db: aiosqlite.Connection) -> None:
    rows = await db.execute_fetchall(
        "SELECT id, url FROM webhook_outbox WHERE delivered_at IS NULL AND abandoned_at IS NULL"
    )
    await db.executemany(
        "UPDATE webhook_outbox SET target = ? WHERE id = ?",
        [(webhook_target(r["url"]), r["id"]) for r in rows],
    )


# Rewrites of rows stored before a migration, in SQLite-only SQL (GLOB, json_set): skipped on
# PostgreSQL, whose ledgers start empty at schema 15 (no such rows can exist there).
_SQLITE_ROW_REWRITES = {3}


async def apply(db: aiosqlite.Connection, target: int, *, postgres: bool = False) -> None:
    """Run migration `target` (1-based) inside the caller's transaction, and record it."""
    for statement in split_sql(MIGRATIONS[target - 1]):
        if postgres and target in _SQLITE_ROW_REWRITES and statement.upper().startswith("UPDATE"):
            continue
        await db.execute(statement)
    if target == _WEBHOOK_TARGETS_ADDED:
        await _retarget_pending_webhooks(db)
    await db.execute(f"PRAGMA user_version={target}")
