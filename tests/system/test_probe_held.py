"""`smsgw modem probe` on the port a running `smsgw serve` holds: says so, not "check the cable"."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from modem.simulator import Simulator
from tests.modem.conftest import SIM_TEST_TIMING
from tests.system.conftest import eventually, gateway_config, toml_text
from tests.system.daemon import Daemon


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


@pytest.mark.slow
async def test_probe_of_the_port_the_running_gateway_holds_names_the_gateway(tmp_path: Path) -> None:
    sim = Simulator(tmp_path / "sim", "quectel-ec25", **SIM_TEST_TIMING)
    await sim.start()
    try:
        raw = gateway_config(tmp_path, str(sim.primary_path))
        config_path = tmp_path / "smsgw.toml"
        config_path.write_text(toml_text(raw))
        async with (
            Daemon(config_path, tmp_path / "serve.log") as daemon,
            httpx.AsyncClient(base_url=f"http://{raw['api']['listen']}", timeout=2) as http,
        ):

            async def ready() -> bool:
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, timeout_s=30, interval_s=0.1)
            assert daemon.proc is not None
            code, out = await _probe(str(sim.primary_path))
            pid = daemon.proc.pid
    finally:
        await sim.stop()
    assert code == 1
    assert f"is held by the running gateway (pid {pid})" in out, out
    assert "stop it with `systemctl stop smsgw` or probe the aux port" in out, out
    assert "cable" not in out, out
    assert "udev" not in out, out
