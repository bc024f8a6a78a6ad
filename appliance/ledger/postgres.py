"""The ledger on a shared PostgreSQL server (asyncpg): the small part of aiosqlite's connection the
concept modules use (execute with rowcount, executemany, execute_fetchall), over one asyncpg
connection, with each statement translated once (translate.py).

asyncpg's Record reads like sqlite3.Row (by name and by position), so the row mappers serve both.
One asyncpg connection runs one statement at a time: a lock queues callers as aiosqlite's thread does.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from appliance.ledger.translate import SCHEMA_TABLE, to_postgres

QUEUE_CHANNEL = "smsgw_queue"  # NOTIFY after a commit that queued messages: other boxes claim sooner


def is_postgres_url(locator: str) -> bool:
    return locator.startswith(("postgresql://", "postgres://"))


class Cursor:
    """What `execute` returns: the rows a write touched (`lastrowid`: use RETURNING instead)."""

    def __init__(self, rowcount: int) -> None:
        self.rowcount = rowcount
        self.lastrowid: int | None = None


_COUNT = re.compile(r"(\d+)$")


def _number(text: str) -> int | float:
    """numeric (sum and avg of integers): an int when whole, as SQLite returns them."""
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() and "." not in text else float(value)


class PgConnection:
    """One asyncpg connection that speaks to the concept modules as aiosqlite does."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, url: str) -> PgConnection:
        conn = await asyncpg.connect(url)
        await conn.set_type_codec("numeric", encoder=str, decoder=_number, schema="pg_catalog", format="text")
        return cls(conn)

    @property
    def raw(self) -> Any:
        return self._conn

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        text = to_postgres(sql)
        async with self._lock:
            status = await self._conn.execute(text, *args)
        m = _COUNT.search(status or "")
        return Cursor(int(m.group(1)) if m else -1)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        text = to_postgres(sql)
        batch = list(rows)
        if batch:
            async with self._lock:
                await self._conn.executemany(text, batch)
        return Cursor(len(batch))

    async def execute_fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        text = to_postgres(sql)
        async with self._lock:
            return list(await self._conn.fetch(text, *args))

    async def close(self) -> None:
        await self._conn.close()


async def ensure_schema_table(db: PgConnection) -> None:
    """PostgreSQL has no `PRAGMA user_version`: the applied migrations are counted in a table."""
    raw = db.raw
    await raw.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version BIGINT NOT NULL)")
    await raw.execute(
        f"INSERT INTO {SCHEMA_TABLE} (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA_TABLE})"  # noqa: S608
    )
