"""Messages accepted per second through POST /api/v1/messages/batch (issue 13 item 5: target
10,000/s on the 2-core box), durable: the daemon's ledger commits with synchronous=FULL as shipped.

The whole daemon (`smsgw serve` as a subprocess, bench_gateway.Bench) against the simulator.
Batches of 1,000 go over 2 connections; each result is checked to be a 202, and as many rows to be
in the ledger file afterwards. Two recipient lists:
1,000 new numbers in every batch (phonenumbers parses each), and the same 1,000-number roster
every time (a team's list: the parsed numbers are cached). Measured in steady state: the daemon
accepts large batches whole in two worker processes it starts on the first one
(appliance/batch_worker.py), so WARMUP rounds of batches to other numbers go first. Baseline in the same run: single
POSTs driven by wrk at 32 connections, as bench_gateway measures them, against a daemon of their
own (the batches' daemon has nothing to send while they run). While the batches run, a
probe measures the event loop (GET /healthz, new numbers) and the daemon's own writes beside the
workers' (a single POST every 50 ms, roster). The load average is printed with the figures: the
box may be shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.benchmarks.bench_gateway import CONCURRENCY, DRAIN_L_S, Bench, _wrk, post_script

BATCH_SIZE = 1000
BATCHES = 20
WARMUP = 3
CONNECTIONS = 2
TARGET_PER_S = 10_000
BODY_PREFIX = "Shift change: report to gate "


def _bodies(distinct: bool, *, count: int = BATCHES, first: int = 0) -> list[bytes]:
    """Request bodies prepared up front: the client's own JSON work stays out of the measurement."""
    # Scheduled a day ahead: the measurement is the accept path, not the drain competing for the CPU.
    at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    out = []
    for b in range(first, first + count):
        base = b * BATCH_SIZE if distinct else 0
        items = [
            {"to": f"+49151{base + i:08d}", "body": f"{BODY_PREFIX}{i % 7}.", "send_at": at}
            for i in range(BATCH_SIZE)
        ]
        out.append(json.dumps({"messages": items}).encode())
    return out


async def _warm_up(b: Bench) -> None:
    """WARMUP batches to numbers neither measured list uses, over CONNECTIONS as measured, untimed:
    every worker process has started and answered before the clock runs."""
    async with b.client() as c:
        bodies = _bodies(True, count=WARMUP * CONNECTIONS, first=10 * BATCHES)

        async def post(body: bytes) -> None:
            r = await c.post(
                "/api/v1/messages/batch", content=body, headers={"Content-Type": "application/json"}
            )
            if r.status_code != 200:
                raise RuntimeError(f"warm-up batch refused: {r.status_code} {r.text[:300]}")

        for round_ in range(WARMUP):
            await asyncio.gather(
                *(post(body) for body in bodies[round_ * CONNECTIONS : (round_ + 1) * CONNECTIONS])
            )


def _daemon_cpu_s(b: Bench) -> tuple[float, float]:
    """CPU seconds of the daemon and of its children (the batch worker) so far: on a shared box
    the figures that the other tenants' load does not divide."""
    return b.cpu_s(), b.children_cpu_s()


def _in_ledger(b: Bench) -> int:
    """Messages of these batches committed to the daemon's ledger file (read beside it: WAL)."""
    with contextlib.closing(
        sqlite3.connect(f"file:{b.directory / 'ledger.sqlite3'}?mode=ro", uri=True)
    ) as db:
        (n,) = db.execute("SELECT count(*) FROM messages WHERE body LIKE ?", (f"{BODY_PREFIX}%",)).fetchone()
    return int(n)


async def _batches(b: Bench, distinct: bool) -> tuple[float, float, tuple[float, float]]:
    """(messages/s accepted, median seconds per batch, (daemon, worker) CPU seconds per 1,000 messages)."""
    bodies = _bodies(distinct)
    stored = _in_ledger(b)
    cpu_before = _daemon_cpu_s(b)
    took: list[float] = []
    async with b.client() as c:
        pending = list(bodies)

        async def worker() -> int:
            accepted = 0
            while pending:
                body = pending.pop()
                t0 = time.perf_counter()
                r = await c.post(
                    "/api/v1/messages/batch", content=body, headers={"Content-Type": "application/json"}
                )
                took.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"batch refused: {r.status_code} {r.text[:300]}")
                accepted += r.content.count(b'"status":202')
            return accepted

        start = time.perf_counter()
        counts = await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        wall = time.perf_counter() - start
    if sum(counts) != BATCHES * BATCH_SIZE:
        raise RuntimeError(f"only {sum(counts)} of {BATCHES * BATCH_SIZE} messages were accepted")
    took.sort()
    cpu_after, batches = _daemon_cpu_s(b), sum(counts) / BATCH_SIZE
    cpu = ((cpu_after[0] - cpu_before[0]) / batches, (cpu_after[1] - cpu_before[1]) / batches)
    if _in_ledger(b) - stored != sum(counts):  # each 202 a committed row (synchronous=FULL)
        raise RuntimeError(f"{sum(counts)} accepted, {_in_ledger(b) - stored} in the ledger")
    return sum(counts) / wall, took[len(took) // 2], cpu


async def _probe(b: Bench, *, post: bool = False) -> list[float]:
    """GET /healthz every 20 ms while batches run: a batch must not hold the event loop. With
    `post`, a single POST every 50 ms instead: the daemon's own writes must not wait on the batch
    workers' transactions (they go first)."""
    took: list[float] = []
    at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    single = json.dumps({"to": "+4915199999999", "body": "single beside batches", "send_at": at}).encode()
    async with b.client() as c:
        try:
            while True:
                t0 = time.perf_counter()
                if post:
                    r = await c.post(
                        "/api/v1/messages", content=single, headers={"Content-Type": "application/json"}
                    )
                    if r.status_code != 202:
                        raise RuntimeError(f"single POST refused: {r.status_code} {r.text[:300]}")
                else:
                    await c.get("/healthz")
                took.append(time.perf_counter() - t0)
                await asyncio.sleep(0.05 if post else 0.02)  # the probe's pace, not a synchronisation
        except asyncio.CancelledError:
            return took


async def run() -> None:
    print("batches (smsgw serve as a subprocess, simulator on ptys in this process)")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-") as tmp_name:
        tmp = Path(tmp_name)
        single = 0.0
        if shutil.which("wrk") is not None:  # on an empty ledger, as bench_gateway does
            # A daemon of its own: the ~6,000 messages wrk queues would otherwise be sent during
            # the batches below, and the drain's CPU counted against them.
            async with Bench(tmp / "single", DRAIN_L_S) as b:
                single = await _wrk(f"{b.base}/api/v1/messages", post_script(tmp, b.key))
        async with Bench(tmp / "batch", DRAIN_L_S) as b:
            await _warm_up(b)
            probe = asyncio.create_task(_probe(b))
            new_rate, new_batch_s, new_cpu = await _batches(b, distinct=True)
            probe.cancel()
            healthz = await probe
            probe = asyncio.create_task(_probe(b, post=True))
            roster_rate, roster_batch_s, roster_cpu = await _batches(b, distinct=False)
            probe.cancel()
            singles = await probe
    after = os.getloadavg()
    verdict = "meets" if min(new_rate, roster_rate) >= TARGET_PER_S else "MISSES"
    baseline = (
        f"baseline single POSTs {single:7.0f}/s at {CONCURRENCY} connections (wrk) -> ratio "
        f"{new_rate / single:.1f}x (new numbers), {roster_rate / single:.1f}x (roster)"
        if single
        else "baseline: wrk is not installed (make bench installs it as root)"
    )
    print(
        f"batch accepts (durable, {BATCHES} x {BATCH_SIZE} over {CONNECTIONS} connections): "
        f"{new_rate:7.0f} messages/s with new numbers (median {new_batch_s * 1000:.0f} ms a batch), "
        f"{roster_rate:7.0f}/s to a roster (median {roster_batch_s * 1000:.0f} ms) "
        f"({verdict} target {TARGET_PER_S:,}/s); daemon + worker CPU per 1,000 messages: "
        f"{sum(new_cpu) * 1000:.0f} ms (new numbers: {new_cpu[0] * 1000:.0f} + {new_cpu[1] * 1000:.0f}), "
        f"{sum(roster_cpu) * 1000:.0f} ms (roster: {roster_cpu[0] * 1000:.0f} + {roster_cpu[1] * 1000:.0f}); "
        f"{baseline}; GET /healthz meanwhile: "
        f"median {statistics.median(healthz) * 1000:.0f} ms, max {max(healthz) * 1000:.0f} ms "
        f"({len(healthz)} probes); a single POST meanwhile (roster): median "
        f"{statistics.median(singles) * 1000:.0f} ms, max {max(singles) * 1000:.0f} ms ({len(singles)}); "
        f"load average {load[0]:.2f} before, {after[0]:.2f} after on {os.cpu_count()} cores"
    )
