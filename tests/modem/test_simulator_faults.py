"""Simulator faults of a modem that stalls, byte for byte over a real pty: a freeze mid-submit, boot busy windows."""

from __future__ import annotations

import asyncio
import re

import httpx

from modem.pdu import encode_submits
from modem.simulator import Simulator
from modem.simulator.control import create_app
from tests.support.simulators import SimFactory

from .test_simulator import DEST, RawPort


async def test_a_freeze_mid_submit_loses_the_command_then_the_modem_answers_again(
    simulator: Simulator,
) -> None:
    port = RawPort(simulator.primary_path)
    try:
        assert await port.command("ATE0") == b"ATE0\r\r\nOK\r\n"
        simulator.freeze(0.3)
        submit = encode_submits(DEST, "into the freeze", concat_ref=1)[0]
        port.write(f"AT+CMGS={submit.tpdu_length}\r".encode())
        await port.wait_for(b"\r\n> ")
        port.write(submit.hex().encode() + b"\x1a")
        await simulator.network.wait_for(lambda: any(e.kind == "freeze" for e in simulator.network.log))
        port.write(b"AT\r")  # typed into the frozen modem: dropped
        await simulator.network.wait_for(lambda: any(e.kind == "thaw" for e in simulator.network.log))
        assert await port.command("AT") == b"\r\nOK\r\n"  # answers again, and only what came after
        assert b"+CMGS" not in port.buf
        assert port.buf == b""
    finally:
        port.close()
    kinds = [e.kind for e in simulator.network.log]
    assert kinds == ["freeze", "thaw"]  # the part in flight never reached the network
    assert simulator.network.phone(DEST).inbox == []


async def test_boot_answers_515_then_sim_busy_then_ready(sim_factory: SimFactory) -> None:
    sim = await sim_factory(init_busy_s=0.3, sim_busy_s=0.8)
    await sim.unplug()
    await sim.replug()
    port = RawPort(sim.primary_path)
    try:
        await port.wait_for(b"\r\n+QIND: SMS DONE\r\n")  # the boot URCs
        assert await port.command("ATE0") == b"ATE0\r\r\n+CME ERROR: 515\r\n"  # still initialising
        assert await port.command("AT") == b"AT\r\r\nOK\r\n"  # a bare AT is always answered
        answers: list[bytes] = []
        async with asyncio.timeout(5):  # poll until READY: a 0.8 s window ends well within 5 s
            while not answers or b"READY" not in answers[-1]:
                answers.append(await port.command("AT+CPIN?"))
        kinds = [re.sub(rb"\s", b"", a).removeprefix(b"AT+CPIN?") for a in answers]  # echo on
        first_busy = kinds.index(b"+CMEERROR:14")
        assert set(kinds[:first_busy]) <= {b"+CMEERROR:515"}
        assert kinds[0] == b"+CMEERROR:515"  # "init in progress" first (Wavecom)
        assert set(kinds[first_busy:-1]) == {b"+CMEERROR:14"}  # then SIM busy (ZTE, Quectel)
        assert kinds[-1] == b"+CPIN:READYOK"
    finally:
        port.close()


async def test_sms_commands_say_sim_busy_with_a_cms_code(sim_factory: SimFactory) -> None:
    sim = await sim_factory(init_busy_s=0, sim_busy_s=30)
    await sim.unplug()
    await sim.replug()
    port = RawPort(sim.primary_path)
    try:
        await port.command("ATE0")
        assert await port.command("AT+CMGF=0") == b"\r\n+CMS ERROR: 314\r\n"
        assert await port.command("AT+CGMI") == b"\r\nQuectel\r\n\r\nOK\r\n"  # not a SIM command
    finally:
        port.close()


async def test_control_interface_freezes_thaws_and_sets_boot_windows(simulator: Simulator) -> None:
    transport = httpx.ASGITransport(app=create_app(simulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        r = await http.post("/fault", json={"name": "freeze", "seconds": 60, "mid_submit": False})
        assert r.status_code == 200
        assert r.json()["frozen"] is True
        r = await http.post("/fault", json={"name": "thaw"})
        assert r.json()["frozen"] is False
        r = await http.post("/fault", json={"name": "freeze", "seconds": 30})
        assert r.json()["faults"]["freeze_at_submit_s"] == 30
        r = await http.post("/fault", json={"name": "boot_busy", "sim_busy_s": 20, "init_busy_s": 1})
        assert r.json()["boot_busy"] == {"init_busy_s": 1.0, "sim_busy_s": 20.0}
        r = await http.post("/fault", json={"name": "freeze", "seconds": -1})
        assert r.status_code == 400
        assert "seconds" in r.json()["error"]
