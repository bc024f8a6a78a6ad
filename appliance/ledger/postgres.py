"""The ledger on a shared PostgreSQL server (asyncpg): the small part of aiosqlite's connection the
concept modules use (execute with rowcount, executemany, execute_fetchall), over one asyncpg
connection, with each statement translated once (translate.py).

asyncpg's Record reads like sqlite3.Row (by name and by position), so the row mappers serve both.
One asyncpg connection runs one statement at a time: a lock queues callers as aiosqlite's thread does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg

from appliance.ledger.errors import LedgerUnreachable
from appliance.ledger.translate import SCHEMA_TABLE, to_postgres

_LOGGER = logging.getLogger(__name__)

_T = TypeVar("_T")

CONNECT_TIMEOUT_S = 5.0  # a server that does not answer within this is unreachable (spool.py takes over)

# What says the server is gone, not that a statement was wrong: refused, reset, timed out, dropped,
# shutting down or starting up (class 08 and 57 but a cancelled statement).
_GONE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


class Reach:
    """Whether the server answered the last statement (one per ledger: writer, reader and the
    listener share it). An outage is logged once when it begins and once when it ends."""

    def __init__(self) -> None:
        self.up = asyncio.Event()
        self.up.set()
        self.since: float | None = None  # when the outage began

    def lost(self, exc: BaseException) -> None:
        if self.up.is_set():
            self.up.clear()
            self.since = time.time()
            _LOGGER.error(
                "the ledger's server is unreachable (%s): waiting for it",
                type(exc).__name__ if not str(exc) else str(exc),
            )

    def back(self) -> None:
        if not self.up.is_set():
            down_s = time.time() - (self.since or time.time())
            self.up.set()
            self.since = None
            _LOGGER.info("the ledger's server answers again (unreachable for %.1f s)", down_s)


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


@functools.lru_cache(maxsize=4096)
def _verb(sql: str) -> str:
    """The statement's first word, upper-cased: BEGIN, COMMIT and ROLLBACK track the transaction
    (cached like the translation: the same few statements run on every claim and accept)."""
    words = sql.split(None, 1)
    return words[0].upper() if words else ""


class PgConnection:
    """One asyncpg connection that speaks to the concept modules as aiosqlite does.

    A connection the server dropped (a restart, a failover) is opened again at the next statement,
    except inside a transaction: that one fails whole (its BEGIN is gone with the connection)."""

    def __init__(self, url: str, conn: Any, reach: Reach | None = None) -> None:
        self._url = url
        self.reach = reach if reach is not None else Reach()
        self._conn = conn
        self._lock = asyncio.Lock()
        self._in_tx = False
        self._listeners: list[tuple[str, Callable[..., None]]] = []
        self._relisten: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, url: str, reach: Reach | None = None) -> PgConnection:
        return cls(url, await _open(url), reach)

    @property
    def raw(self) -> Any:
        return self._conn

    async def listen(self, channel: str, callback: Callable[..., None]) -> None:
        """Call `callback` on each NOTIFY of `channel`; a dropped connection is opened again at
        once to listen on (a quiet box would otherwise miss every wake-up until its next query)."""
        self._listeners.append((channel, callback))
        async with self._lock:
            await self._conn.add_listener(channel, callback)
            self._conn.add_termination_listener(self._dropped)

    def _dropped(self, _conn: Any) -> None:
        if self._listeners and (self._relisten is None or self._relisten.done()):  # not at close()
            self._relisten = asyncio.get_running_loop().create_task(self._reopen())

    async def _reopen(self) -> None:
        for delay in (0.1, 0.5, 1, 2, 5, 10, 30):
            try:
                async with self._lock:
                    if self._conn.is_closed() and not self._in_tx and self._listeners:
                        await self._live("SELECT 1")
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.sleep(delay)  # the server is still down: try again a little later
            else:
                return

    async def _live(self, sql: str) -> Any:
        """The connection for `sql` (under the lock), reopened when the server dropped it."""
        verb = _verb(sql)
        if self._conn.is_closed():
            if verb == "ROLLBACK":
                self._in_tx = False  # the server ended that transaction with the connection
            if self._in_tx:
                raise asyncpg.ConnectionDoesNotExistError("the ledger's server closed the connection")
            self._conn = await _open(self._url)
            for channel, callback in self._listeners:
                await self._conn.add_listener(channel, callback)
            if self._listeners:
                self._conn.add_termination_listener(self._dropped)
            self._in_tx = False
        if verb == "BEGIN":
            self._in_tx = True
        elif verb in ("COMMIT", "ROLLBACK"):
            self._in_tx = False
        return self._conn

    async def _run(self, sql: str, call: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run `call`; the server being gone is one condition, LedgerUnreachable (Reach says when
        it began and ended)."""
        try:
            result = await self._attempts(sql, call)
        except _GONE as exc:
            self.reach.lost(exc)
            raise LedgerUnreachable(f"the ledger's server is unreachable: {type(exc).__name__}") from exc
        except (asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
            # The connection broke under a statement (asyncpg: "another operation is in progress"
            # as the server went away): unusable, opened again at the next statement.
            if isinstance(exc, asyncpg.InterfaceError) and not self._conn.is_closed():
                raise  # a misuse, not an outage
            self._conn.terminate()
            self.reach.lost(exc)
            raise LedgerUnreachable(f"the ledger's server is unreachable: {type(exc).__name__}") from exc
        self.reach.back()
        return result

    async def _attempts(self, sql: str, call: Callable[[Any], Awaitable[_T]]) -> _T:
        async with self._lock:
            for attempt in (1, 2):
                began_in_tx = self._in_tx
                conn = await self._live(sql)
                try:
                    return await call(conn)
                except (
                    asyncpg.ConnectionDoesNotExistError,
                    asyncpg.InterfaceError,
                    asyncpg.InternalClientError,
                ):
                    if began_in_tx or attempt == 2:
                        raise
                    # Dropped before any transaction of ours began: open again, run it once more.
                    self._in_tx = False
                    conn.terminate()
            raise AssertionError("unreachable")  # pragma: no cover

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        text = to_postgres(sql)
        status = await self._run(text, lambda conn: conn.execute(text, *args))
        m = _COUNT.search(status or "")
        return Cursor(int(m.group(1)) if m else -1)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        text = to_postgres(sql)
        batch = list(rows)
        if batch:
            await self._run(text, lambda conn: conn.executemany(text, batch))
        return Cursor(len(batch))

    async def execute_fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        text = to_postgres(sql)
        return list(await self._run(text, lambda conn: conn.fetch(text, *args)))

    async def close(self) -> None:
        self._listeners.clear()
        if self._relisten is not None:
            self._relisten.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relisten
        await self._conn.close()


async def _open(url: str) -> Any:
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        await conn.set_type_codec("numeric", encoder=str, decoder=_number, schema="pg_catalog", format="text")
    except BaseException:
        conn.terminate()  # cancelled (a close() during a reconnect) or the server gone again: not leaked
        raise
    return conn


async def ensure_schema_table(db: PgConnection) -> None:
    """PostgreSQL has no `PRAGMA user_version`: the applied migrations are counted in a table."""
    raw = db.raw
    await raw.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version BIGINT NOT NULL)")
    await raw.execute(
        f"INSERT INTO {SCHEMA_TABLE} (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA_TABLE})"  # noqa: S608
    )
