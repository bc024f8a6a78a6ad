"""Gammu (a mature AT client, run as a real process) against the simulator over its pty.

Gammu paces its own init (about 3 s per connection), so related commands share one
`gammu batch` connection. On failure the assertion message carries Gammu's debug log.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from modem.simulator import Simulator
from tests.support.simulators import SimFactory

GAMMU = shutil.which("gammu") or "/usr/bin/gammu"
DEST = "+4915112345678"


async def run_gammu(sim: Simulator, workdir: Path, *args: str, timeout_s: float = 90) -> str:
    """`gammu -c rc <args>` against the simulator's primary port; returns stdout."""
    rc = workdir / "gammurc"
    rc.write_text(f"[gammu]\ndevice = {sim.primary_path}\nconnection = at\n")
    log = workdir / "gammu.log"
    proc = await asyncio.create_subprocess_exec(
        GAMMU,
        "-c",
        str(rc),
        "-d",
        "textall",
        "-f",
        str(log),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=workdir,
    )
    async with asyncio.timeout(timeout_s):
        out, _ = await proc.communicate()
    text = out.decode("utf-8", "replace")
    debug = log.read_text("utf-8", "replace")[-6000:] if log.exists() else ""
    assert proc.returncode == 0, (
        f"gammu {args} exited {proc.returncode}:\n{text}\n--- debug log tail ---\n{debug}"
    )
    return text


async def run_batch(sim: Simulator, workdir: Path, commands: list[str]) -> str:
    batch = workdir / "batch"
    batch.write_text("\n".join(commands) + "\n", "utf-8")
    return await run_gammu(sim, workdir, "batch", str(batch))


@pytest.mark.slow
async def test_identify(simulator: Simulator, tmp_path: Path) -> None:
    out = await run_gammu(simulator, tmp_path, "identify")
    assert "Quectel" in out
    assert "EC25" in out
    assert "EC25EFAR06A04M4G" in out
    assert simulator.state.imei in out
    assert simulator.state.imsi in out


@pytest.mark.slow
async def test_sendsms_short_multipart_and_unicode(simulator: Simulator, tmp_path: Path) -> None:
    long_text = "".join(f"{i:03d}abcdef " for i in range(40))  # 400 characters: three parts
    assert len(long_text) == 400
    unicode_text = "Привет, мир 😀"
    out = await run_batch(
        simulator,
        tmp_path,
        [
            f'sendsms TEXT {DEST} -text "short"',
            f'sendsms TEXT {DEST} -autolen 400 -text "{long_text}"',
            f'sendsms TEXT {DEST} -unicode -text "{unicode_text}"',
        ],
    )
    assert out.count("OK, message reference=") == 5, out
    inbox = simulator.network.phone(DEST).inbox
    assert [(m.text, m.parts, m.encoding) for m in inbox] == [
        ("short", 1, "gsm7"),
        (long_text, 3, "gsm7"),
        (unicode_text, 1, "ucs2"),
    ]
    assert [r.mr for r in inbox[1].records] == [1, 2, 3]


@pytest.mark.slow
async def test_getallsms_shows_injected_messages(simulator: Simulator, tmp_path: Path) -> None:
    await simulator.inject(sender="+4917612345678", text="Hello from the network")
    await simulator.inject(sender="Megafon", text="Код: 4856 😀")
    out = await run_gammu(simulator, tmp_path, "getallsms")
    assert "Hello from the network" in out
    assert '"+4917612345678"' in out
    assert "Код: 4856 😀" in out
    assert '"Megafon"' in out
    assert "2 SMS parts in 2 SMS sequences" in out


@pytest.mark.slow
async def test_huawei_noise_and_zero_based_storage(sim_factory: SimFactory, tmp_path: Path) -> None:
    # ^RSSI/^HCSQ/^MODE lines land before echoes and between reply lines until Gammu's AT^CURC=0.
    sim = await sim_factory("huawei-e3372", noise_rate=0.5)
    await sim.inject(sender="+4917612345678", text="noisy but intact")
    out = await run_batch(sim, tmp_path, ["identify", "getallsms"])
    assert "E3372" in out
    assert "noisy but intact" in out
    assert sim.state.storage["SM"].slots.keys() == {0}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "name"),
    [("fibocom-g510", "G510"), ("zte-k3565", "K3565-Z"), ("telit-le910", "LE910C1-EU")],
)
async def test_other_models_identify_send_and_list(
    sim_factory: SimFactory, tmp_path: Path, model: str, name: str
) -> None:
    # Fibocom aborts a send on any stray byte, ZTE floods +ZUSIMR and puts +ZDONR/+ZPASR inside
    # AT+CMGS and prints no <stat> in +CMGR, Telit quotes the empty <alpha>: Gammu copes with all.
    sim = await sim_factory(model, noise_interval_s=0.5)
    await sim.inject(sender="+4917612345678", text=f"hello {model}")
    out = await run_batch(
        sim, tmp_path, ["identify", f'sendsms TEXT {DEST} -text "via {model}"', "getallsms"]
    )
    assert name in out
    assert "OK, message reference=" in out, out
    assert f"hello {model}" in out
    assert [m.text for m in sim.network.phone(DEST).inbox] == [f"via {model}"]
    assert sim.cmgs_aborts == 0
