"""SQLite specifics every concept module shares: one-trip fetches, page queries, disk-full errors.

A second backend replaces this module's role (its own fetch helpers and error mapping)."""

from __future__ import annotations

import errno
import functools
import sqlite3
from collections.abc import Sequence
from typing import Any, cast

import aiosqlite
import asyncpg

from appliance.ledger.postgres import QUEUE_CHANNEL, PgConnection
from appliance.ledger.translate import SKIP_LOCKED_MARK

# SQLITE_IOERR_SHMSIZE: the -shm file could not be grown, which on a full disk is ENOSPC.
_FULL_CODES = {sqlite3.SQLITE_FULL, getattr(sqlite3, "SQLITE_IOERR_SHMSIZE", 4874)}


def is_disk_full(exc: BaseException) -> bool:
    return (
        (
            isinstance(exc, sqlite3.Error)
            and (getattr(exc, "sqlite_errorcode", None) in _FULL_CODES or "disk is full" in str(exc))
        )
        or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)
        or isinstance(exc, asyncpg.DiskFullError)
    )


# Another box (PostgreSQL) committed the same idempotency key first: the accept runs again and
# finds that box's message (created=False), as a repeat on one box does.
KEY_RACE_RETRIES = 2


def is_key_race(exc: BaseException) -> bool:
    return isinstance(exc, asyncpg.UniqueViolationError) and exc.constraint_name == "idempotency_pkey"


async def notify_queued(db: aiosqlite.Connection) -> None:
    """In a transaction that queued messages: on PostgreSQL every box's `queue_changed` is set at
    its commit (NOTIFY is delivered then, or never); SQLite has one box, woken by its caller."""
    if isinstance(cast(object, db), PgConnection):
        await db.execute(f"NOTIFY {QUEUE_CHANNEL}")


# After the claim query: on PostgreSQL the rows it returns stay locked for the claiming box and
# other boxes pass over them (SQLite, one box, reads it as a comment).
SKIP_LOCKED = " " + SKIP_LOCKED_MARK


# A batch's rows go into SQLite in INSERTs of many VALUES: SQLite then steps once a statement, not
# once a row (1,000 messages: 8-14 ms instead of 17-22 ms by executemany). Fixed chunk sizes keep
# the distinct statements, and so their compiled forms in the connection's cache, few.
_CHUNKS = (512, 128, 32)


@functools.lru_cache(maxsize=64)
def _values(head: str, row: str, size: int) -> str:
    return f"{head} VALUES {', '.join([row] * size)}"


async def insert_rows(db: aiosqlite.Connection, head: str, row: str, rows: Sequence[Sequence[Any]]) -> None:
    """`head` VALUES `row` (its placeholders) for each of `rows`, inserted in their order."""
    at = 0
    if not isinstance(cast(object, db), PgConnection):  # asyncpg's executemany is one round trip already
        for size in _CHUNKS:
            while len(rows) - at >= size:
                chunk = rows[at : at + size]
                await db.execute(_values(head, row, size), [value for one in chunk for value in one])
                at += size
    if at < len(rows):
        await db.executemany(f"{head} VALUES {row}", rows[at:])


async def inserted_seqs(db: aiosqlite.Connection, ids: Sequence[str]) -> dict[str, int]:
    """The `seq` of messages just inserted (by insert_rows, in this order)."""
    if isinstance(cast(object, db), PgConnection):  # other boxes take numbers in between: ask
        rows = await fetch_all(db, f"SELECT id, seq FROM messages WHERE id IN ({marks(ids)})", ids)  # noqa: S608
        return {r["id"]: int(r["seq"]) for r in rows}
    # One statement under the single writer: SQLite numbers its rows consecutively, so the last
    # rowid gives every seq (an IN query for 1,000 ids cost more than the inserts' indexes).
    row = await fetch_one(db, "SELECT last_insert_rowid() AS last", ())
    first = (int(row["last"]) if row is not None else 0) - len(ids) + 1
    return {msg_id: first + i for i, msg_id in enumerate(ids)}


# One trip to the database thread per query (execute + fetch together): on the
# dispatcher's hot path these trips, not SQLite, are the cost.
async def fetch_all(db: aiosqlite.Connection, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, args))


async def fetch_one(db: aiosqlite.Connection, sql: str, args: Sequence[Any]) -> sqlite3.Row | None:
    rows = await db.execute_fetchall(sql, args)
    for row in rows:
        return row
    return None


def marks(values: Sequence[Any]) -> str:
    """One placeholder per value, for an IN (...) list."""
    return ", ".join("?" * len(values))


def not_in(column: str, values: Sequence[Any]) -> str:
    """`AND column NOT IN (?, ...)`, or nothing for no values (PostgreSQL refuses an empty list)."""
    return f" AND {column} NOT IN ({marks(values)})" if values else ""


def page_query(
    table: str, conditions: list[tuple[str, Any]], limit: int, *, columns: str = "*"
) -> tuple[str, list[Any]]:
    """SELECT of one page, newest first; conditions whose value is None are left out.

    A tuple value binds several placeholders of its clause, in order.
    """
    used = [(clause, value) for clause, value in conditions if value is not None]
    where = " WHERE " + " AND ".join(c for c, _v in used) if used else ""
    values: list[Any] = []
    for _c, v in used:
        values.extend(v if isinstance(v, tuple) else (v,))
    # Table and clauses are fixed strings from this module; only values are bound.
    return f"SELECT {columns} FROM {table}{where} ORDER BY seq DESC LIMIT ?", [*values, limit]  # noqa: S608


def exact_real(column: str) -> str:
    """A REAL column as text that parses back to the same float: SQLite's JSON functions print
    15 digits, which moves a time.time() by microseconds."""
    return f"iif({column} IS NULL, NULL, printf('%!.17g', {column}))"


def json_rows(table: str, match: str, columns: Sequence[str]) -> str:
    """A correlated subquery: the rows of `table` matching `match` as one JSON array of arrays
    (order not guaranteed: the reader sorts). PostgreSQL: json_agg(json_build_array(...))."""
    return f"(SELECT json_group_array(json_array({', '.join(columns)})) FROM {table} WHERE {match})"  # noqa: S608  (fixed names from this package)


def split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
