"""How the watchdog reaches the ledger: a SQLite file opened read-only, or a postgresql:// URL
over asyncpg (a connection of its own, in a loop of its own thread: callers may be in a loop)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")
# What a watchdog cycle shrugs off with one log line: the next cycle tries again.
LEDGER_ERRORS = (sqlite3.Error, asyncpg.PostgresError, OSError, TimeoutError)


def on_postgres(ledger: str) -> bool:
    """True for a shared PostgreSQL ledger ([store] url), False for a SQLite file."""
    return ledger.startswith(("postgresql://", "postgres://"))


def open_readonly(path: str) -> sqlite3.Connection:
    """A SQLite file opened read-only (mode=ro): the ledger (the watchdog never writes the daemon's
    tables), or the watchdog's state file as the daemon reads it. A relative path is the working
    directory's (a file URI must be absolute)."""
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=2)


def read_file(path: Path, read: Callable[[sqlite3.Connection], T], empty: T) -> T:
    """`read` on the SQLite file at `path` opened read-only; `empty` when there is no such file,
    it cannot be opened, or a query fails (a file from before the table it asks for)."""
    if not path.exists():
        return empty
    try:
        db = open_readonly(str(path))
    except sqlite3.Error:
        return empty
    try:
        return read(db)
    except sqlite3.Error:
        return empty
    finally:
        db.close()


def run_blocking(work: Coroutine[Any, Any, T]) -> T:
    """`work` (an asyncpg coroutine) run to its end in a loop of its own thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def on_connection(url: str, work: Callable[[asyncpg.Connection], Coroutine[Any, Any, T]]) -> T:
    """`work` on a PostgreSQL connection of its own (closed after), run_blocking; failures to
    connect or to query are raised to the caller."""

    async def run() -> T:
        db = await asyncpg.connect(url, timeout=5)
        try:
            return await work(db)
        finally:
            await db.close()

    return run_blocking(run())


def numbered(sql: str) -> str:
    """PostgreSQL's placeholders ($1, $2, ...) for SQLite's `?`: one statement text for both
    backends (the watchdog's texts hold no literal `?`)."""
    parts = sql.split("?")
    return "".join(f"{p}${i}" for i, p in enumerate(parts[:-1], 1)) + parts[-1]
