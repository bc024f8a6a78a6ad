"""`make bench`: run every benchmark module and print its figures."""

from __future__ import annotations

import asyncio
import sys

from tests.benchmarks import bench_engine, bench_gateway


def main() -> int:
    which = sys.argv[1:] or ["engine", "gateway"]
    if "engine" in which:
        asyncio.run(bench_engine.run())
    if "gateway" in which:
        asyncio.run(bench_gateway.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
