"""Shared fixtures of tests/modem. Simulator fixtures: `sim_factory`, `simulator`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from modem.simulator import Simulator

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

SimFactory = Callable[..., Awaitable[Simulator]]


@pytest.fixture
async def sim_factory(tmp_path: Path) -> AsyncIterator[SimFactory]:
    """`await sim_factory(model="sim800", first_mr=250, ...)`: started simulators, stopped at teardown."""
    sims: list[Simulator] = []

    async def make(model: str = "quectel-ec25", **kwargs: Any) -> Simulator:
        options = {**SIM_TEST_TIMING, **kwargs}
        sim = Simulator(tmp_path / f"sim{len(sims)}", model, **options)
        await sim.start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.stop()


@pytest.fixture
async def simulator(sim_factory: SimFactory) -> Simulator:
    """A Quectel EC25-like simulator with zero delays, started on pseudo-terminals."""
    return await sim_factory()
