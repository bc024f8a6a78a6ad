"""The ledger's connections, transactions (the single writer), migrations on open and the disk reserve."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

import aiosqlite
import asyncpg

from appliance.ledger import migrations
from appliance.ledger.dialect import fetch_one, is_disk_full
from appliance.ledger.errors import LedgerUnreachable, StorageFull, StoreError
from appliance.ledger.models import WebhookTarget
from appliance.ledger.postgres import (
    QUEUE_CHANNEL,
    PgConnection,
    Reach,
    ensure_schema_table,
    is_postgres_url,
)
from appliance.reserve import OPEN_RESERVE_BYTES, RESERVE_STEP_BYTES, Reserve

if TYPE_CHECKING:
    from appliance.ledger.spool import Spool

_LOGGER = logging.getLogger(__name__)

DEFAULT_RESERVE_BYTES = 8 * 1024 * 1024


DISK_FULL = (
    "The ledger's disk is full: new messages are refused and sending is paused until space is freed "
    "(parts the modem already accepted are recorded in the space kept in reserve)."
)


_T = TypeVar("_T")
_P = ParamSpec("_P")
_C = TypeVar("_C", bound="Connection")


def vital(
    method: Callable[Concatenate[_C, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_C, _P], Coroutine[Any, Any, _T]]:
    """Mark a write that records what the modem or the network already did: it runs while the
    disk is full, on the reserve (its transactions use `_tx(critical=True)`)."""

    async def wrapper(self: _C, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await self._vital(lambda: method(self, *args, **kwargs))

    functools.update_wrapper(wrapper, method)
    return wrapper


class Turns(Protocol):
    """How the processes that write one ledger file take turns at transactions (batch_worker.py)."""

    def lock(self) -> Any | None:
        """The lock they share now (multiprocessing), or None while no other process writes."""

    def stuck(self, lock: Any) -> None:
        """`lock` was not had within TURN_WAIT_S: its holder may have died holding it."""


# The turns' lock only orders writers (SQLite serialises them regardless), so nobody waits for it
# longer than this: a holder that died must not stop the ledger.
TURN_WAIT_S = 1.0


async def _take_turn(turns: Turns | None) -> Any | None:
    """The turns' lock, held; None when there is none, or it was not had in TURN_WAIT_S."""
    lock = None if turns is None else turns.lock()
    if turns is None or lock is None:
        return None
    if lock.acquire(False):  # nobody else in a transaction: no thread needed
        return lock
    waiting = asyncio.ensure_future(asyncio.to_thread(lock.acquire, True, TURN_WAIT_S))
    try:
        got = await asyncio.shield(waiting)
    except asyncio.CancelledError:
        waiting.add_done_callback(functools.partial(_give_back, lock))  # the thread waits on
        raise
    if got:
        return lock
    turns.stuck(lock)
    return None


def _give_back(lock: Any, waited: asyncio.Future[bool]) -> None:
    """A wait for the turn whose caller went away: what it took goes back."""
    if not waited.cancelled() and waited.exception() is None and waited.result():
        lock.release()


@dataclass(frozen=True)
class LedgerFile:
    """What another process needs to open the same SQLite ledger (the batch worker, which
    writes large batches beside the daemon; SQLite serialises the two writers)."""

    path: str
    webhooks: tuple[WebhookTarget, ...]
    box: str | None
    schema: int  # the daemon's schema version: a process running other code must not write


class Connection:
    """The ledger's connections: one writer (every write serialised through it) and one reader.

    Owns transactions, migrations on open, and the disk reserve that keeps vital writes possible
    on a full disk. The concept modules (messages, sending, reports, ...) are mixins over it."""

    def __init__(
        self,
        path: str | Path,
        *,
        webhooks: Sequence[WebhookTarget] = (),
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
        box: str | None = None,
        reserve: bool = True,
    ) -> None:
        self.path = str(path)  # a file, or a postgresql:// URL (the ledger on a shared server)
        self.postgres = is_postgres_url(self.path)
        # This box's name in a fleet sharing the ledger ([fleet] box): recorded on claims and
        # sends; None (a single box, tests) records nothing and recovers every in-flight message.
        self.box = box
        # This start of the box (fleet.py): the holder of the box name's lease, shown to a second
        # start with the same name; unique per Store, so two stores in one process differ too.
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        # reserve=False: a second process writing this ledger (the batch worker) leaves the reserve
        # file to the daemon, which alone fills and releases it.
        self._reserve = (
            None
            if self.path == ":memory:" or self.postgres or not reserve
            else Reserve(Path(self.path + ".reserve"), reserve_bytes)
        )
        # Why the ledger takes only vital writes now (a sentence), or None; `writable` is its inverse.
        self.storage_problem: str | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self._releases = 0  # steps of the reserve given up so far
        self._db: aiosqlite.Connection | None = None
        self._rdb: aiosqlite.Connection | None = None
        self.outbox_changed = asyncio.Event()  # set after a commit that queued webhooks
        # PostgreSQL: set when any box (this one too) committed new messages (NOTIFY smsgw_queue).
        self.queue_changed = asyncio.Event()
        # PostgreSQL: set while the server answers (spool.py accepts locally while it does not).
        self._reach = Reach()
        self.reachable = self._reach.up
        # PostgreSQL in `smsgw serve`: the box's local spool (the daemon opens it), else None.
        self.spool: Spool | None = None
        self._outbox_pending = False
        # Other processes that write this file (the batch workers, batch_worker.py) and this
        # connection take turns at transactions through their lock. SQLite would serialise them
        # anyway, but its busy handler polls with sleeps up to 100 ms: workers handing the file
        # to each other could keep this connection's writes waiting past busy_timeout.
        self.turns: Turns | None = None
        self._webhooks = tuple(webhooks)
        self._write_lock = asyncio.Lock()

    @property
    def file(self) -> LedgerFile | None:
        """This ledger as another process opens it; None when it cannot (in memory, PostgreSQL)."""
        if self.postgres or self.path == ":memory:":
            return None
        return LedgerFile(self.path, self._webhooks, self.box, migrations.SCHEMA_VERSION)

    # ------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        """Open (creating and migrating as needed)."""
        if self.postgres:
            await self._open_postgres()
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if (
            self._reserve is not None
            and await asyncio.to_thread(self._reserve.free_bytes) < RESERVE_STEP_BYTES
        ):
            # Started on a full disk: SQLite cannot even create its -shm file to read the ledger.
            self._set_full(DISK_FULL)
            await self._release_reserve(floor=0)
        db = await aiosqlite.connect(self.path, isolation_level=None)
        db.row_factory = sqlite3.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA busy_timeout=5000")
        await db.execute("PRAGMA foreign_keys=ON")
        self._db = db
        row = await fetch_one(db, "PRAGMA user_version", ())
        if row is not None and int(row[0]) == 0:
            # A new ledger: freed pages can be given back without a full VACUUM (compact()).
            await db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        await self._migrate()
        # Readers get their own connection: under WAL they see only committed rows,
        # never another task's open transaction on the writer.
        reader = await aiosqlite.connect(self.path, isolation_level=None)
        reader.row_factory = sqlite3.Row
        await reader.execute("PRAGMA busy_timeout=5000")
        await reader.execute("PRAGMA query_only=1")
        self._rdb = reader
        if self.storage_problem is None and not await self._fill_reserve():
            self._set_full(self._no_reserve())

    async def _open_postgres(self) -> None:
        # The database lives on another host: no disk reserve here (check_space is always True).
        db = await PgConnection.connect(self.path, self._reach)
        try:
            # Boxes starting together: one migrates, the others wait and find it done.
            await db.raw.execute("SELECT pg_advisory_lock(7413)")
            await ensure_schema_table(db)
            self._db = cast(aiosqlite.Connection, db)
            await self._migrate()
            await db.raw.execute("SELECT pg_advisory_unlock(7413)")
            reader = await PgConnection.connect(self.path, self._reach)
            self._rdb = cast(aiosqlite.Connection, reader)
            await reader.listen(QUEUE_CHANNEL, lambda *_a: self.queue_changed.set())
        except BaseException:
            self._db = None
            await db.close()
            raise

    @property
    def unreachable_since(self) -> float | None:
        """PostgreSQL: when the server stopped answering (None while it answers; always on SQLite)."""
        return self._reach.since

    async def ping(self) -> bool:
        """Whether the server answers now (a probe while it is unreachable); True on SQLite."""
        if not self.postgres:
            return True
        try:
            await self.db.execute("SELECT 1")
        except LedgerUnreachable:
            return False
        return True

    # ------------------------------------------------------------ fleet
    def mine(self, column: str = "box") -> tuple[str, tuple[str, ...]]:
        """`AND` clause and its argument for rows of this box in a fleet (`column` NULL: written
        before fleets, so this box's too); nothing for a single box (box None)."""
        if self.box is None:
            return "", ()
        return f" AND ({column} = ? OR {column} IS NULL)", (self.box,)

    def holds_name(self) -> tuple[str, tuple[str, ...]]:
        """Condition on this box's `boxes` row (and its arguments) that this start holds the name:
        nobody took it over, and no other start registered it (NULL: let go at a clean stop).
        One definition for the lease's renewal (fleet.py) and the claim (sending.py)."""
        return "taken_over_by IS NULL AND coalesce(instance, ?) = ?", (self.instance, self.instance)

    # ------------------------------------------------------------ disk space
    def _no_reserve(self) -> str:
        size = self._reserve.target if self._reserve is not None else 0
        return (
            f"The ledger's disk has no room for the {size / 2**20:g} MiB kept in reserve for recording sends: "
            "new messages are refused and sending is paused until space is freed."
        )

    def full_elsewhere(self) -> None:
        """Another process writing this file (a batch worker) met a full disk: take only vital
        writes until check_space finds room again, as when this connection meets it."""
        self._set_full(DISK_FULL)

    def _set_full(self, why: str) -> None:
        if self.storage_problem is None:
            _LOGGER.error("%s", why)  # once per episode; writes refused meanwhile say nothing more
        self.storage_problem = why
        self.writable.clear()

    async def _fill_reserve(self) -> bool:
        return self._reserve is None or await asyncio.to_thread(self._reserve.fill)

    async def _release_reserve(self, *, floor: int = OPEN_RESERVE_BYTES) -> bool:
        """Give up a step of the reserve (a vital write failed, or the ledger must open on a full
        disk); False when none is left above `floor`."""
        if self._reserve is None:
            return False
        freed = await asyncio.to_thread(self._reserve.release, floor=floor)
        if freed:
            self._releases += 1
            _LOGGER.warning("gave up %d KiB of the ledger's disk reserve", freed // 1024)
        return freed > 0

    async def check_space(self) -> bool:
        """While the disk is full: once it has room again, restore the reserve and take writes.

        True when the ledger takes every write.
        """
        if self.storage_problem is None:
            return True
        if not await self._fill_reserve():
            return False
        self.storage_problem = None
        self.writable.set()
        _LOGGER.info("the ledger's disk has room again (reserve restored): accepting and sending resume")
        return True

    async def _vital(self, op: Callable[[], Awaitable[_T]]) -> _T:
        """A write that must not be lost to a full disk (what the modem did, what the network said):
        on ENOSPC give up a step of the reserve and try again, until none is left."""
        while True:
            releases = self._releases
            try:
                return await op()
            except StorageFull:
                # Two vital writes failing together give up one step, not one each.
                if releases == self._releases and not await self._release_reserve():
                    raise

    @property
    def reserve_bytes(self) -> int:
        """The disk reserve held now (bytes)."""
        return 0 if self._reserve is None else self._reserve.size

    async def close(self) -> None:
        if self._rdb is not None:
            await self._rdb.close()
            self._rdb = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def is_open(self) -> bool:
        return self._db is not None

    @property
    def rdb(self) -> aiosqlite.Connection:
        """The read connection (committed data only)."""
        if self._rdb is None:
            raise RuntimeError("store is not open")
        return self._rdb

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def _migrate(self) -> None:
        row = await fetch_one(self.db, "PRAGMA user_version", ())
        version = int(row[0]) if row else 0
        if version > migrations.SCHEMA_VERSION:
            raise StoreError(
                f"ledger schema {version} is newer than this smsgw ({migrations.SCHEMA_VERSION}): upgrade smsgw"
            )
        for target in range(version + 1, migrations.SCHEMA_VERSION + 1):
            async with self._tx(critical=True):
                await migrations.apply(self.db, target, postgres=self.postgres)
            _LOGGER.info("ledger migrated to schema %d", target)

    class _Tx:
        def __init__(self, store: Connection, critical: bool) -> None:
            self.store = store
            self.critical = critical
            self.turn: Any | None = None  # the turns' lock while this transaction holds it

        async def __aenter__(self) -> aiosqlite.Connection:
            # On a full disk what room is left goes to vital writes; the rest fail at once.
            if not self.critical and self.store.storage_problem is not None:
                raise StorageFull(self.store.storage_problem)
            await self.store._write_lock.acquire()
            self.store._outbox_pending = False
            # Shielded: a cancelled caller must not leave a BEGIN running in the database
            # thread with nobody to end it (every later write would then fail).
            try:
                self.turn = await _take_turn(self.store.turns)
            except BaseException:
                self.store._write_lock.release()
                raise
            begin = asyncio.ensure_future(self.store.db.execute("BEGIN IMMEDIATE"))
            try:
                await asyncio.shield(begin)
            except asyncio.CancelledError:
                with contextlib.suppress(BaseException):
                    await begin
                    await self._rollback()
                self._release()
                raise
            except BaseException:
                self._release()
                raise
            return self.store.db

        def _release(self) -> None:
            turn, self.turn = self.turn, None
            if turn is not None:
                turn.release()
            self.store._write_lock.release()

        async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
            try:
                if exc is None:
                    commit = asyncio.ensure_future(self.store.db.execute("COMMIT"))
                    try:
                        try:
                            await asyncio.shield(commit)
                        except asyncio.CancelledError:
                            # The COMMIT runs on regardless: let it finish before the lock is free.
                            with contextlib.suppress(BaseException):
                                await commit
                            raise
                        if self.store._outbox_pending:
                            self.store.outbox_changed.set()
                        if self.critical and self.store.storage_problem is not None:
                            await self._checkpoint()
                    except asyncio.CancelledError:
                        raise
                    except BaseException as commit_exc:
                        await self._rollback()
                        if is_disk_full(commit_exc):
                            self.store._set_full(DISK_FULL)
                            raise StorageFull(DISK_FULL) from commit_exc
                        raise
                else:
                    await self._rollback()
                    if is_disk_full(exc):
                        self.store._set_full(DISK_FULL)
                        raise StorageFull(DISK_FULL) from exc
            finally:
                self._release()

        async def _checkpoint(self) -> None:
            # On a full disk the WAL must not grow (~5 KiB a heartbeat, up to 1000 pages before
            # SQLite's own checkpoint): copied back, the next write starts it over in place.
            if self.store.postgres:
                return
            with contextlib.suppress(sqlite3.Error):
                await self.store.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

        async def _rollback(self) -> None:
            with contextlib.suppress(
                sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError, LedgerUnreachable
            ):
                await self.store.db.execute("ROLLBACK")

    def _tx(self, *, critical: bool = False) -> Connection._Tx:
        """BEGIN IMMEDIATE ... COMMIT, serialised with every other write.

        Only `critical` ones run while the disk is full (see `_vital`).
        """
        return Connection._Tx(self, critical)
