"""The whole daemon (`smsgw serve` as a subprocess) against the simulator, measured from outside.

1. Accepts per second (POST -> 202, committed with synchronous=FULL) at 32 concurrent
   connections, driven by wrk; baseline in the same run: wrk on /healthz (HTTP alone).
2. Accept -> AT+CMGS latency with an idle gateway (p50, p99), from the simulator's log;
   baseline: the POST round trip alone.
3. Drain utilisation at submit latency L = 50 ms: N·L over the time the modem took.
4. RSS idle and after 10,000 messages; CPU while idle (no busy polling).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modem.simulator import Simulator
from tests.benchmarks.served import Served
from tests.support.ports import free_port

CONCURRENCY = 32
WRK_SECONDS = 10
LATENCY_SAMPLES = 200
DRAIN_MESSAGES = 200
DRAIN_L_S = 0.05
RSS_MESSAGES = 10_000
IDLE_CPU_S = 10.0
SPORADIC_SAMPLES = 10
SPORADIC_GAP_S = 1.0


class Bench(Served):
    def __init__(self, tmp: Path, latency_s: float, *, limits: dict[str, Any] | None = None) -> None:
        """`limits`: the [modem] rate keys to use instead of "lifted" (and the shipped [dispatcher])."""
        self.sim = Simulator(
            tmp / "sim",
            "quectel-ec25",
            prompt_delay_s=0,
            submit_latency_s=latency_s,
            submit_jitter_s=0,
            report_delay_s=0.2,
            report_jitter_s=0,
            seed=1,
        )
        super().__init__(tmp, [self.sim])
        self.limits = limits

    async def __aenter__(self) -> Bench:
        await self.sim.start()
        modem_limits, dispatcher_limits = (
            ({"rate_per_minute": 100000.0}, {"per_recipient_per_minute": 1000000.0})
            if self.limits is None
            else (self.limits, {})
        )
        await self.serve(
            {
                "modem": {"port": str(self.sim.primary_path), **modem_limits},
                "api": {"listen": f"127.0.0.1:{free_port()}", "queue_max": 1000000},
                "store": {"path": str(self.directory / "ledger.sqlite3")},
                "dispatcher": dispatcher_limits,
            }
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def submits(self) -> int:
        return sum(1 for e in self.sim.network.log if e.kind == "submit")


async def _wrk(url: str, script: Path | None) -> float:
    args = ["wrk", "-t2", f"-c{CONCURRENCY}", f"-d{WRK_SECONDS}s", "--latency"]
    if script is not None:
        args += ["-s", str(script)]
    proc = await asyncio.create_subprocess_exec(*args, url, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    text = out.decode()
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        print(f"    (wrk saw {non2xx.group(1)} non-2xx responses)")
    return float(m.group(1)) if m else 0.0


def post_script(tmp: Path, key: str) -> Path:
    """wrk's script for single POSTs of one short message (bench_batch's baseline too)."""
    script = tmp / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.body = \'{"to": "+4915112345678", "body": "benchmark message", "priority": "bulk"}\'\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )
    return script


async def bench_accepts(tmp: Path) -> None:
    if shutil.which("wrk") is None:
        print("accepts/s: wrk is not installed (make bench installs it as root: apt-get install wrk)")
        return
    async with Bench(tmp / "accept", DRAIN_L_S) as b:
        script = post_script(tmp, b.key)
        health = await _wrk(f"{b.base}/healthz", None)
        accepts = await _wrk(f"{b.base}/api/v1/messages", script)
        async with b.client() as c:
            depth = (await c.get("/api/v1/status")).json()["queue"]
    verdict = "meets" if accepts >= 1000 else "MISSES"
    print(
        f"accepts: {accepts:7.0f}/s durable (POST -> 202) at {CONCURRENCY} connections "
        f"({verdict} target 1,000/s); baseline GET /healthz {health:7.0f}/s -> ratio {accepts / health:.2f}; "
        f"queue after: {depth['depth']} waiting"
    )


async def bench_latency(tmp: Path) -> None:
    async with Bench(tmp / "latency", 0.0) as b, b.client() as c:
        to_cmgs, round_trip = [], []
        for i in range(LATENCY_SAMPLES):
            before = b.submits()
            t0 = time.perf_counter()
            r = await c.post("/api/v1/messages", json={"to": "+4915112345678", "body": f"latency {i}"})
            round_trip.append(time.perf_counter() - t0)
            assert r.status_code == 202, r.text
            while b.submits() == before:  # the simulator logs AT+CMGS's submit (L = 0)
                await asyncio.sleep(0.0002)
            to_cmgs.append(time.perf_counter() - t0)
            await asyncio.sleep(0.02)  # idle between messages: this measures an idle gateway
    q = statistics.quantiles(to_cmgs, n=100)
    rq = statistics.quantiles(round_trip, n=100)
    ok = q[49] <= 0.020 and q[98] <= 0.100
    print(
        f"accept -> AT+CMGS (idle): p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms "
        f"({'meets' if ok else 'MISSES'} p50 <= 20, p99 <= 100); baseline POST round trip "
        f"p50 {rq[49] * 1000:.1f} ms, p99 {rq[98] * 1000:.1f} ms"
    )


async def bench_sporadic(tmp: Path) -> None:
    """POST -> AT+CMGS for sporadic traffic under the shipped limits (20 a minute per modem,
    6 a minute per recipient): one message at a time, a second after the previous went out,
    each to its own recipient; with a burst of 1 (before issue 10) and the shipped burst."""
    results: list[str] = []
    for label, limits in (("burst 1", {"rate_burst": 1}), ("shipped burst", {})):
        async with Bench(tmp / f"sporadic-{len(results)}", 0.0, limits=limits) as b, b.client() as c:
            waits, ids = [], []
            for i in range(SPORADIC_SAMPLES):
                before = b.submits()
                t0 = time.perf_counter()
                r = await c.post(
                    "/api/v1/messages", json={"to": f"+49151100{i:05d}", "body": f"sporadic {i}"}
                )
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
                while b.submits() == before:
                    await asyncio.sleep(0.001)
                waits.append(time.perf_counter() - t0)
                await asyncio.sleep(SPORADIC_GAP_S)  # sporadic: the next one a second later
            docs = [(await c.get(f"/api/v1/messages/{msg_id}")).json() for msg_id in ids]
            held = sum(any(e["type"] == "delayed" for e in d["events"]) for d in docs)
        results.append(
            f"{label}: median {statistics.median(waits) * 1000:.0f} ms, max {max(waits) * 1000:.0f} ms, "
            f"{held}/{len(waits)} held back by the rate limit (timeline)"
        )
    print(
        f"sporadic POST -> AT+CMGS, shipped limits, {SPORADIC_SAMPLES} messages {SPORADIC_GAP_S:g} s apart: "
        + "; ".join(results)
    )


async def bench_drain(tmp: Path) -> None:
    async with Bench(tmp / "drain", DRAIN_L_S) as b, b.client() as c:
        # Queue everything first (scheduled a moment ahead), then let the modem drain it.
        at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
        await asyncio.gather(
            *(
                c.post("/api/v1/messages", json={"to": "+4915112345678", "body": f"d{i}", "send_at": at})
                for i in range(DRAIN_MESSAGES)
            )
        )
        start = time.perf_counter()
        while b.submits() < DRAIN_MESSAGES:
            await asyncio.sleep(0.005)
        first = next(e.time for e in b.sim.network.log if e.kind == "submit")
        last = [e.time for e in b.sim.network.log if e.kind == "submit"][-1]
        span = (last - first).total_seconds() + DRAIN_L_S
        wall = time.perf_counter() - start
    bound = DRAIN_MESSAGES * DRAIN_L_S
    util = bound / span
    print(
        f"drain through the daemon at L = {DRAIN_L_S * 1000:.0f} ms: {DRAIN_MESSAGES} messages, first to last "
        f"submit {span:.2f} s vs bound N*L {bound:.2f} s -> utilisation {util:.1%} "
        f"({'meets' if util >= 0.97 else 'MISSES'} target 97%); {((span - bound) / DRAIN_MESSAGES) * 1000:.2f} ms "
        f"overhead/message (wall from queued to last submit {wall:.2f} s)"
    )


async def bench_resources(tmp: Path) -> None:
    async with Bench(tmp / "rss", 0.0) as b:
        await asyncio.sleep(2)  # settle after start (the measurement window, not a sync)
        rss_idle = b.rss_kib()
        cpu0, t0 = b.cpu_s(), time.monotonic()
        await asyncio.sleep(IDLE_CPU_S)
        idle_cpu = (b.cpu_s() - cpu0) / (time.monotonic() - t0)
        async with b.client() as c:
            sem = asyncio.Semaphore(CONCURRENCY)

            async def post(i: int) -> None:
                async with sem:
                    await c.post("/api/v1/messages", json={"to": f"+49151{i % 1000:07d}", "body": f"rss {i}"})

            await asyncio.gather(*(post(i) for i in range(RSS_MESSAGES)))
            while b.submits() < RSS_MESSAGES:
                await asyncio.sleep(0.1)
        rss_after = b.rss_kib()
    print(
        f"memory: RSS idle {rss_idle / 1024:.1f} MiB, after {RSS_MESSAGES:,} messages sent {rss_after / 1024:.1f} MiB "
        f"(+{(rss_after - rss_idle) / 1024:.1f} MiB); CPU idle {idle_cpu:.2%} of one core over {IDLE_CPU_S:.0f} s"
    )


async def run() -> None:
    print("gateway daemon (smsgw serve as a subprocess, simulator on ptys in this process)")
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-") as tmp_name:
        tmp = Path(tmp_name)
        await bench_accepts(tmp)
        await bench_latency(tmp)
        await bench_sporadic(tmp)
        await bench_drain(tmp)
        await bench_resources(tmp)
