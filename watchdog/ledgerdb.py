"""How the watchdog reaches the ledger: a SQLite file opened read-only, or a postgresql:// URL
over asyncpg (a connection of its own, in a loop of its own thread: callers may be in a loop)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def on_postgres(ledger: str) -> bool:
    """True for a shared PostgreSQL ledger ([store] url), False for a SQLite file."""
    return ledger.startswith(("postgresql://", "postgres://"))


def open_readonly(path: str) -> sqlite3.Connection:
    """The SQLite ledger opened read-only (mode=ro): the watchdog never writes the daemon's tables."""
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=2)


def run_blocking(work: Coroutine[Any, Any, T]) -> T:
    """`work` (an asyncpg coroutine) run to its end in a loop of its own thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()
