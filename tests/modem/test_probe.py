"""`smsgw modem probe PORT`, run as the field engineer runs it, against the simulator."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from modem.simulator import Simulator
from tests.support.config_files import toml_text
from tests.support.gateway import gateway_config
from tests.support.simulators import SimFactory
from tests.support.smsgw_process import Proc, until_ready


async def _probe(port: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "appliance.cli",
        "modem",
        "probe",
        port,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_probe_of_a_healthy_modem_reports_every_line_ok(simulator: Simulator) -> None:
    code, out = await _probe(str(simulator.primary_path))
    assert code == 0, out
    for name in (
        "modem",
        "firmware",
        "IMEI",
        "SIM",
        "ICCID",
        "registration",
        "operator",
        "signal",
        "SMSC",
        "PDU mode",
        "status reports",
        "storage",
    ):
        assert f"[ok  ] {name}" in out, (name, out)
    assert "Quectel" in out
    assert "dBm" in out
    assert "all good" in out
    # Read-only: nothing stored was touched, routing not changed.
    assert simulator.state.storage["SM"].used == 0


async def test_probe_says_what_to_do_when_the_sim_wants_a_pin(sim_factory: SimFactory) -> None:
    sim = await sim_factory(pin="1234")
    code, out = await _probe(str(sim.primary_path))
    assert code == 1
    assert "[FAIL] SIM" in out
    assert "set modem.pin" in out


async def test_probe_says_what_to_do_without_network(simulator: Simulator) -> None:
    simulator.set_registration(False)
    code, out = await _probe(str(simulator.primary_path))
    assert code == 1
    assert "[FAIL] registration" in out
    assert "antenna" in out


async def test_probe_of_a_missing_port_names_the_fix(tmp_path: Path) -> None:
    code, out = await _probe(str(tmp_path / "gsmmodem"))
    assert code == 1
    assert "[FAIL] port" in out
    assert "dialout" in out


async def test_probe_keeps_stored_messages(simulator: Simulator) -> None:
    await simulator.inject("+4917612345678", "do not touch")
    code, out = await _probe(str(simulator.primary_path))
    assert code == 0, out
    assert "SM 1/" in out
    assert simulator.state.storage["SM"].used == 1


def _says_held(out: str, by: str, hint: str) -> None:
    """The probe names who holds the port and what to do, and does not send anyone to the cable."""
    assert "[FAIL] port" in out, out
    assert f"is held by {by}" in out, out
    assert hint in out, out
    assert "cable" not in out, out
    assert "udev" not in out, out


# A real holder: another program opens the modem's tty and takes the exclusive lock, as
# `smsgw serve` (pyserial exclusive=True) or a stray `minicom -o` does.
_HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


async def test_probe_of_a_port_another_program_holds_names_it_instead_of_the_cable(
    simulator: Simulator,
) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLD,
        str(simulator.primary_path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert await asyncio.wait_for(holder.stdout.readline(), 10) == b"held\n"
        code, out = await _probe(str(simulator.primary_path))
    finally:
        holder.stdin.close()
        await holder.wait()
    assert code == 1
    _says_held(out, f"pid {holder.pid} (", f"stop that program (`kill {holder.pid}`")
    # Once the holder is gone, the same port probes fine.
    code, out = await _probe(str(simulator.primary_path))
    assert code == 0, out


async def test_probe_of_the_port_the_running_gateway_holds_names_the_gateway(
    simulator: Simulator, tmp_path: Path
) -> None:
    raw = gateway_config(tmp_path, str(simulator.primary_path))
    config_path = tmp_path / "smsgw.toml"
    config_path.write_text(toml_text(raw))
    async with Proc("serve", config_path, tmp_path / "serve.log") as daemon:
        await until_ready(f"http://{raw['api']['listen']}", timeout_s=30)
        assert daemon.proc is not None
        code, out = await _probe(str(simulator.primary_path))
        pid = daemon.proc.pid
    assert code == 1
    _says_held(
        out,
        f"the running gateway (pid {pid})",
        "stop it with `systemctl stop smsgw` or probe the aux port",
    )
