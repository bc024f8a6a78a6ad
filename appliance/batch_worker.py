"""Large batches' CPU in worker processes: on a SQLite ledger the whole accept (batch_accept.py).

The daemon's Python runs under one GIL, so a thread only keeps the event loop answering; it adds
no CPU. A 1,000-item batch takes ~90 ms of CPU from body to results: in a worker process, over
that process's own connection to the ledger file, it runs on another core while the daemon's
event loop serves everything else (issue 13 item 5: 10,000 messages/s). SQLite (WAL) serialises
the worker's transaction with the daemon's writes, as it does for any two writers of one file.

The worker runs the very function the daemon would (batch_accept.accept_batch), so a result is
byte for byte what the in-process path gives. The pool starts (spawn: the daemon has threads, so
fork is unsafe) on the first large batch; until it answers, for small batches, on PostgreSQL
(whose spool and wake-ups live in the daemon) and after a worker died, the daemon accepts the
batch itself. A worker that dies during a batch cannot say whether it committed: that batch is
refused (503) and its items' idempotency keys make the retry safe, as for a dropped connection.
The pool is per process and ends with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import phonenumbers

from appliance import heap, send_requests
from appliance.batch_accept import Accepted, accept_batch
from appliance.config import Config
from appliance.ledger import Actor, ApiKey, LedgerFile, Message, NewMessage, StorageFull, Store, migrations
from appliance.validation import ApiError

_LOGGER = logging.getLogger(__name__)

# Below this many items (parse only) or bytes (a whole accept) the round trip buys too little.
MIN_ITEMS = 100
MIN_BYTES = 8192  # ~100 items of a typical batch
PROCESSES = 2  # [api] batch_workers by default: two batches at once use two cores


class _PoolTurns:
    """A worker's side of the turns at the ledger's transactions (ledger/connection.py Turns):
    its pool's lock, which the daemon's connection takes too. A worker that dies holding it
    breaks the pool, which ends them all, and the next pool has a new lock."""

    def __init__(self, lock: Any) -> None:
        self._turn = lock

    def lock(self) -> Any:
        return self._turn

    def stuck(self, lock: Any) -> None:
        """Nothing to do here: the daemon looks at the pool (BatchWorker.stuck)."""


_TURNS: _PoolTurns | None = None  # in a worker: set as it starts


def _start_worker(turn: Any) -> None:
    """Run in each new worker: phonenumbers' metadata loads before the first batch needs it."""
    global _TURNS  # noqa: PLW0603  (set once, as the process starts)
    _TURNS = _PoolTurns(turn)
    phonenumbers.parse("+4915112345678")  # loads the metadata most numbers need
    heap.tune()


def _ping() -> bool:
    return True


def _schema_of(path: str) -> int:
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


class _Ledger:
    """The worker process's own connection to the daemon's ledger file, on its own event loop,
    kept between batches; opened again for another ledger (a test run's many boxes, or the file
    replaced) and after a full disk (the refusal sticks to a connection)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.store: Store | None = None
        self.ident: tuple[Any, ...] = ()
        # aiosqlite's connection threads are not daemons: the process would wait for them
        # forever when the pool ends it. CPython's hook runs before its threads are joined.
        register: Callable[[Callable[[], None]], None] = getattr(threading, "_register_atexit")  # noqa: B009
        register(lambda: self.loop.run_until_complete(self.close()))

    async def open(self, file: LedgerFile) -> Store | str:
        """The ledger's Store, or why this process must not write it (its code is not the daemon's)."""
        st = await asyncio.to_thread(os.stat, file.path)
        ident = (file, st.st_dev, st.st_ino)
        if self.store is None or ident != self.ident:
            await self.close()
            # Never a migration from here: code upgraded on disk under a running daemon would
            # change its ledger's schema under it. Only the same code on the same schema writes.
            schema = await asyncio.to_thread(_schema_of, file.path)
            if not file.schema == schema == migrations.SCHEMA_VERSION:
                return (
                    f"the batch worker's code has ledger schema {migrations.SCHEMA_VERSION}, the daemon's "
                    f"{file.schema} and the ledger {schema}: restart the daemon"
                )
            store = Store(file.path, webhooks=file.webhooks, box=file.box, reserve=False)
            store.turns = _TURNS  # its transactions take turns with the daemon's and the other worker's
            await store.open()  # the daemon keeps the disk reserve; this process only writes
            self.store, self.ident = store, ident
        return self.store

    async def close(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            await store.close()

    async def accept(self, batch: Batch) -> Accepted | str:
        store = await self.open(batch.file)
        if isinstance(store, str):
            return store
        store.outbox_changed.clear()
        try:
            done = await accept_batch(
                batch.raw,
                store=store,
                key=batch.key,
                actor=batch.actor,
                config=batch.config,
                room_problem=lambda: batch.room_problem,
                payload=batch.payload,
            )
        except StorageFull:
            await self.close()
            raise
        return dataclasses.replace(done, webhooks_queued=store.outbox_changed.is_set())


_LEDGER: _Ledger | None = None  # in a worker process


@dataclass(frozen=True)
class Batch:
    """A batch for a worker: its body and all it is checked against (pickled across)."""

    raw: bytes
    file: LedgerFile  # the daemon's ledger, which the worker opens too
    key: ApiKey
    actor: Actor
    config: Config
    room_problem: str | None  # the daemon's disk check, made as the request came
    payload: Callable[[Message], dict[str, Any]]  # a module function: it goes by name


def _accept_here(batch: Batch) -> Accepted | str:
    """In the worker: batch_accept.accept_batch over this process's ledger connection (or why
    it must not write that ledger)."""
    global _LEDGER  # noqa: PLW0603  (one per worker process, made on its first batch)
    if _LEDGER is None:
        _LEDGER = _Ledger()
    return _LEDGER.loop.run_until_complete(_LEDGER.accept(batch))


class BatchWorker:
    """The worker processes for the batches of this daemon, started when the first large one comes."""

    def __init__(self, processes: int = PROCESSES) -> None:
        self._processes = processes
        self._lock = threading.RLock()  # a future already done runs its callback at once, lock held
        self._pool: ProcessPoolExecutor | None = None
        self._ready = False
        self._context = multiprocessing.get_context("spawn")
        self._turn: Any | None = None  # the pool's turn lock (a new pool, a new lock)
        self._refused: str | None = None  # why workers must not write this daemon's ledger
        self.answered = 0  # batches a worker accepted or refused (tests tell where a batch ran)

    def _usable(self, items: int) -> ProcessPoolExecutor | None:
        """The pool when it is up and worth it for `items`; starts it when it is not there yet."""
        if items < MIN_ITEMS or self._refused is not None or not self._processes:
            return None
        with self._lock:
            if self._pool is None:
                turn = self._context.Lock()
                pool = ProcessPoolExecutor(
                    self._processes,
                    mp_context=self._context,
                    initializer=_start_worker,
                    initargs=(turn,),
                )
                self._pool, self._ready, self._turn = pool, False, turn
                try:
                    # One each, submitted together: the pool spawns a process per task it cannot
                    # give an idle one, so all start now and none during a burst of batches.
                    for _ in range(self._processes):
                        pool.submit(_ping).add_done_callback(lambda f: self._warmed(pool, f))
                except (OSError, RuntimeError) as exc:  # no process to be had (EAGAIN, ENOMEM)
                    self._lost(pool, exc)
                    return None
            return self._pool if self._ready else None

    def _warmed(self, pool: ProcessPoolExecutor, done: Future[bool]) -> None:
        with self._lock:
            if self._pool is pool and not done.cancelled() and done.exception() is None:
                self._ready = True
            elif self._pool is pool:
                _LOGGER.warning(
                    "the batch worker process did not start (%s); batches are accepted in the daemon",
                    done.exception(),
                )
                self._pool, self._ready = None, False
                pool.shutdown(wait=False)

    def _lost(self, pool: ProcessPoolExecutor, exc: BaseException) -> None:
        with self._lock:
            if self._pool is pool:
                _LOGGER.warning(
                    "the batch worker process ended (%s); the next large batch starts another", exc
                )
                self._pool = None
                self._ready = False
        pool.shutdown(wait=False)

    # The daemon's side of the turns (ledger/connection.py Turns):
    def lock(self) -> Any | None:
        """The lock the daemon's ledger connection takes turns with, while workers are up."""
        with self._lock:
            return self._turn if self._pool is not None else None

    def stuck(self, lock: Any) -> None:
        """The turn was not had in TURN_WAIT_S: a worker that died holding it ends the pool."""
        with self._lock:
            pool = self._pool if lock is self._turn else None
            processes = getattr(pool, "_processes", None) or {}
            dead = [pid for pid, process in processes.items() if not process.is_alive()]
        if pool is not None and dead:
            self._lost(pool, RuntimeError(f"worker {dead[0]} died holding the ledger's turn"))

    def configure(self, processes: int) -> None:
        """How many workers to run ([api] batch_workers; 0: none). A pool of another size ends."""
        with self._lock:
            if processes == self._processes:
                return
            pool, self._pool, self._ready, self._processes = self._pool, None, False, processes
        if pool is not None:
            pool.shutdown(wait=False)

    @property
    def ready(self) -> bool:
        """Whether large batches go to the worker processes now."""
        return self._ready

    def pids(self) -> list[int]:
        """The worker processes' ids while they run (for ps, and tests that kill one)."""
        with self._lock:
            processes = getattr(self._pool, "_processes", None) or {}
            return list(processes)

    def start(self) -> None:
        """Start the workers now instead of on the first large batch."""
        self._usable(MIN_ITEMS)

    def close(self) -> None:
        with self._lock:
            pool, self._pool, self._ready = self._pool, None, False
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    async def parse_items(
        self, docs: Sequence[Any], *, key: ApiKey, config: Config
    ) -> list[NewMessage | ApiError]:
        """send_requests.parse_items, in a worker for a large batch (else, or should it die, a thread)."""
        parse = functools.partial(send_requests.parse_items, list(docs), key=key, config=config)
        pool = self._usable(len(docs))
        if pool is not None:
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, parse)
            except (BrokenProcessPool, RuntimeError) as exc:  # killed (OOM, an operator), or
                self._lost(pool, exc)  # shut down as it was handed over: this batch in a thread
        return await asyncio.to_thread(parse)

    async def accept(self, batch: Batch) -> Accepted | None:
        """The whole batch accepted in a worker (batch_accept.py); None when it is the daemon's
        to do: a small body, or no worker up."""
        if len(batch.raw) < MIN_BYTES:
            return None
        pool = self._usable(MIN_ITEMS)
        if pool is None:
            return None
        try:
            running = pool.submit(_accept_here, batch)
        except (BrokenProcessPool, RuntimeError) as exc:  # found dead (or shut down) before this
            self._lost(pool, exc)  # batch went to it: ours to do
            return None
        try:
            done = await asyncio.wrap_future(running)
        except BrokenProcessPool as exc:  # died with it, committed or not: the client must say again
            self._lost(pool, exc)
            raise ApiError(
                503,
                "batch_interrupted",
                "the process accepting this batch ended before it answered, so some or all of its "
                "messages may be accepted; send it again: items with an idempotency_key are not accepted twice",
                headers={"Retry-After": "1"},
            ) from None
        except BaseException:
            self.answered += 1  # its refusal (ApiError, StorageFull) came from the worker
            raise
        self.answered += 1
        if isinstance(done, str):  # its code is not this daemon's (upgraded on disk meanwhile)
            self._refuse(done)
            return None
        return done

    def _refuse(self, why: str) -> None:
        with self._lock:
            if self._refused is None:
                _LOGGER.warning("%s; until then batches are accepted in the daemon", why)
            pool, self._pool, self._ready, self._refused = self._pool, None, False, why
        if pool is not None:
            pool.shutdown(wait=False)


WORKER = BatchWorker()  # one per process: every app of a test run shares it
