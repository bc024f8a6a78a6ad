"""`make bench`: run every benchmark module and print its figures."""

from __future__ import annotations

import asyncio
import sys

from tests.benchmarks import bench_engine


def main() -> int:
    asyncio.run(bench_engine.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
