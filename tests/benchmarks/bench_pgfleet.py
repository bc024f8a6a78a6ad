"""A fleet on PostgreSQL: 1 box against 3 boxes draining N messages from one queue, and accepts/s
of single POSTs on PostgreSQL next to SQLite, all in one run.

Each box is a real `smsgw serve` subprocess with one simulated EC25 modem (in this process) taking
T = PROMPT_S + SUBMIT_S per SMS, so one box's bound is 1/T and the modem, not the host, binds
(as in bench_modems). The server is a throwaway PostgreSQL on this machine, durable (fsync on) as a
production server. The N messages are POSTed round-robin to the boxes, due LEAD_S later, so all are
queued before the drain begins; rate = N / (first to last submit the networks accepted + T), from
the simulators' logs. Baseline: 1 box, same N, same server, same run; target 3 boxes >= 0.95 x 3.

Accepts: ACCEPTS single POSTs (CONCURRENCY at a time, scheduled a day ahead so nothing drains)
to one box on SQLite (the baseline), to one box on PostgreSQL, and round-robin to three boxes on
PostgreSQL. Every process shares this machine's cores, so the 3-box accept figure shows the
database's headroom here, not three boxes' worth of CPU.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.pg_fleet import PgBox, count_status, fleet_key, pg_fleet, post_round_robin
from tests.support.postgres import make_template, start_server

MESSAGES = int(os.environ.get("SMSGW_BENCH_FLEET_MESSAGES", "180"))
ACCEPTS = int(os.environ.get("SMSGW_BENCH_FLEET_ACCEPTS", "1000"))
CONCURRENCY = 16
PROMPT_S = 0.05
SUBMIT_S = 0.20
PER_SMS_S = PROMPT_S + SUBMIT_S
RATE_PER_MINUTE = 600.0  # 10/s per modem: above 1/T = 4/s, so the modem binds, not the limit
LEAD_S = 4.0
DRAIN_DEADLINE_S = 240.0
TIMING = {
    "prompt_delay_s": PROMPT_S,
    "submit_latency_s": SUBMIT_S,
    "report_delay_s": 0.5,
    "report_jitter_s": 0.5,
}
OPTIONS: dict[str, Any] = {
    "lease_s": 10.0,  # a loaded machine must not make a box look dead mid-run
    "timing": TIMING,
    "modem": {"rate_per_minute": RATE_PER_MINUTE, "command_timeout_s": 5.0, "submit_timeout_s": 30.0},
    "sections": {"api": {"queue_max": 1_000_000}, "dispatcher": {"per_recipient_per_minute": 6.0}},
}


async def _post_all(boxes: Sequence[PgBox], key: str, n: int, tag: str, send_at: str) -> float:
    """POST n messages round-robin, CONCURRENCY at a time; seconds taken."""
    bodies = [f"{tag} message {i}" for i in range(n)]
    start = time.perf_counter()
    await post_round_robin(boxes, key, bodies, concurrency=CONCURRENCY, send_at=send_at)
    return time.perf_counter() - start


async def _drain(root: Path, url: str, names: Sequence[str]) -> dict[str, Any]:
    key = await fleet_key(url)
    async with pg_fleet(root, url, names, **OPTIONS) as boxes:
        at = (datetime.now(UTC) + timedelta(seconds=LEAD_S)).isoformat()
        await _post_all(boxes, key, MESSAGES, f"{len(names)}-box", at)
        deadline = time.monotonic() + LEAD_S + DRAIN_DEADLINE_S
        # Watched in the simulators' logs (this process: no load on the daemons), then the ledger.
        while (submitted := sum(len(b.submits()) for b in boxes)) < MESSAGES:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{len(names)} boxes: only {submitted} of {MESSAGES} submitted by the deadline"
                )
            await asyncio.sleep(0.05)  # the poll's pace; the figures are the logs' timestamps
        while (sent := await count_status(boxes[0], key, ["sent", "delivered"])) < MESSAGES:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(names)} boxes: only {sent} of {MESSAGES} recorded by the deadline")
            await asyncio.sleep(0.2)
        texts = [t for b in boxes for t in b.texts()]
    flat = sorted(t for b in boxes for t in b.submits())
    firsts = [min(b.submits()) for b in boxes]
    lasts = [max(b.submits()) for b in boxes]
    span = (flat[-1] - flat[0]).total_seconds() + PER_SMS_S
    return {
        "boxes": len(names),
        "rate": MESSAGES / span,
        "span": span,
        "split": [len(b.submits()) for b in boxes],
        "twice": len(texts) - len(set(texts)),
        # how far apart the boxes began and ended their share (a late wake-up shows here)
        "stagger": ((max(firsts) - min(firsts)).total_seconds(), (max(lasts) - min(lasts)).total_seconds()),
    }


async def _accepts(root: Path, locator: str, names: Sequence[str]) -> float:
    key = await fleet_key(locator)
    async with pg_fleet(root, locator, names, **OPTIONS) as boxes:
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        await _post_all(boxes, key, 50, "warm-up", later)  # connections and caches warm
        seconds = await _post_all(boxes, key, ACCEPTS, "accept", later)
    return ACCEPTS / seconds


async def run() -> None:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-pgfleet-") as tmp_name:
        tmp = Path(tmp_name)
        server = await asyncio.to_thread(start_server, durable=True)
        try:
            await make_template(server)
            one = await _drain(tmp / "drain1", await server.fresh_database(), ["solo"])
            three = await _drain(tmp / "drain3", await server.fresh_database(), ["a", "b", "c"])
            sqlite = await _accepts(tmp / "acc-sqlite", str(tmp / "acc-sqlite.sqlite3"), ["solo"])
            pg_one = await _accepts(tmp / "acc-pg1", await server.fresh_database(), ["solo"])
            pg_three = await _accepts(tmp / "acc-pg3", await server.fresh_database(), ["a", "b", "c"])
        finally:
            await asyncio.to_thread(server.stop)
    after = os.getloadavg()
    bound = 1 / PER_SMS_S
    ratio = three["rate"] / one["rate"]
    print(
        f"fleet on PostgreSQL (smsgw serve subprocesses, one EC25 simulator each; T = {PROMPT_S * 1000:.0f} ms "
        f"prompt + {SUBMIT_S * 1000:.0f} ms submit per SMS; {MESSAGES} messages to distinct recipients, "
        f"POSTed round-robin; durable local PostgreSQL)"
    )
    for r in (one, three):
        split = "/".join(str(n) for n in r["split"])
        overhead = r["span"] / (MESSAGES / r["boxes"]) - PER_SMS_S
        print(
            f"  {r['boxes']} box(es): {r['rate']:5.2f} messages/s (first to last submit + T: {r['span']:.2f} s) "
            f"vs bound {r['boxes']} x {bound:.2f}/s -> {r['rate'] / (r['boxes'] * bound):.1%}; "
            f"{overhead * 1000:.0f} ms over T per message per box; per box {split}; "
            f"sent twice: {r['twice']}; boxes began {r['stagger'][0]:.2f} s and ended {r['stagger'][1]:.2f} s apart"
        )
    verdict = "meets" if ratio >= 0.95 * 3 else "MISSES"
    print(f"  3 boxes / 1 box: {ratio:.2f}x (target >= {0.95 * 3:.2f}x: {verdict})")
    print(
        f"  accepts/s, {ACCEPTS} single POSTs, {CONCURRENCY} at a time (all processes on this machine's cores):"
    )
    print(f"    1 box on SQLite      {sqlite:7.0f}/s (baseline)")
    print(f"    1 box on PostgreSQL  {pg_one:7.0f}/s ({pg_one / sqlite:.2f}x SQLite)")
    print(f"    3 boxes on PostgreSQL {pg_three:6.0f}/s ({pg_three / sqlite:.2f}x SQLite, round-robin)")
    print(f"  load average {load[0]:.2f} before, {after[0]:.2f} after on {os.cpu_count()} cores")


if __name__ == "__main__":
    asyncio.run(run())
