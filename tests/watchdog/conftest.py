"""The `box_factory` fixture: a simulated box (tests/support/watchdog_box.py) started and
stopped around a test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from modem.simulator import Simulator
from tests.support.gateway import gateway_config
from tests.support.simulators import SIM_TEST_TIMING
from tests.support.watchdog_box import FAST_WATCHDOG, Box, BoxFactory


@pytest.fixture
def box_factory(tmp_path: Path) -> BoxFactory:
    @contextlib.asynccontextmanager
    async def make(
        *,
        own_port: bool = True,
        smtp: dict[str, Any] | None = None,
        ussd: dict[str, Any] | None = None,
        before_start: Callable[[Simulator], Awaitable[None]] | None = None,
        **watchdog: Any,
    ) -> AsyncIterator[Box]:
        sim = Simulator(tmp_path / "sim", "quectel-ec25", **SIM_TEST_TIMING)
        await sim.start()
        if before_start is not None:  # the operator's network as the daemon will find it
            await before_start(sim)
        wd = {**FAST_WATCHDOG, **watchdog}
        if own_port:
            assert sim.aux_path is not None
            wd["port"] = str(sim.aux_path)
        raw = gateway_config(
            tmp_path,
            str(sim.primary_path),
            gateway={"name": "box7"},
            watchdog=wd,
            dispatcher={"report_timeout_s": 2.0},
            inbound={"reassembly_timeout_s": 2.0},
            **({"smtp": smtp} if smtp else {}),
            **({"ussd": ussd} if ussd else {}),
        )
        box = Box.configured(sim, raw, tmp_path)
        try:
            await box.start()
            yield box
        finally:
            await box.stop()

    return make
