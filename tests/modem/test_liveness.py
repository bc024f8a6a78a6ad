"""A frozen modem is told from a slow network during a submit; a booting modem is waited for quietly.

Real stack (transport, AT engine, SMS operations) over pseudo-terminals against the simulator's
`freeze` fault ("stops answering, the command in flight lost, then answers again"), a slow
network, and the `+CME ERROR: 515` / SIM busy windows after a replug.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modem import Modem, ModemState, SubmitLost
from modem.liveness import SubmitTimes
from modem.simulator import Simulator
from tests.support.simulators import SimFactory

PHONE = "+4915112345678"


@contextlib.asynccontextmanager
async def running(sim: Simulator, **kwargs: Any) -> AsyncIterator[Modem]:
    async def ignore(_msg: object) -> None:
        return None

    modem = Modem(str(sim.primary_path), on_deliver=ignore, on_status_report=ignore, **kwargs)
    await modem.start()
    try:
        await modem.wait_ready(10)
        yield modem
    finally:
        await modem.stop()


def times_of(sim: Simulator, kind: str) -> list[float]:
    return [e.time.timestamp() for e in sim.network.log if e.kind == kind]


def test_the_probe_deadline_follows_this_modems_submits_between_floor_and_ceiling() -> None:
    times = SubmitTimes(floor_s=10.0, ceiling_s=180.0)
    assert times.probe_after_s == 10.0  # no history: the floor
    for _ in range(10):
        times.record(0.2)
    assert times.probe_after_s == 10.0  # fast submits never bring it under the floor
    for _ in range(20):
        times.record(8.0)
    assert times.probe_after_s == 24.0  # a slower network moves it up: 3 x its 90th percentile
    for _ in range(20):
        times.record(60.0)
    assert times.probe_after_s == 180.0  # never past the ceiling (the submit timeout)


@pytest.mark.slow
async def test_a_freeze_mid_submit_ends_the_submit_as_soon_as_the_modem_answers_again(
    sim_factory: SimFactory,
) -> None:
    sim = await sim_factory()
    async with running(sim, submit_floor_s=0.3, submit_timeout_s=120.0) as modem:
        await modem.send_text(PHONE, "before")
        sim.freeze(2.0)  # the next submit freezes the modem for 2 s and is lost
        with pytest.raises(SubmitLost) as lost:
            await modem.send_text(PHONE, "in the freeze")
        (thawed,) = times_of(sim, "thaw")
        assert modem.stalled_since is None
        assert lost.value.silent_s >= 2.0  # it waited for the modem, not for the 120 s ceiling
        # The modem answers again and the next send goes through on the same port: no reopen.
        await modem.send_text(PHONE, "after")
        (after,) = [e for e in sim.network.log if e.kind == "submit" and e.text == "after"]
        assert after.time.timestamp() >= thawed
        assert after.time.timestamp() - thawed < 30  # far from the 118 s the ceiling would cost
        assert modem.info.reopens == 0
        assert modem.state is ModemState.READY
    # The frozen submit never reached the network: the phone has the other two, once each.
    assert sim.network.phone(PHONE).texts() == ["before", "after"]


@pytest.mark.slow
async def test_a_slow_network_is_not_taken_for_a_frozen_modem(sim_factory: SimFactory) -> None:
    # Scaled down: 1.5 s per submit against a 0.2 s floor shows the same logic as 60 s against 10 s.
    sim = await sim_factory(submit_latency_s=1.5)
    async with running(sim, submit_floor_s=0.2, submit_timeout_s=30.0) as modem:
        first = await modem.send_text(PHONE, "slow 1")
        probes = modem._engine.probes_sent
        assert probes > 0  # the first slow submit was probed: the modem buffered the probes
        second = await modem.send_text(PHONE, "slow 2")
        # Learnt: 3 x 1.5 s is now the deadline, so the second submit is not probed at all.
        assert modem._engine.probes_sent == probes
        assert modem.submit_times.probe_after_s >= 4.0
        # The probes' late OKs were drained: the next command gets its own answer.
        signal = await modem.read_signal()
        assert signal.rssi == sim.state.signal
        assert modem.info.reopens == 0
        assert modem.info.resets == 0
    assert [s.mr for s in first + second] == [0, 1]
    assert sim.network.phone(PHONE).texts() == ["slow 1", "slow 2"]  # no duplicate


@pytest.mark.slow
async def test_replug_into_sim_busy_waits_quietly_and_cheaply(
    sim_factory: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Scaled down from 20 s; the backoff (0.5 s doubling to 5 s) is the same.
    busy_s = 8.0
    sim = await sim_factory(init_busy_s=1.0, sim_busy_s=busy_s)
    async with running(sim) as modem:
        caplog.clear()
        caplog.set_level(logging.INFO)
        await sim.unplug()
        async with asyncio.timeout(5):
            while modem.state is ModemState.READY:  # noqa: ASYNC110  (state without an event: poll)
                await asyncio.sleep(0.005)
        await sim.replug()
        replugged = asyncio.get_running_loop().time()
        await modem.wait_ready(busy_s + 15)
        await modem.send_text(PHONE, "after the SIM woke up")
    lines = [r for r in caplog.records if r.name.startswith("modem.") and r.name != "modem.simulator"]
    assert all(r.exc_info is None for r in lines), "an expected modem error logged a traceback"
    assert len(lines) <= 20, [r.getMessage() for r in lines]
    busy = [c for c in sim.commands if replugged <= c[0] < replugged + busy_s]
    # A wait with backoff, not a loop (the field saw 93 init attempts in 0.47 s): the init's own
    # dozen commands, then one SIM poll every few seconds.
    assert len(busy) < 2 * busy_s, busy
    assert any("SIM busy" in r.getMessage() for r in lines)  # said once, not hidden
    print(
        f"\nreplug into {busy_s:g} s of SIM busy: {len(lines)} log lines, {len(busy)} AT commands in the window"
    )
