"""The modem unplugged for 10 s and hung for 60 s in the middle of a drain: the daemon recovers by itself."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from modem.simulator import Simulator
from tests.support.gateway import gateway_config, run_gateway
from tests.support.simulators import SIM_TEST_TIMING
from tests.support.waiting import eventually

PHONE = "+4915112345678"
MESSAGES = 60


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_unplugged_10_s_and_hung_60_s_mid_drain(tmp_path: Path) -> None:
    sim = Simulator(tmp_path / "sim", "quectel-ec25", **{**SIM_TEST_TIMING, "submit_latency_s": 0.05})
    await sim.start()
    raw = gateway_config(tmp_path, str(sim.primary_path))
    # Shortened by config (not by code paths for tests): how long a silent modem is waited for.
    raw["modem"].update({"command_timeout_s": 5.0, "submit_timeout_s": 20.0})
    raw["dispatcher"].update(
        {"backoff_base_s": 1.0, "backoff_max_s": 5.0, "max_attempts": 20, "report_timeout_s": 10.0}
    )
    try:
        async with run_gateway(raw, sim) as gw:
            await gw.gateway.modem_list[0][2].wait_ready(10)
            ids = [(await gw.send(to=PHONE, body=f"fault drain {i}")).json()["id"] for i in range(MESSAGES)]
            inbox = sim.network.phone(PHONE).inbox
            await eventually(lambda: len(inbox) >= 10)
            await sim.unplug()
            unplugged = time.monotonic()
            await asyncio.sleep(10)  # the fault lasts 10 s: its duration, not a synchronisation
            await sim.replug()
            await eventually(lambda: len(inbox) >= 30, timeout_s=60)
            recovered_after_unplug = time.monotonic() - unplugged
            sim.hang()
            hung = time.monotonic()
            await asyncio.sleep(60)  # the fault lasts 60 s
            sim.unhang()
            finals = [await gw.final(i, timeout_s=120) for i in ids]
            recovered_after_hang = time.monotonic() - hung
            status = (await gw.client.get("/api/v1/status")).json()
    finally:
        await sim.stop()
    # A report emitted into a hung port is lost, as on a real modem: such messages end `sent`,
    # final, with `delivery_report: expired`; every text still reached the phone (checked below).
    expired = sum(1 for d in finals if d["status"] == "sent" and d["delivery_report"] == "expired")
    assert all(d["status"] == "delivered" or d["delivery_report"] == "expired" for d in finals)
    texts = sim.network.phone(PHONE).texts()
    assert set(texts) == {f"fault drain {i}" for i in range(MESSAGES)}
    duplicates = len(texts) - len(set(texts))
    print(
        f"\nunplug 10 s + hang 60 s during a {MESSAGES}-message drain: all at the phone, "
        f"{MESSAGES - expired} delivered with a report, {expired} final without one; all sent "
        f"{recovered_after_hang:.1f} s after the hang began; 30 sent {recovered_after_unplug:.1f} s after the "
        f"unplug; {duplicates} duplicate(s) at the phone; reopens {status['modems'][0]['reopens']}"
    )
    assert duplicates <= status["queue"]["ambiguous_total"]
