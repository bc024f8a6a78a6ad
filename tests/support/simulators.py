"""The simulator as tests run it: every delay at zero, and the type of the `sim_factory` fixture."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from modem.simulator import NetworkEvent, Simulator

# Every delay of the simulator at zero: tests wait on events, never on the clock.
SIM_TEST_TIMING: dict[str, Any] = {
    "prompt_delay_s": 0,
    "submit_latency_s": 0,
    "submit_jitter_s": 0,
    "report_delay_s": 0,
    "report_jitter_s": 0,
    "reset_delay_s": 0,
    "reenumerate_delay_s": 0,
    "boot_delay_s": 0,
    "ussd_delay_s": 0,
    "init_busy_s": 0,
    "sim_busy_s": 0,
    "noise_interval_s": 0,
    # The network's wait for AT+CNMA: long enough for a ledger commit; tests of the timeout pass less.
    "cnma_timeout_s": 2.0,
    "sc_retry_s": 0.05,
    "seed": 1,
}

# `await sim_factory(model="sim800", first_mr=250, ...)` (tests/modem/conftest.py).
SimFactory = Callable[..., Awaitable[Simulator]]


def submits(sim: Simulator) -> list[NetworkEvent]:
    """The submits this simulator's network accepted, in order (what that modem really sent)."""
    return [e for e in sim.network.log if e.kind == "submit"]
