"""Accepts per second on the ledger itself, SQLite and PostgreSQL side by side in one run (the fleet
issue's `[store] url`): concurrent single accepts (group commit, as POST /api/v1/messages) and
batches of 1,000 (accept_many, as POST /api/v1/messages/batch). Both durable as shipped: SQLite
WAL with synchronous=FULL, PostgreSQL with fsync on (a local server over TCP on this box, so the
figure is an upper bound for a server across the LAN). SQLite is the baseline of the ratios.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from appliance.ledger import NewMessage, Store
from tests.support.postgres import TEMPLATE, make_template, start_server

SINGLES = 2000
CONCURRENCY = 32
BATCHES = 10
BATCH_SIZE = 1000


def _new(i: int) -> NewMessage:
    return NewMessage(
        to=f"+49151{i:08d}",
        body=f"Shift change: report to gate {i % 7}.",
        encoding="gsm7",
        segments=1,
        send_at=time.time() + 86400,  # scheduled: the measurement is the accept, not a drain
    )


async def _singles(store: Store) -> float:
    counter = iter(range(SINGLES))

    async def worker() -> None:
        for i in counter:
            await store.accept(_new(i), key_id=None, queue_max=10**9)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return SINGLES / (time.perf_counter() - start)


async def _batches(store: Store) -> float:
    start = time.perf_counter()
    for b in range(BATCHES):
        news = [_new(10**6 + b * BATCH_SIZE + i) for i in range(BATCH_SIZE)]
        results = await store.accept_many(news, key_id=None, queue_max=10**9)
        assert all(isinstance(r, tuple) and r[1] for r in results)
    return BATCHES * BATCH_SIZE / (time.perf_counter() - start)


async def _measure(locator: str) -> tuple[float, float]:
    store = Store(locator)
    await store.open()
    try:
        return await _singles(store), await _batches(store)
    finally:
        await store.close()


async def run() -> None:
    directory = Path(tempfile.mkdtemp(prefix="bench-store-"))
    server = await asyncio.to_thread(start_server, durable=True)
    try:
        await make_template(server)
        sqlite = await _measure(str(directory / "ledger.sqlite3"))
        postgres = await _measure(await server.fresh_database(TEMPLATE))
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(directory, ignore_errors=True)
    load = os.getloadavg()[0]
    print(
        f"ledger accepts/s (load {load:.1f}; {CONCURRENCY} concurrent singles x {SINGLES}, {BATCHES} batches of {BATCH_SIZE})"
    )
    print(f"  {'':12} {'singles/s':>10} {'batch msg/s':>12}")
    print(f"  {'sqlite':12} {sqlite[0]:10.0f} {sqlite[1]:12.0f}")
    print(f"  {'postgresql':12} {postgres[0]:10.0f} {postgres[1]:12.0f}")
    print(
        f"  postgresql / sqlite: singles x{postgres[0] / sqlite[0]:.2f}, batches x{postgres[1] / sqlite[1]:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(run())
