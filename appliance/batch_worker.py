"""A large batch's CPU-bound part in a worker process: validating its items.

The daemon's Python runs under one GIL, so a worker thread only keeps the event loop answering;
it adds no CPU. A 1,000-item batch spends tens of ms validating (phonenumbers, ~20 µs a new
number): in one worker process that runs on the second core while the event loop commits the
next batch (issue 13 item 5: 10,000 messages/s). (Its results were encoded here too, until
message_json.py made that cheaper than sending the messages over: ~5 ms in the daemon.)

The worker runs the very functions of send_requests that a thread would, on pickled copies, so
a result is byte for byte what the in-process path gives. It starts (spawn: the daemon has
threads, so fork is unsafe) on the first large batch; until it answers, for small batches, and
after it died, the same functions run in a thread. The pool is per process and ends with it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import phonenumbers

from appliance import heap, send_requests
from appliance.config import Config
from appliance.ledger import ApiKey, NewMessage
from appliance.validation import ApiError

_LOGGER = logging.getLogger(__name__)

# Below this many items the pickling round trip (~5 µs an item) buys too little: a thread does it.
MIN_ITEMS = 100


def _warm() -> bool:
    """Run once in a new worker: phonenumbers' metadata loads before the first batch needs it."""
    phonenumbers.parse("+4915112345678")  # loads the metadata most numbers need
    heap.tune()
    return True


class BatchWorker:
    """One worker process for the batches of this daemon, started when the first large one comes."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # a future already done runs its callback at once, lock held
        self._pool: ProcessPoolExecutor | None = None
        self._ready = False

    def _usable(self, items: int) -> ProcessPoolExecutor | None:
        """The pool when it is up and worth it for `items`; starts it when it is not there yet."""
        if items < MIN_ITEMS:
            return None
        with self._lock:
            if self._pool is None:
                pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
                self._pool, self._ready = pool, False
                try:
                    pool.submit(_warm).add_done_callback(lambda f: self._warmed(pool, f))
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
                    "the batch worker process did not start (%s); batches use a thread", done.exception()
                )
                self._pool = None
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

    @property
    def ready(self) -> bool:
        """Whether large batches go to the worker process now."""
        return self._ready

    def pids(self) -> list[int]:
        """The worker process's id while it runs (for ps, and tests that kill it)."""
        with self._lock:
            processes = getattr(self._pool, "_processes", None) or {}
            return list(processes)

    def start(self) -> None:
        """Start the worker now instead of on the first large batch."""
        self._usable(MIN_ITEMS)

    def close(self) -> None:
        with self._lock:
            pool, self._pool, self._ready = self._pool, None, False
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    async def parse_items(
        self, docs: Sequence[Any], *, key: ApiKey, config: Config
    ) -> list[NewMessage | ApiError]:
        """send_requests.parse_items, in the worker for a large batch (else, or should it die, a thread)."""
        parse = functools.partial(send_requests.parse_items, list(docs), key=key, config=config)
        pool = self._usable(len(docs))
        if pool is not None:
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, parse)
            except BrokenProcessPool as exc:  # killed (OOM, an operator): this batch in a thread
                self._lost(pool, exc)
        return await asyncio.to_thread(parse)


WORKER = BatchWorker()  # one per process: every app of a test run shares it
