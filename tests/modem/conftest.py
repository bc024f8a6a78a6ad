"""Shared fixtures of tests/modem. Simulator fixtures: `sim_factory`, `simulator`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modem.simulator import Simulator
from tests.support.simulators import SIM_TEST_TIMING, SimFactory


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
