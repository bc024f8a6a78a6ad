"""The slow-connection flood (issue 11): /healthz latency while 1,100 slowloris connections are held.

`smsgw serve` runs as a subprocess twice:
- without the guard: the old unit's 1,024 descriptors (no LimitNOFILE) and the request
  deadline and connection caps set out of reach, i.e. plain uvicorn as before;
- with it: the unit's LimitNOFILE=8192 and the default [api] limits.
Meanwhile 1,100 connections from another address (127.0.0.2; tests/benchmarks/slowloris.py,
its own process) each send a request head one header line a second and never finish
it; a closed one reconnects at once (the attacker does not give up). A probe asks GET /healthz on a fresh connection every 50 ms; an answer that takes
longer than PROBE_TIMEOUT_S, or never comes, counts as PROBE_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.config_files import toml_text
from tests.support.ports import free_port

SLOW_CONNECTIONS = 1100
FLOOD_S = 20.0
PROBE_EVERY_S = 0.05
PROBE_TIMEOUT_S = 2.0


async def _serve(
    tmp: Path, nofile: int, api: dict[str, object]
) -> tuple[asyncio.subprocess.Process, int, Path]:
    port = free_port()
    raw = {
        "modem": {"port": "sim"},
        "api": {"listen": f"127.0.0.1:{port}", **api},
        "store": {"path": str(tmp / "ledger.sqlite3")},
        "simulator": {"directory": str(tmp / "sim"), "control": ""},
    }
    (tmp / "smsgw.toml").write_text(toml_text(raw))
    log = tmp / "serve.log"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "appliance.cli",
            "serve",
            "--config",
            str(tmp / "smsgw.toml"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
            preexec_fn=limit,
        )
    async with httpx.AsyncClient(timeout=2) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return proc, port, log
            await asyncio.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the gateway did not start")


async def _probe(port: int, until: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = 0
    fresh = httpx.Limits(max_keepalive_connections=0)  # a new connection for every probe
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S, limits=fresh) as client:
        while time.monotonic() < until:
            t0 = time.perf_counter()
            try:
                ok = (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
            except httpx.HTTPError:
                ok = False
            elapsed = time.perf_counter() - t0
            if not ok:
                failures += 1
                elapsed = max(elapsed, PROBE_TIMEOUT_S)
            latencies.append(elapsed)
            await asyncio.sleep(max(0.0, PROBE_EVERY_S - elapsed))
    return latencies, failures


async def _one(tmp: Path, label: str, nofile: int, api: dict[str, object]) -> None:
    proc, port, log = await _serve(tmp, nofile, api)
    try:
        quiet, _ = await _probe(port, time.monotonic() + 5.0)
        q0 = statistics.quantiles(quiet, n=100)
        attacker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.benchmarks.slowloris",
            str(port),
            str(SLOW_CONNECTIONS),
            str(FLOOD_S + 3.0),
            stdout=asyncio.subprocess.PIPE,
        )
        await asyncio.sleep(3.0)  # let the flood build up before measuring (pacing, not synchronisation)
        latencies, failures = await _probe(port, time.monotonic() + FLOOD_S)
        out, _ = await attacker.communicate()
    finally:
        proc.terminate()
        await proc.wait()
    q = statistics.quantiles(latencies, n=100)
    print(f"  {label}: no flood: /healthz p50 {q0[49] * 1000:.1f} ms, p99 {q0[98] * 1000:.1f} ms")
    print(
        f"  {label}: flood:    /healthz p50 {q[49] * 1000:7.1f} ms, p99 {q[98] * 1000:7.1f} ms, "
        f"{failures}/{len(latencies)} probes failed or > {PROBE_TIMEOUT_S:.0f} s; "
        f"{out.decode().strip()} slow connections opened; log {log.stat().st_size} bytes"
    )


async def run() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * SLOW_CONNECTIONS)), hard))
    print(f"slow-connection flood ({SLOW_CONNECTIONS} slowloris connections for {FLOOD_S:.0f} s)")
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-") as tmp_name:
        tmp = Path(tmp_name)
        unbounded: dict[str, object] = {
            "request_timeout_s": 1e9,
            "max_connections": 1_000_000,
            "max_connections_per_client": 1_000_000,
        }
        for sub in ("without", "with"):
            (tmp / sub).mkdir()
        await _one(tmp / "without", "without the guard (1,024 fds, no deadline, no cap)", 1024, unbounded)
        await _one(tmp / "with", "with the guard    (8,192 fds, defaults)           ", 8192, {})
