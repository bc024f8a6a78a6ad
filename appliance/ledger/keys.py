"""API keys (tenants), the audit trail and the status page's admin sessions."""

from __future__ import annotations

import functools
import hmac
import secrets
import time
from collections.abc import Iterable
from typing import Any

import aiosqlite

from appliance.ledger.connection import Connection
from appliance.ledger.dialect import fetch_all, fetch_one
from appliance.ledger.errors import KeyConflict, LedgerUnreachable
from appliance.ledger.models import Actor, ApiKey, AuditEvent, KeyLimits, audit_row, hash_key, key_row

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


AUDIT_INSERT = "INSERT INTO audit (at, actor, source, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)"


def audit_values(actor: Actor, action: str, target: str | None, detail: str, now: float) -> tuple[Any, ...]:
    """One audit row's AUDIT_INSERT values, its texts capped (a name is the caller's to choose)."""
    return (now, actor.name[:200], actor.source[:200], action, target, detail[:1000])


async def insert_audit(
    db: aiosqlite.Connection, actor: Actor, action: str, target: str | None, detail: str, now: float
) -> None:
    await db.execute(AUDIT_INSERT, audit_values(actor, action, target, detail, now))


class Keys(Connection):
    """Keys, audit rows and web sessions."""

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
            row = await fetch_one(db, "SELECT id, revoked_at, scopes FROM api_keys WHERE hash = ?", (digest,))
            if row is not None and row["revoked_at"] is not None:
                raise KeyConflict(f"key {row['id']} with this secret was revoked; make a new one")
            if row is not None and action == "key_import":
                scope_text = ",".join(widest(scope_text.split(","), row["scopes"].split(",")))
            created = row is None
            if row is None:
                inserted = await fetch_one(
                    db,
                    "INSERT INTO api_keys (name, prefix, hash, scopes, created_at, per_hour, per_day, max_priority, "
                    "send_window, window_bypass_high) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
                        lim.window_text,
                        int(lim.window_bypass_high),
                    ),
                )
                key_id = int(inserted["id"]) if inserted is not None else 0
            else:
                key_id = int(row["id"])
                await db.execute(
                    "UPDATE api_keys SET name = ?, scopes = ?, per_hour = ?, per_day = ?, max_priority = ?, "
                    "send_window = ?, window_bypass_high = ? WHERE id = ?",
                    (
                        name,
                        scope_text,
                        lim.per_hour,
                        lim.per_day,
                        lim.priority_value,
                        lim.window_text,
                        int(lim.window_bypass_high),
                        key_id,
                    ),
                )
            if actor is not None:
                what = f"{name}: {scope_text}; {lim.describe()}" + (
                    "" if created else " (already here: updated)"
                )
                await insert_audit(db, actor, action, f"key {key_id}", what, now)
        rec = await self.get_key(key_id)
        assert rec is not None  # noqa: S101
        return rec, created

    async def update_key(
        self,
        ident: str,
        *,
        scopes: Iterable[str] | None = None,
        changes: dict[str, int | str | None] | None = None,
        actor: Actor | None = None,
    ) -> ApiKey | None:
        """Change a live key's scopes and limits (`changes`: per_hour, per_day, max_priority,
        send_window (JSON), window_bypass_high (0/1); None clears a limit). None when there is no
        such live key."""
        now = time.time()
        sets: list[str] = []
        args: list[Any] = []
        if scopes is not None:
            sets.append("scopes = ?")
            args.append(",".join(sorted(set(scopes))))
        for column, value in (changes or {}).items():
            if column not in ("per_hour", "per_day", "max_priority", "send_window", "window_bypass_high"):
                raise ValueError(f"not a key limit: {column}")
            sets.append(f"{column} = ?")
            args.append(value)
        async with self._tx() as db:
            row = await fetch_one(db, _LIVE_KEY, (ident, ident, ident))
            if row is None:
                return None
            if sets:
                await db.execute(f"UPDATE api_keys SET {', '.join(sets)} WHERE id = ?", (*args, row["id"]))  # noqa: S608  (fixed column names)
            if actor is not None:
                after = key_row(
                    await fetch_one(db, "SELECT * FROM api_keys WHERE id = ?", (row["id"],)) or row
                )
                what = f"{after.name}: {','.join(sorted(after.scopes))}; {KeyLimits.of(after).describe()}"
                await insert_audit(db, actor, "key_update", f"key {row['id']}", what, now)
        return await self.get_key(int(row["id"]))

    async def get_key(self, key_id: int) -> ApiKey | None:
        row = await fetch_one(self.rdb, "SELECT * FROM api_keys WHERE id = ?", (key_id,))
        return None if row is None else key_row(row)

    async def list_keys(self) -> list[ApiKey]:
        return [key_row(r) for r in await fetch_all(self.rdb, "SELECT * FROM api_keys ORDER BY id", ())]

    async def revoke_key(self, ident: str, *, actor: Actor | None = None) -> ApiKey | None:
        """Revoke by id, name or prefix."""
        now = time.time()
        async with self._tx() as db:
            row = await fetch_one(db, _LIVE_KEY, (ident, ident, ident))
            if row is None:
                return None
            await db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (now, row["id"]))
            if actor is not None:
                await insert_audit(db, actor, "key_revoke", f"key {row['id']}", str(row["name"]), now)
        return await self.get_key(int(row["id"]))

    async def verify_key(self, plaintext: str) -> ApiKey | None:
        """The live key with this plaintext, or None (constant-time compare of digests)."""
        digest = hash_key(plaintext)
        try:
            row = await fetch_one(
                self.rdb, "SELECT * FROM api_keys WHERE hash = ? AND revoked_at IS NULL", (digest,)
            )
        except LedgerUnreachable:
            # The server is down: a key this box verified while it answered still sends (into the
            # spool); one it never saw cannot be checked (503), never let in.
            if digest in self._verified_keys:
                return self._verified_keys[digest]
            raise
        if row is None or not hmac.compare_digest(row["hash"], digest):
            self._verified_keys.pop(digest, None)
            return None
        key = key_row(row)
        self._verified_keys[digest] = key
        return key

    @functools.cached_property
    def _verified_keys(self) -> dict[str, ApiKey]:
        """Live keys as last verified on the server (by digest): answers while it is unreachable."""
        return {}

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
            await insert_audit(db, actor, action, target, detail, now)

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
        return [audit_row(r) for r in await fetch_all(self.rdb, sql, [*args, limit])]

    async def watchdog_audit_mark(self) -> int:
        """The id of the last watchdog command copied into the audit trail (0: none yet)."""
        row = await fetch_one(self.rdb, "SELECT value FROM counters WHERE name = 'watchdog_audit_id'", ())
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
        row = await fetch_one(
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
