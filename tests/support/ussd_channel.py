"""The AT channel as the Modem holds it (a Port feeding an AtEngine) with USSD on it, over the simulator's pty."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from modem.at import AtEngine
from modem.simulator import Simulator
from modem.transport import Port
from modem.ussd import Ussd
from tests.support.simulators import SIM_TEST_TIMING


@dataclass
class Channel:
    port: Port
    engine: AtEngine
    ussd: Ussd


async def open_channel(sim: Simulator, *, answer_timeout_s: float = 5.0) -> Channel:
    engines: list[AtEngine] = []

    def received(data: bytes) -> None:
        engines[0].data_received(data)

    port = Port(str(sim.primary_path), on_data=received)
    engine = AtEngine(port.write)
    engines.append(engine)
    await port.open()
    return Channel(port, engine, Ussd(engine, answer_timeout_s=answer_timeout_s))


@contextlib.asynccontextmanager
async def simulated_channel(
    directory: Path, *, answer_timeout_s: float
) -> AsyncIterator[tuple[Simulator, Channel]]:
    """A zero-delay simulator and a USSD channel on its primary port, both closed on exit."""
    async with Simulator(directory, "quectel-ec25", **SIM_TEST_TIMING) as sim:
        channel = await open_channel(sim, answer_timeout_s=answer_timeout_s)
        try:
            yield sim, channel
        finally:
            await channel.port.close()
