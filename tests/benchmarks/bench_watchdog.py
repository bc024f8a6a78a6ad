"""Time from fault to the watchdog's alert accepted at the modem, with the DEFAULT thresholds.

Faults: `smsgw serve` killed (SIGKILL) and frozen (SIGSTOP). Each run is a fresh box (simulator on
ptys, `smsgw serve` and `smsgw watchdog` as subprocesses, the watchdog on the aux port), so no
run inherits the previous one's incidents or cap. The clock stops when the simulated network
accepts the alert for the on-call phone (the modem's +CMGS). Target: <= 30 s.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from modem.simulator import Simulator
from tests.support.gateway import gateway_config
from tests.support.simulators import SIM_TEST_TIMING
from tests.support.waiting import eventually
from tests.support.watchdog_box import ONCALL, Box

RUNS = int(os.environ.get("SMSGW_BENCH_WATCHDOG_RUNS", "5"))
TARGET_S = 30.0


async def _one(fault: str, directory: Path) -> float:
    # Realistic submit latency (the alert is timed until the network accepts it); everything else instant.
    sim = Simulator(directory / "sim", "quectel-ec25", **{**SIM_TEST_TIMING, "submit_latency_s": 1.5})
    await sim.start()
    assert sim.aux_path is not None
    raw = gateway_config(
        directory,
        str(sim.primary_path),
        watchdog={"port": str(sim.aux_path), "oncall": [ONCALL], "alive_at": ""},
    )
    box = Box.configured(sim, raw, directory)
    try:
        await box.start()
        # A whole healthy cycle behind it, so the fault lands at a random phase of the next one.
        await eventually(lambda: box.state_rows("SELECT 1") == [(1,)], 30, 0.05)
        phone = sim.network.phone(ONCALL)
        started = time.monotonic()
        if fault == "kill":
            await box.daemon.kill9()
        else:
            box.daemon.signal(signal.SIGSTOP)
        await eventually(lambda: len(phone.inbox) > 0, 120, 0.02)
        return time.monotonic() - started
    finally:
        await box.stop()


async def run() -> dict[str, Any]:
    """Median (and spread) of RUNS runs per fault; prints one line per fault."""
    results: dict[str, Any] = {}
    for fault in ("kill", "freeze"):
        times = []
        for i in range(RUNS):
            with tempfile.TemporaryDirectory(prefix=f"bench-watchdog-{fault}{i}-") as tmp:
                times.append(await _one(fault, Path(tmp)))
        median = statistics.median(times)
        results[fault] = {"median_s": median, "runs_s": times}
        verdict = "ok" if median <= TARGET_S else f"OVER the {TARGET_S:.0f} s target"
        print(
            f"watchdog {fault:6s}: fault -> alert at the modem, median {median:5.1f} s of {RUNS} "
            f"(min {min(times):.1f}, max {max(times):.1f}) with default thresholds: {verdict}"
        )
    return results


if __name__ == "__main__":
    asyncio.run(run())
