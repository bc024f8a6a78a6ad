"""Who holds a modem port: the daemon↔watchdog lock protocol, and the holder of an open device.

The gateway daemon and the watchdog may share one AT port (the watchdog then has no aux port
of its own). Two flock(2) files in a directory both know (next to the ledger on a box) make
the takeover safe without trusting clocks:
- `serve.alive`: the daemon holds a shared lock on it for its whole life. The kernel drops it
  when the process dies (even SIGKILL), so "nobody holds it" means the daemon is really gone; a
  frozen daemon still holds it, and the watchdog never fights a living process for its port.
- `modem.lock`: whoever drives the primary port holds it (daemon: shared, watchdog: exclusive).
  A returning daemon takes `serve.alive` first and then waits for `modem.lock`; the watchdog
  sees `serve.alive` held again, stops its modem and unlocks, and the daemon proceeds.

Apart from that protocol, every `Port` opens its device exclusively (flock on the tty): a second
opener fails with EAGAIN. `holder_of` names the process holding that lock (/proc/locks), so a
refused open says who to stop instead of blaming the cable.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_LOGGER = logging.getLogger(__name__)

ALIVE_NAME = "serve.alive"
LOCK_NAME = "modem.lock"
LOCK_POLL_S = 0.2  # flock has no "wait asynchronously": a returning daemon polls this often


def lock_paths(directory: Path) -> tuple[Path, Path]:
    """(`serve.alive`, `modem.lock`) in directory."""
    return directory / ALIVE_NAME, directory / LOCK_NAME


@dataclass
class DaemonHold:
    """Held by the daemon for its life; the open file objects keep the locks."""

    alive: IO[bytes]
    port: IO[bytes]

    def release(self) -> None:
        for f in (self.port, self.alive):
            with contextlib.suppress(OSError):
                f.close()


async def hold_as_daemon(directory: Path) -> DaemonHold:
    """The daemon's side: announce itself, then wait while the watchdog holds the primary port."""
    alive_path, lock_path = lock_paths(directory)
    alive = alive_path.open("ab")
    fcntl.flock(alive, fcntl.LOCK_SH)  # never contended for long: the watchdog only probes it
    port = lock_path.open("ab")
    waited = False
    while True:
        try:
            fcntl.flock(port, fcntl.LOCK_SH | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if not waited:
                _LOGGER.warning("the watchdog holds the modem port (%s); waiting for it", lock_path)
                waited = True
            await asyncio.sleep(LOCK_POLL_S)
    if waited:
        _LOGGER.info("the watchdog gave the modem port back")
    return DaemonHold(alive, port)


def daemon_present(directory: Path) -> bool:
    """Whether a daemon is alive (holds `serve.alive`), frozen or not."""
    alive_path, _ = lock_paths(directory)
    try:
        fd = os.open(alive_path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class Takeover:
    """The watchdog's side: `modem.lock` held exclusively while it drives the primary port."""

    def __init__(self, directory: Path) -> None:
        self.path = lock_paths(directory)[1]
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"Takeover({str(self.path)!r}, held={self.held})"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def take(self) -> bool:
        """Lock without waiting; False when the daemon holds it (or the file cannot be opened)."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o664)
        except OSError as exc:
            _LOGGER.error("cannot open %s (%s): no takeover of the modem port", self.path, exc)  # noqa: TRY400
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class Holder:
    """A process holding a device's exclusive lock, and what it is, read from its command line."""

    pid: int
    command: str  # its command line ("" when unreadable: another user's process, or gone)

    @property
    def role(self) -> str:
        """ "gateway", "watchdog" or "" (another program), from the command line."""
        words = self.command.split()
        if not any("smsgw" in w or w == "appliance.cli" for w in words):
            return ""
        if "serve" in words:
            return "gateway"
        if "watchdog" in words:
            return "watchdog"
        return ""

    def describe(self) -> str:
        if self.role == "gateway":
            return f"the running gateway (pid {self.pid})"
        if self.role == "watchdog":
            return f"the smsgw watchdog (pid {self.pid})"
        return f"pid {self.pid} ({self.command})" if self.command else f"pid {self.pid}"


def holder_of(device: str, *, locks: Path = Path("/proc/locks")) -> Holder | None:
    """The process holding an flock on device (its tty, through symlinks), from /proc/locks."""
    try:
        st = Path(device).stat()
        table = locks.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # "1: FLOCK  ADVISORY  WRITE 4242 00:19:7 0 EOF": major:minor in hex, inode in decimal.
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":  # "->" lines are waiters, not holders
            continue
        if fields[5] == wanted and fields[4].isdigit():
            pid = int(fields[4])
            return Holder(pid, _command_line(pid))
    return None


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
