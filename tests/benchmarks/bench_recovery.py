"""Recovery at the shipped settings: a 30 s and a 60 s freeze mid-submit; a replug into 20 s of SIM busy.

`smsgw serve` runs as a subprocess (its stderr is the log that is counted) with the shipped modem
timeouts (submit ceiling 180 s, probe floor 10 s); the simulator runs here with EC25-like timing
(0.15 s per submit, reports 0.5 s after).

- Freeze: time from the modem answering again (the simulator's `thaw` entry) to the next submit
  the network accepts. Target <= 5 s (SMSTools3 on the same rig: 2.6 s; before: 150 s).
- Slow network: 60 s per submit, no freeze. Target: no reset, no reopen, no duplicate; the
  probes the modem got (answered after the submit, drained) and the deadline learnt.
- SIM busy: log lines `smsgw serve` wrote from the unplug until a message sent after the replug
  is delivered (target <= 20), AT commands the modem received in the busy window, and the CPU time
  the daemon used in that window.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from modem.simulator import Simulator
from tests.benchmarks.served import Served
from tests.support.gateway import gateway_config
from tests.support.simulators import SIM_TEST_TIMING
from tests.support.waiting import eventually

PHONE = "+4915112345678"
FREEZES_S = (30.0, 60.0)
SIM_BUSY_S = 20.0
SLOW_SUBMIT_S = 60.0
SLOW_MESSAGES = 2
MESSAGES = 10
TARGET_RESUME_S = 5.0
TARGET_LINES = 20


class _Rig(Served):
    def __init__(self, directory: Path, submit_latency_s: float = 0.15) -> None:
        timing = {**SIM_TEST_TIMING, "submit_latency_s": submit_latency_s, "report_delay_s": 0.5}
        self.sim = Simulator(directory / "sim", "quectel-ec25", **timing)
        super().__init__(directory, [self.sim])

    async def start(self) -> None:
        await self.sim.start()
        raw = gateway_config(self.directory, str(self.sim.primary_path))
        for key in ("command_timeout_s", "submit_timeout_s"):  # the shipped timeouts
            raw["modem"].pop(key)
        await self.serve(raw)


async def _modem_state(client: httpx.AsyncClient) -> str:
    try:
        r = await client.get("/api/v1/status")
    except httpx.HTTPError:
        return ""
    return str(r.json()["modems"][0]["state"]) if r.status_code == 200 else ""


async def _all_final(client: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]] | None:
    docs = [(await client.get(f"/api/v1/messages/{i}")).json() for i in ids]
    return docs if all(d["final"] for d in docs) else None


async def _freeze(freeze_s: float) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        rig = _Rig(Path(tmp))
        await rig.start()
        try:
            async with rig.client(timeout_s=10) as client:
                await eventually(lambda: _is_ready(client), timeout_s=30)
                ids = [
                    (await client.post("/api/v1/messages", json={"to": PHONE, "body": f"freeze {i}"})).json()[
                        "id"
                    ]
                    for i in range(MESSAGES)
                ]
                inbox = rig.sim.network.phone(PHONE).inbox
                await eventually(lambda: len(inbox) >= 3, timeout_s=30)
                rig.sim.freeze(freeze_s)
                docs = await eventually(
                    lambda: _all_final(client, ids), timeout_s=freeze_s + 120, interval_s=0.5
                )
        finally:
            await rig.stop()
        log = rig.sim.network.log
        thaw = next(e.time.timestamp() for e in log if e.kind == "thaw")
        resumed = min(e.time.timestamp() for e in log if e.kind == "submit" and e.time.timestamp() >= thaw)
        delivered = sum(d["status"] == "delivered" for d in docs)
        return resumed - thaw, delivered


async def _slow_network() -> tuple[int, int, int, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        rig = _Rig(Path(tmp), submit_latency_s=SLOW_SUBMIT_S)
        await rig.start()
        try:
            async with rig.client(timeout_s=10) as client:
                await eventually(lambda: _is_ready(client), timeout_s=30)
                ids = [
                    (await client.post("/api/v1/messages", json={"to": PHONE, "body": f"slow {i}"})).json()[
                        "id"
                    ]
                    for i in range(SLOW_MESSAGES)
                ]
                timeout_s = SLOW_MESSAGES * SLOW_SUBMIT_S + 60
                docs = await eventually(lambda: _all_final(client, ids), timeout_s=timeout_s, interval_s=1.0)
                status = (await client.get("/api/v1/status")).json()
        finally:
            await rig.stop()
        texts = rig.sim.network.phone(PHONE).texts()
        probes = sum(1 for _t, role, text in rig.sim.commands if role == "primary" and text == "AT")
        delivered = sum(d["status"] == "delivered" for d in docs)
        modem = status["modems"][0]
        return delivered, len(texts) - len(set(texts)), modem["resets"], modem["reopens"], probes


async def _is_ready(client: httpx.AsyncClient) -> bool:
    return await _modem_state(client) == "ready"


async def _sim_busy() -> tuple[int, int, float, float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        rig = _Rig(Path(tmp))
        await rig.start()
        try:
            async with rig.client(timeout_s=10) as client:
                await eventually(lambda: _is_ready(client), timeout_s=30)
                rig.sim.boot_busy(init_busy_s=1.0, sim_busy_s=SIM_BUSY_S)
                offset = rig.daemon.log.stat().st_size
                await rig.sim.unplug()
                await eventually(lambda: _not_ready(client), timeout_s=30)
                await rig.sim.replug()
                loop_start = time.monotonic()
                replugged = _loop_time()
                cpu0 = rig.cpu_s()
                await eventually(
                    lambda: time.monotonic() - loop_start >= SIM_BUSY_S, timeout_s=SIM_BUSY_S + 5
                )
                cpu = rig.cpu_s() - cpu0
                msg = (await client.post("/api/v1/messages", json={"to": PHONE, "body": "after"})).json()[
                    "id"
                ]
                await eventually(lambda: _all_final(client, [msg]), timeout_s=60, interval_s=0.2)
                ready_after = time.monotonic() - loop_start
        finally:
            await rig.stop()
        text = rig.daemon.log.read_bytes()[offset:].decode(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        commands = [c for c in rig.sim.commands if replugged <= c[0] < replugged + SIM_BUSY_S]
        return len(lines), len(commands), cpu, ready_after, "\n".join(lines)


def _loop_time() -> float:
    import asyncio  # noqa: PLC0415  (only for the loop clock the simulator stamps commands with)

    return asyncio.get_running_loop().time()


async def _not_ready(client: httpx.AsyncClient) -> bool:
    return await _modem_state(client) not in ("ready", "")


async def run() -> None:
    print("recovery (shipped timeouts: submit ceiling 180 s, probe floor 10 s; EC25-like simulator)")
    for freeze_s in FREEZES_S:
        resume_s, delivered = await _freeze(freeze_s)
        verdict = "ok" if resume_s <= TARGET_RESUME_S else "SLOW"
        print(
            f"  freeze {freeze_s:4.0f} s mid-submit: next submit {resume_s:5.2f} s after the modem answered "
            f"again (target <= {TARGET_RESUME_S:g} s) {verdict}; {delivered}/{MESSAGES} delivered"
        )
    delivered, duplicates, resets, reopens, probes = await _slow_network()
    verdict = "ok" if duplicates == resets == reopens == 0 else "MISTAKEN FOR A FREEZE"
    print(
        f"  network {SLOW_SUBMIT_S:g} s per submit: {delivered}/{SLOW_MESSAGES} delivered, {duplicates} duplicate(s), "
        f"{resets} reset(s), {reopens} reopen(s) {verdict}; {probes} plain AT on the port "
        f"(init and probes, answered after the submit)"
    )
    lines, commands, cpu, ready_after, text = await _sim_busy()
    verdict = "ok" if lines <= TARGET_LINES else "NOISY"
    print(
        f"  replug into {SIM_BUSY_S:g} s of SIM busy: {lines} log lines from unplug to delivered "
        f"(target <= {TARGET_LINES}) {verdict}; {commands} AT commands in the busy window; "
        f"daemon CPU {cpu:.2f} s over {SIM_BUSY_S:g} s ({100 * cpu / SIM_BUSY_S:.1f} %); "
        f"message delivered {ready_after:.1f} s after the replug"
    )
    if os.environ.get("SMSGW_BENCH_SHOW_LOG"):
        print(text)
