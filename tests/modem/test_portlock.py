"""The daemon↔watchdog port lock protocol and the holder of a device, with real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from modem.portlock import Holder, Takeover, daemon_present, hold_as_daemon, holder_of
from modem.simulator import Simulator
from tests.support.waiting import eventually

# A real daemon side: another process runs `hold_as_daemon` and keeps the locks until killed.
_DAEMON = """
import asyncio, sys
from pathlib import Path
from modem.portlock import hold_as_daemon
hold = asyncio.run(hold_as_daemon(Path(sys.argv[1])))
print("holding", flush=True)
sys.stdin.read()
"""

# A real program holding a tty the way pyserial's exclusive open does.
_TTY = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("holding", flush=True)
sys.stdin.read()
"""


@asynccontextmanager
async def _holding(script: str, arg: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, arg, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"holding\n"
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()


async def test_the_watchdog_cannot_take_the_port_while_a_daemon_lives_and_can_once_it_is_killed(
    tmp_path: Path,
) -> None:
    takeover = Takeover(tmp_path)
    assert not daemon_present(tmp_path)
    async with _holding(_DAEMON, str(tmp_path)) as daemon:
        assert daemon_present(tmp_path)
        assert not takeover.take()
        daemon.send_signal(signal.SIGKILL)  # no clean-up: the kernel drops its locks
        await daemon.wait()
    assert not daemon_present(tmp_path)
    assert takeover.take()
    assert takeover.held
    takeover.release()
    assert not takeover.held


async def test_a_returning_daemon_waits_for_the_watchdog_to_give_the_port_back(tmp_path: Path) -> None:
    takeover = Takeover(tmp_path)
    assert takeover.take()
    returning = asyncio.create_task(hold_as_daemon(tmp_path))
    try:
        # It announces itself at once (serve.alive), then waits on modem.lock.
        await eventually(lambda: daemon_present(tmp_path), timeout_s=5)
        assert not returning.done()
        takeover.release()
        async with asyncio.timeout(5):
            hold = await returning
    finally:
        returning.cancel()
    assert not takeover.take()  # the daemon has it now
    hold.release()
    assert not daemon_present(tmp_path)
    assert takeover.take()
    takeover.release()


async def test_holder_of_names_the_process_holding_a_tty(simulator: Simulator) -> None:
    port = str(simulator.primary_path)  # a symlink to the pty, as /dev/gsmmodem is to ttyUSBn
    assert holder_of(port) is None
    async with _holding(_TTY, port) as proc:
        holder = holder_of(port)
        assert holder is not None
        assert holder.pid == proc.pid
        assert "fcntl" in holder.command
        assert holder.describe() == f"pid {proc.pid} ({holder.command})"
    assert holder_of(port) is None


def test_holder_of_a_missing_device_is_nobody(tmp_path: Path) -> None:
    assert holder_of(str(tmp_path / "ttyUSB9")) is None
    assert holder_of("socket://127.0.0.1:7777") is None


@pytest.mark.parametrize(
    ("command", "role", "said"),
    [
        (
            "/usr/bin/python3 /usr/bin/smsgw serve --config /etc/smsgw/smsgw.toml",
            "gateway",
            "the running gateway",
        ),
        ("python -m appliance.cli serve --config x.toml", "gateway", "the running gateway"),
        ("/usr/bin/python3 /usr/bin/smsgw watchdog", "watchdog", "the smsgw watchdog"),
        ("/usr/sbin/ModemManager", "", "pid 7 (/usr/sbin/ModemManager)"),
        ("minicom -D /dev/ttyUSB2 serve", "", "pid 7 (minicom -D /dev/ttyUSB2 serve)"),
        ("", "", "pid 7"),
    ],
)
def test_a_holder_is_told_apart_by_its_command_line(command: str, role: str, said: str) -> None:
    holder = Holder(7, command)
    assert holder.role == role
    assert holder.describe().startswith(said)


def test_holder_of_reads_the_lock_table_format(tmp_path: Path) -> None:
    device = tmp_path / "tty"
    device.write_text("")
    st = device.stat()
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    locks = tmp_path / "locks"
    locks.write_text(
        f"1: POSIX  ADVISORY  WRITE 11 {where} 0 EOF\n"  # not an flock: pyserial uses flock
        f"2: -> FLOCK  ADVISORY  WRITE 12 {where} 0 EOF\n"  # a waiter, not the holder
        f"3: FLOCK  ADVISORY  WRITE {os.getpid()} {where} 0 EOF\n"
    )
    holder = holder_of(str(device), locks=locks)
    assert holder is not None
    assert holder.pid == os.getpid()
