"""A login flood against the whole daemon: `/healthz` p50/p99 idle and under 100 guessers (target p99 <= 50 ms).

`smsgw serve` runs as a subprocess on the simulator with a real admin password hash (PBKDF2,
600k rounds). 100 guessers, each from its own address (127.0.1.x: the per-address limits do
not help; only the box-wide budget, the hashing threads and the tarpit do), run in another
process on raw keep-alive connections: one GET /login for a CSRF token, then wrong passwords
as fast as the box answers. This process probes `/healthz` every 10 ms, before and during the
flood, and reads the daemon's heartbeat age from the ledger (the watchdog pages at 20 s).
The flood is paused (SIGSTOP) every other window: on a shared machine the neighbours' load
moves the figures, and the paused windows measure that load at the same time as the flood.

Run: `python -m tests.benchmarks login`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from appliance.session import hash_password
from modem.simulator import Simulator
from tests.benchmarks.served import cpu_s
from tests.support.ports import free_port

GUESSERS = 100
IDLE_S = 5.0
ROUNDS = 4
WINDOW_S = 4.0
ARRIVAL_S = 3.0  # the guessers' arrival is reported apart from the steady flood
FLOOD_S = ARRIVAL_S + ROUNDS * (2 * WINDOW_S + 1.0) + 2.0  # the flood process's lifetime
PROBE_EVERY_S = 0.01
TARGET_P99_MS = 50.0


async def _probe(base: str, seconds: float, ledger: Path) -> tuple[list[tuple[float, float]], float]:
    """(seconds since start, /healthz round trip ms) for `seconds`, and the oldest heartbeat age seen (s)."""
    times: list[tuple[float, float]] = []
    worst_beat = 0.0
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            start = time.monotonic()
            while time.monotonic() < start + seconds:
                t0 = time.perf_counter()
                r = await client.get("/healthz")
                times.append((time.monotonic() - start, (time.perf_counter() - t0) * 1000))
                assert r.status_code == 200, r.text
                row = db.execute("SELECT at FROM heartbeats WHERE name = 'serve'").fetchone()
                if row:
                    worst_beat = max(worst_beat, time.time() - row[0])
                await asyncio.sleep(PROBE_EVERY_S)
    finally:
        db.close()
    return times, worst_beat


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"(?i)content-length: *(\d+)", head)
    body = await reader.readexactly(int(m.group(1))) if m else b""
    return status, head, body


async def _guesser(host: str, port: int, address: str, until: float, counts: dict[str, int]) -> None:
    """Wrong passwords as fast as the box answers, on one keep-alive connection (reopened if closed)."""
    n = 0
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(address, 0))
        except OSError:
            counts["connect_error"] = counts.get("connect_error", 0) + 1
            await asyncio.sleep(0.1)
            continue
        try:
            writer.write(f"GET /login HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            _status, head, body = await _read_response(reader)
            cookie = re.search(rb"(?i)set-cookie: *([^;\r\n]+)", head)
            token = re.search(rb'name="csrf" value="([^"]+)"', body)
            if cookie is None or token is None:
                counts["no_form"] = counts.get("no_form", 0) + 1
                continue
            while time.monotonic() < until:
                n += 1
                form = b"csrf=" + token.group(1) + f"&password=guess-{address}-{n}".encode()
                writer.write(
                    f"POST /login HTTP/1.1\r\nHost: {host}:{port}\r\n".encode()
                    + b"Cookie: "
                    + cookie.group(1)
                    + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    + f"Content-Length: {len(form)}\r\n\r\n".encode()
                    + form
                )
                status, _head, _body = await _read_response(reader)
                counts[str(status)] = counts.get(str(status), 0) + 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            counts["dropped"] = counts.get("dropped", 0) + 1
        finally:
            writer.close()


async def _flood(host: str, port: int, guessers: int, seconds: float) -> dict[str, int]:
    counts: dict[str, int] = {}
    until = time.monotonic() + seconds
    await asyncio.gather(*(_guesser(host, port, f"127.0.1.{i + 1}", until, counts) for i in range(guessers)))
    return counts


def flood_main() -> None:
    """Entry of the flood process: `python -m tests.benchmarks.bench_login HOST PORT GUESSERS SECONDS`."""
    host, port, guessers, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(asyncio.run(_flood(host, port, guessers, seconds))))


async def run() -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sim = Simulator(tmp / "sim", "quectel-ec25", seed=1)
        await sim.start()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        ledger = tmp / "ledger.sqlite3"
        config = tmp / "smsgw.toml"
        config.write_text(
            f'[modem]\nport = "{sim.primary_path}"\n'
            f'[api]\nlisten = "127.0.0.1:{port}"\n'
            f'[store]\npath = "{ledger}"\n'
            f'[web]\nadmin_password_hash = "{hash_password("the real one")}"\n'
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "appliance.cli",
            "serve",
            "--config",
            str(config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=(tmp / "serve.log").open("wb"),
        )
        flood: asyncio.subprocess.Process | None = None
        try:
            async with httpx.AsyncClient(base_url=base) as client:
                deadline = time.monotonic() + 30
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get("/healthz")).status_code == 200:
                            break
                    assert time.monotonic() < deadline, (tmp / "serve.log").read_text()
                    await asyncio.sleep(0.1)
            idle, idle_beat = await _probe(base, IDLE_S, ledger)
            cpu0 = cpu_s(proc.pid)
            flood = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.benchmarks.bench_login",
                "127.0.0.1",
                str(port),
                str(GUESSERS),
                str(FLOOD_S),
                stdout=asyncio.subprocess.PIPE,
            )
            await asyncio.sleep(0.3)  # the flood process starts (Python imports)
            arrival, beat = await _probe(base, ARRIVAL_S, ledger)
            beats = [idle_beat, beat]
            steady: list[float] = []
            paused: list[float] = []
            # Flood and pause (SIGSTOP) windows in turn: the same neighbours' load in both, so the
            # difference is the flood's. A held (tarpitted) answer still goes out while paused.
            for _round in range(ROUNDS):
                window, beat = await _probe(base, WINDOW_S, ledger)
                steady += [ms for _t, ms in window]
                beats.append(beat)
                flood.send_signal(signal.SIGSTOP)
                try:
                    await asyncio.sleep(1.0)
                    window, beat = await _probe(base, WINDOW_S, ledger)
                    paused += [ms for _t, ms in window]
                    beats.append(beat)
                finally:
                    flood.send_signal(signal.SIGCONT)
            out, _ = await flood.communicate()
            cpu = cpu_s(proc.pid) - cpu0
            counts = json.loads(out)
        finally:
            if flood is not None and flood.returncode is None:  # the bench failed mid-flood
                flood.send_signal(signal.SIGCONT)
                flood.kill()
                await flood.wait()
            proc.terminate()
            await proc.wait()
            await sim.stop()
    idle_ms = [ms for _t, ms in idle]
    arrival_ms = [ms for _t, ms in arrival]
    figures = {
        "idle p50 ms": statistics.median(idle_ms),
        "idle p99 ms": _pct(idle_ms, 99),
        "flood p50 ms": statistics.median(steady),
        "flood p99 ms": _pct(steady, 99),
        "flood max ms": max(steady),
        "paused p50 ms": statistics.median(paused),
        "paused p99 ms": _pct(paused, 99),
        "arrival p50 ms": statistics.median(arrival_ms),
        "arrival max ms": max(arrival_ms),
        "heartbeat max age s": max(beats),
        "daemon cpu s": cpu,
    }
    attempts = sum(v for k, v in counts.items() if k.isdigit())
    verdict = "ok" if figures["flood p99 ms"] <= TARGET_P99_MS else "OVER TARGET"
    print(
        f"login bench: /healthz idle p50 {figures['idle p50 ms']:.1f} ms, p99 {figures['idle p99 ms']:.1f} ms "
        f"({len(idle_ms)} probes)"
    )
    print(
        f"login bench: /healthz while {GUESSERS} guessers arrive (first {ARRIVAL_S:.0f} s: 100 forms, the "
        f"box-wide burst of PBKDF2) p50 {figures['arrival p50 ms']:.1f} ms, max {figures['arrival max ms']:.1f} ms "
        f"({len(arrival_ms)} probes)"
    )
    print(
        f"login bench: /healthz under {GUESSERS} guessers p50 {figures['flood p50 ms']:.1f} ms, "
        f"p99 {figures['flood p99 ms']:.1f} ms, max {figures['flood max ms']:.1f} ms "
        f"({len(steady)} probes; target p99 <= {TARGET_P99_MS:.0f})  {verdict}"
    )
    print(
        f"login bench: /healthz in the pauses between (same neighbours, guessers stopped) p50 "
        f"{figures['paused p50 ms']:.1f} ms, p99 {figures['paused p99 ms']:.1f} ms ({len(paused)} probes); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"login bench: {attempts} login attempts in {FLOOD_S - ROUNDS * (WINDOW_S + 1):.0f} s of flood: {counts}; "
        f"daemon CPU {cpu:.1f} s; heartbeat at most {figures['heartbeat max age s']:.1f} s old (watchdog: 20)"
    )
    return figures


if __name__ == "__main__":
    flood_main()
