"""Engine throughput: N single-part sends through the real AT engine over a pty to the simulator.

With a submit latency of L per message, no client can beat N·L (the modem is
busy that long), so the bound N·L is the baseline measured in the same run;
utilisation = N·L / wall time, overhead = (wall - N·L) / N. A run with L = 0
shows the raw per-message cost of the engine, pty and simulator together.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from modem.modem import Modem
from modem.simulator import Simulator

MESSAGES = 200
LATENCIES_S = (0.0, 0.05)
TARGET_UTILISATION = 0.98


async def _drain(latency_s: float, n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-") as tmp:
        async with Simulator(
            Path(tmp), submit_latency_s=latency_s, submit_jitter_s=0.0, prompt_delay_s=0.0, report_delay_s=0.0
        ) as sim:
            modem = Modem(str(sim.primary_path))
            await modem.start()
            try:
                await modem.wait_ready(10)
                start = time.perf_counter()
                for i in range(n):
                    await modem.send_text("+4915112345678", f"bench {i}", status_report=False)
                return time.perf_counter() - start
            finally:
                await modem.stop()


async def _timer_baseline(latency_s: float, n: int) -> float:
    """What the simulator's own waits cost on this machine's event loop: n sleeps of latency_s."""
    start = time.perf_counter()
    for _ in range(n):
        await asyncio.sleep(latency_s)
    return time.perf_counter() - start


async def run() -> None:
    print(f"engine drain: {MESSAGES} single-part sends, AT+CMGS over a pty to the simulator")
    for latency_s in LATENCIES_S:
        walls = [await _drain(latency_s, MESSAGES) for _ in range(3)]
        wall = statistics.median(walls)
        bound = MESSAGES * latency_s
        per_msg_ms = (wall - bound) / MESSAGES * 1000
        line = f"  L={latency_s * 1000:4.0f} ms  wall {wall:7.3f} s (median of 3)  bound N*L {bound:6.2f} s"
        if bound:
            util = bound / wall
            verdict = "meets" if util >= TARGET_UTILISATION else "MISSES"
            line += f"  utilisation {util:6.1%} ({verdict} target {TARGET_UTILISATION:.0%})"
        line += f"  overhead {per_msg_ms:.2f} ms/message"
        print(line)
        if bound:
            timers = await _timer_baseline(latency_s, MESSAGES)
            print(
                f"           baseline: {MESSAGES} bare asyncio sleeps of L take {timers:7.3f} s "
                f"(timer overshoot {(timers - bound) / MESSAGES * 1000:.2f} ms each); "
                f"engine wall / baseline = {wall / timers:.4f}"
            )
