"""SQLite specifics every concept module shares: one-trip fetches, page queries, disk-full errors.

A second backend replaces this module's role (its own fetch helpers and error mapping)."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite

# SQLITE_IOERR_SHMSIZE: the -shm file could not be grown, which on a full disk is ENOSPC.
_FULL_CODES = {sqlite3.SQLITE_FULL, getattr(sqlite3, "SQLITE_IOERR_SHMSIZE", 4874)}


def is_disk_full(exc: BaseException) -> bool:
    return (
        isinstance(exc, sqlite3.Error)
        and (getattr(exc, "sqlite_errorcode", None) in _FULL_CODES or "disk is full" in str(exc))
    ) or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)


# One trip to the database thread per query (execute + fetch together): on the
# dispatcher's hot path these trips, not SQLite, are the cost.
async def fetch_all(db: aiosqlite.Connection, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, args))


async def fetch_one(db: aiosqlite.Connection, sql: str, args: Sequence[Any]) -> sqlite3.Row | None:
    rows = await db.execute_fetchall(sql, args)
    for row in rows:
        return row
    return None


def page_query(table: str, conditions: list[tuple[str, Any]], limit: int) -> tuple[str, list[Any]]:
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


def split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
