"""`make bench`: run every benchmark module and print its figures (or name some: engine gateway batch modems page watchdog flood recovery login store fleet pgfleet)."""

from __future__ import annotations

import asyncio
import sys

from tests.benchmarks import (
    bench_batch,
    bench_engine,
    bench_fleet,
    bench_flood,
    bench_gateway,
    bench_login,
    bench_modems,
    bench_page,
    bench_pgfleet,
    bench_recovery,
    bench_store,
    bench_watchdog,
)

BENCHES = {
    "engine": bench_engine.run,
    "gateway": bench_gateway.run,
    "batch": bench_batch.run,
    "modems": bench_modems.run,
    "login": bench_login.run,
    "page": bench_page.run,
    "watchdog": bench_watchdog.run,
    "flood": bench_flood.run,
    "recovery": bench_recovery.run,
    "store": bench_store.run,
    "fleet": bench_fleet.run,
    "pgfleet": bench_pgfleet.run,
}


def main() -> int:
    which = sys.argv[1:] or list(BENCHES)
    unknown = [w for w in which if w not in BENCHES]
    if unknown:
        print(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
        return 2
    for name in which:
        asyncio.run(BENCHES[name]())
    return 0


if __name__ == "__main__":
    sys.exit(main())
