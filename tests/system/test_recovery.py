"""Modem faults the gateway must ride out quickly and quietly, seen from outside.

The modem freezes mid-submit, or the network is slow: the gateway tells them apart. A replug
meets a SIM that stays busy: the gateway waits with backoff, in a few log lines.
Real daemon, real HTTP, the simulator on ptys. Durations are scaled down (a 3 s and a 6 s
freeze, a 2 s network, 6 s of SIM busy) with the probe floor scaled with them;
tests/benchmarks/bench_recovery.py runs 30 s and 60 s freezes and 20 s of SIM busy at the
shipped settings and reports the figures.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from modem.simulator import Simulator
from tests.support.gateway import gateway_config, run_gateway
from tests.support.simulators import SIM_TEST_TIMING
from tests.support.waiting import eventually

PHONE = "+4915112345678"


@pytest.mark.slow
@pytest.mark.parametrize("freeze_s", [3.0, 6.0])
async def test_a_freeze_mid_submit_costs_seconds_after_the_modem_answers_again(
    tmp_path: Path, freeze_s: float, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sim = Simulator(tmp_path / "sim", "quectel-ec25", **{**SIM_TEST_TIMING, "submit_latency_s": 0.05})
    await sim.start()
    raw = gateway_config(tmp_path, str(sim.primary_path))
    # The ceiling stays long: what ends the wait must be the modem answering again, not a timeout.
    raw["modem"].update({"submit_timeout_s": 120.0, "submit_floor_s": 0.5})
    try:
        async with run_gateway(raw, sim) as gw:
            await gw.gateway.modem_list[0][2].wait_ready(10)
            ids = [(await gw.send(to=PHONE, body=f"freeze {i}")).json()["id"] for i in range(20)]
            inbox = sim.network.phone(PHONE).inbox
            await eventually(lambda: len(inbox) >= 5)
            sim.freeze(freeze_s)  # the next submit freezes the modem and is lost

            async def shown_as_probed() -> bool:
                modems = (await gw.client.get("/api/v1/status")).json()["modems"]
                return "probing" in modems[0]["last_error"]

            await eventually(shown_as_probed)  # the status page says what the gateway is doing
            finals = [await gw.final(i, timeout_s=60) for i in ids]
            status = (await gw.client.get("/api/v1/status")).json()
    finally:
        await sim.stop()
    assert [d["status"] for d in finals] == ["delivered"] * 20
    # The part in flight when the modem froze is owned up to as possibly sent; no other.
    assert sum(d["possible_duplicate"] for d in finals) == 1
    (thaw,) = [e.time.timestamp() for e in sim.network.log if e.kind == "thaw"]
    resumed = min(
        e.time.timestamp() for e in sim.network.log if e.kind == "submit" and e.time.timestamp() >= thaw
    )
    # Waiting out the 120 s submit timeout would resume ~117 s after the thaw.
    assert resumed - thaw < 10
    texts = sim.network.phone(PHONE).texts()
    assert set(texts) == {f"freeze {i}" for i in range(20)}
    assert len(texts) - len(set(texts)) <= status["queue"]["ambiguous_total"]
    assert status["modems"][0]["reopens"] == 0
    assert status["modems"][0]["resets"] == 0
    # The stall is said once when it starts and once when it ends.
    said = [r.getMessage() for r in caplog.records if r.name == "modem.sms"]
    assert sum("no answer to a submit" in m for m in said) == 1, said
    assert sum("answers again" in m for m in said) == 1, said
    assert not [r for r in caplog.records if r.exc_info is not None]
    print(
        f"\n{freeze_s:g} s freeze mid-submit: next submit {resumed - thaw:.2f} s after the modem answered again"
    )


@pytest.mark.slow
async def test_a_slow_network_triggers_no_reset_and_no_duplicate(tmp_path: Path) -> None:
    # Scaled down: 2 s per submit against a 0.3 s probe floor is the logic of 60 s against 10 s.
    sim = Simulator(tmp_path / "sim", "quectel-ec25", **{**SIM_TEST_TIMING, "submit_latency_s": 2.0})
    await sim.start()
    raw = gateway_config(tmp_path, str(sim.primary_path))
    raw["modem"].update({"submit_timeout_s": 30.0, "submit_floor_s": 0.3})
    try:
        async with run_gateway(raw, sim) as gw:
            modem = gw.gateway.modem_list[0][2]
            await modem.wait_ready(10)
            ids = [(await gw.send(to=PHONE, body=f"slow {i}")).json()["id"] for i in range(3)]
            finals = [await gw.final(i, timeout_s=30) for i in ids]
            status = (await gw.client.get("/api/v1/status")).json()
            probed = modem._engine.probes_sent
    finally:
        await sim.stop()
    assert probed > 0  # the modem was probed while it worked (and answered the submit first)
    assert [d["status"] for d in finals] == ["delivered"] * 3
    assert not any(d["possible_duplicate"] for d in finals)
    assert sorted(sim.network.phone(PHONE).texts()) == ["slow 0", "slow 1", "slow 2"]
    assert status["queue"]["ambiguous_total"] == 0
    assert status["modems"][0]["reopens"] == 0
    assert status["modems"][0]["resets"] == 0


@pytest.mark.slow
async def test_a_replug_into_sim_busy_is_waited_out_in_a_few_log_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    busy_s = 6.0
    sim = Simulator(
        tmp_path / "sim", "quectel-ec25", **{**SIM_TEST_TIMING, "init_busy_s": 1.0, "sim_busy_s": busy_s}
    )
    await sim.start()
    raw = gateway_config(tmp_path, str(sim.primary_path))
    try:
        async with run_gateway(raw, sim) as gw:
            modem = gw.gateway.modem_list[0][2]
            await modem.wait_ready(10)
            caplog.clear()
            caplog.set_level(logging.INFO)
            await sim.unplug()
            await eventually(lambda: not modem.ready.is_set())
            await sim.replug()
            msg = (await gw.send(to=PHONE, body="after the replug")).json()["id"]
            doc = await gw.final(msg, timeout_s=busy_s + 20)
    finally:
        await sim.stop()
    assert doc["status"] == "delivered"
    lines = [r for r in caplog.records if not r.name.startswith(("modem.simulator", "httpx", "uvicorn"))]
    assert not [r for r in lines if r.exc_info is not None], "an expected modem fault logged a traceback"
    assert len(lines) <= 20, [r.getMessage() for r in lines]
    print(
        f"\nreplug into {busy_s:g} s of SIM busy: {len(lines)} log lines until the next message was delivered"
    )
