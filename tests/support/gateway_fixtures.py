"""Whole-gateway fixtures for every directory (a plugin of tests/conftest.py): the real daemon on
the real simulator over ptys, reached by real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance import webhooks
from modem.simulator import Simulator
from tests.support.gateway import Running, fleet_config, gateway_config, run_gateway
from tests.support.simulators import SIM_TEST_TIMING


@pytest.fixture
def fast_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhook retries in tens of milliseconds instead of seconds (the mechanism is the same)."""
    monkeypatch.setattr(webhooks, "BACKOFF_BASE_S", 0.05)
    monkeypatch.setattr(webhooks, "BACKOFF_MAX_S", 0.2)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    simulator = Simulator(tmp_path / "sim", "quectel-ec25", **SIM_TEST_TIMING)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def gw(tmp_path: Path, sim: Simulator) -> AsyncIterator[Running]:
    async with run_gateway(gateway_config(tmp_path, str(sim.primary_path)), sim) as running:
        await running.gateway.modem_list[0][2].wait_ready(10)
        yield running


@dataclass
class TwoModems:
    """A gateway with two modems, `left` (an EC25) and `right` (a SIM800), each its own simulator."""

    gw: Running
    left: Simulator
    right: Simulator


@pytest.fixture
async def two_modems(tmp_path: Path) -> AsyncIterator[TwoModems]:
    # A submit takes 50 ms: while one modem is busy the other claims the next message (both carry some).
    timing = {**SIM_TEST_TIMING, "submit_latency_s": 0.05}
    left = Simulator(tmp_path / "left", "quectel-ec25", **timing)
    right = Simulator(tmp_path / "right", "sim800", **timing)
    await left.start()
    try:
        await right.start()
        try:
            raw = fleet_config(tmp_path, [left, right], ["left", "right"])
            async with run_gateway(raw, left) as running:
                for _name, _cfg, modem in running.gateway.modem_list:
                    await modem.wait_ready(10)
                yield TwoModems(running, left, right)
        finally:
            await right.stop()
    finally:
        await left.stop()
