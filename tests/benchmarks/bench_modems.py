"""Scale-up on one box: k = 1, 2, 4 simulated modems drain N messages through `smsgw serve`.

The daemon runs as a subprocess with k `[[modems]]` tables, each on its own simulator (EC25
profile, here in this process) with a fixed per-SMS time T: the "> " prompt after
PROMPT_S, then SUBMIT_S from Ctrl-Z to +CMGS (real modems take 1-4 s, the demo 1 s, the
tests 0: T = 0.25 s keeps the whole run under two minutes and still leaves the modem, not
the host, as the bottleneck). Reports come back 0.5-1 s later, as on a live network.

The rate limits are lifted above T (a modem's limit RATE_PER_MINUTE > 60/T), each message goes
to its own recipient (anti-flood does not bind), so one modem's bound is 1/T and k modems' is
k/T. The N messages are scheduled a few seconds ahead so all are queued before the drain
begins; the drain is over when the ledger has them all sent (polled with a deadline). Rate =
N / (first to last submit the network accepted + T), as bench_gateway's drain measures it.
Baseline in the same run: k = 1. The per-modem split is printed from the simulators' logs and
from /metrics (`smsgw_modem_parts_sent_total`), which must agree.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from modem.simulator import Simulator
from tests.benchmarks.served import Served
from tests.support.gateway import gateway_config
from tests.support.metrics_text import per_modem
from tests.support.simulators import SIM_TEST_TIMING

MESSAGES = int(os.environ.get("SMSGW_BENCH_MODEM_MESSAGES", "120"))
FLEETS = (1, 2, 4)
PROMPT_S = 0.05
SUBMIT_S = 0.20
PER_SMS_S = PROMPT_S + SUBMIT_S
RATE_PER_MINUTE = 600.0  # 10/s per modem: above 1/T = 4/s, so the modem binds, not the limit
LEAD_S = 4.0  # the messages are due this long after the first POST: all queued before the drain
DRAIN_DEADLINE_S = 120.0


class Fleet(Served):
    """`smsgw serve` with k simulated modems, each behind its own pty."""

    def __init__(self, tmp: Path, k: int) -> None:
        timing = {
            **SIM_TEST_TIMING,
            "prompt_delay_s": PROMPT_S,
            "submit_latency_s": SUBMIT_S,
            "report_delay_s": 0.5,
            "report_jitter_s": 0.5,
        }
        super().__init__(tmp, [Simulator(tmp / f"sim{i}", "quectel-ec25", **timing) for i in range(k)])
        self.k = k
        self.names = [f"gsm{i}" for i in range(k)]

    async def __aenter__(self) -> Fleet:
        for sim in self.sims:
            await sim.start()
        raw = gateway_config(self.directory, "unused", dispatcher={"per_recipient_per_minute": 6.0})
        modem = raw.pop("modem")
        for key in ("command_timeout_s", "submit_timeout_s"):  # the shipped timeouts
            modem.pop(key)
        raw["modems"] = [
            {**modem, "port": str(sim.primary_path), "name": name, "rate_per_minute": RATE_PER_MINUTE}
            for sim, name in zip(self.sims, self.names, strict=True)
        ]
        raw["api"]["queue_max"] = 1_000_000
        await self.serve(raw)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def submit_times(self) -> list[list[datetime]]:
        """Per modem, when the network accepted each submit."""
        return [[e.time for e in sim.network.log if e.kind == "submit"] for sim in self.sims]


async def _sent(c: httpx.AsyncClient) -> int:
    by_status: dict[str, int] = (await c.get("/api/v1/status")).json()["queue"]["by_status"]
    return sum(by_status.get(s, 0) for s in ("sent", "delivered", "undelivered"))


async def _drain(tmp: Path, k: int) -> dict[str, Any]:
    async with Fleet(tmp / f"k{k}", k) as fleet, fleet.client() as c:
        # Every modem ready before the clock starts: the bench measures sending, not start-up.
        async def all_up() -> bool:
            modems = (await c.get("/api/v1/status")).json()["modems"]
            return len(modems) == k and all(m["state"] == "ready" for m in modems)

        deadline = time.monotonic() + 30
        while not await all_up():
            if time.monotonic() > deadline:
                raise RuntimeError(f"k={k}: the modems did not all become ready within 30 s")
            await asyncio.sleep(0.1)
        at = (datetime.now(UTC) + timedelta(seconds=LEAD_S)).isoformat()
        sem = asyncio.Semaphore(16)

        async def post(i: int) -> None:
            async with sem:
                r = await c.post(
                    "/api/v1/messages",
                    json={"to": f"+49151{k:02d}{i:06d}", "body": f"fleet {k} message {i}", "send_at": at},
                )
                if r.status_code != 202:
                    raise RuntimeError(f"POST refused: {r.status_code} {r.text[:200]}")

        await asyncio.gather(*(post(i) for i in range(MESSAGES)))
        deadline = time.monotonic() + LEAD_S + DRAIN_DEADLINE_S
        # The drain is watched in the simulators' logs (this process, no load on the daemon);
        # then the ledger must have every message sent (GET /api/v1/status, polled slowly).
        while (submitted := sum(len(t) for t in fleet.submit_times())) < MESSAGES:
            if time.monotonic() > deadline:
                raise RuntimeError(f"k={k}: only {submitted} of {MESSAGES} submitted by the deadline")
            await asyncio.sleep(0.02)  # the poll's pace; the figures are the logs' timestamps
        while (sent := await _sent(c)) < MESSAGES:
            if time.monotonic() > deadline:
                raise RuntimeError(f"k={k}: only {sent} of {MESSAGES} recorded sent by the deadline")
            await asyncio.sleep(0.2)
        scraped = per_modem((await c.get("/metrics")).text, "smsgw_modem_parts_sent_total")
    times = fleet.submit_times()
    flat = sorted(t for per in times for t in per)
    span = (flat[-1] - flat[0]).total_seconds() + PER_SMS_S
    return {
        "k": k,
        "rate": MESSAGES / span,
        "span": span,
        "split": [len(t) for t in times],
        "scraped": [int(scraped.get(n, 0)) for n in fleet.names],
    }


async def run() -> None:
    print(
        f"modems on one box (smsgw serve as a subprocess, k EC25 simulators on ptys in this process; "
        f"T = {PROMPT_S * 1000:.0f} ms prompt + {SUBMIT_S * 1000:.0f} ms submit per SMS, "
        f"limit {RATE_PER_MINUTE:g}/min per modem, {MESSAGES} messages to distinct recipients)"
    )
    load = os.getloadavg()
    one_modem = min(1 / PER_SMS_S, RATE_PER_MINUTE / 60)
    results = []
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-") as tmp_name:
        for k in FLEETS:
            results.append(await _drain(Path(tmp_name), k))
    after = os.getloadavg()
    base = results[0]["rate"]
    for r in results:
        bound = r["k"] * one_modem
        split = "/".join(str(n) for n in r["split"])
        overhead = r["span"] / (MESSAGES / r["k"]) - PER_SMS_S
        agree = "agrees" if r["scraped"] == r["split"] else f"DISAGREES: {r['scraped']}"
        print(
            f"  k={r['k']}: {r['rate']:5.2f} messages/s (first to last submit + T: {r['span']:.2f} s) vs bound "
            f"{r['k']} x {one_modem:.2f}/s = {bound:5.2f}/s -> {r['rate'] / bound:.1%} of the bound; "
            f"{r['rate'] / base:.2f}x k=1 (ideal {r['k']}x); {overhead * 1000:.0f} ms over T per message "
            f"per modem; per modem {split} (metrics {agree})"
        )
    print(f"  load average {load[0]:.2f} before, {after[0]:.2f} after on {os.cpu_count()} cores")
