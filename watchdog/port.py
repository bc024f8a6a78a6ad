"""The watchdog's way out: its own AT port, or the daemon's port borrowed under a lock.

Two flock(2) files next to the ledger make the single-port takeover safe without trusting clocks:
- `serve.alive`: the daemon holds a shared lock on it for its whole life. The kernel drops it when
  the process dies (even SIGKILL), so "nobody holds it" means the daemon is really gone; a frozen
  daemon still holds it, and the watchdog never fights a living process for its port.
- `modem.lock`: whoever drives the primary port holds it (daemon: shared, watchdog: exclusive).
  A returning daemon takes `serve.alive` first and then waits for `modem.lock`; the watchdog sees
  `serve.alive` held again, stops its modem and unlocks, and the daemon proceeds.
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

from modem import Modem, ModemError, StoredSms

_LOGGER = logging.getLogger(__name__)

ALIVE_NAME = "serve.alive"
LOCK_NAME = "modem.lock"
LOCK_POLL_S = 0.2  # flock has no "wait asynchronously": a returning daemon polls this often


def lock_paths(ledger_path: str) -> tuple[Path, Path]:
    directory = Path(ledger_path).parent
    return directory / ALIVE_NAME, directory / LOCK_NAME


@dataclass
class DaemonPortLock:
    """Held by `smsgw serve` for its life; the file objects keep the locks."""

    alive: IO[bytes]
    port: IO[bytes]

    def release(self) -> None:
        for f in (self.port, self.alive):
            with contextlib.suppress(OSError):
                f.close()


async def hold_port_lock(ledger_path: str) -> DaemonPortLock | None:
    """The daemon's side: announce itself, then wait while the watchdog holds the primary port."""
    if ledger_path == ":memory:":
        return None
    alive_path, lock_path = lock_paths(ledger_path)
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
    return DaemonPortLock(alive, port)


def daemon_present(ledger_path: str) -> bool:
    """Whether a `smsgw serve` process is alive (holds `serve.alive`), frozen or not."""
    alive_path, _ = lock_paths(ledger_path)
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


class Port:
    """The modem the watchdog sends through: always its own port, or the primary while borrowed."""

    def __init__(
        self,
        url: str,
        *,
        ledger_path: str,
        takeover: bool,
        baudrate: int = 115200,
        sim_pin: str = "",
        command_timeout_s: float = 5.0,
        submit_timeout_s: float = 30.0,
    ) -> None:
        self.url = url
        self.takeover = takeover
        self._ledger_path = ledger_path
        self._baudrate = baudrate
        self._sim_pin = sim_pin
        self._command_timeout_s = command_timeout_s
        self._submit_timeout_s = submit_timeout_s
        self.modem: Modem | None = None
        self._lock_fd: int | None = None
        self.takeovers = 0

    def __repr__(self) -> str:
        mode = "takeover" if self.takeover else "own"
        return f"Port({self.url!r}, {mode}, holding={self.modem is not None})"

    @property
    def held(self) -> bool:
        return self.modem is not None

    async def start(self) -> None:
        """Own port: open it now and keep it."""
        if not self.takeover:
            self.modem = self._new_modem()
            await self.modem.start()

    async def stop(self) -> None:
        if self.modem is not None:
            await self.modem.stop()
            self.modem = None
        self._unlock()

    async def adjust(self, *, want: bool) -> None:
        """Takeover mode: take the primary when wanted and the daemon is gone; give it back when it returns."""
        if not self.takeover:
            return
        present = daemon_present(self._ledger_path)
        if self.modem is not None and (present or not want):
            _LOGGER.info("giving the modem port back%s", " (the daemon is back)" if present else "")
            await self.stop()
            return
        if self.modem is None and want and not present and self._lock():
            _LOGGER.warning("the daemon is gone: taking the modem port %s over", self.url)
            self.takeovers += 1
            self.modem = self._new_modem()
            await self.modem.start()

    async def ready(self, timeout_s: float) -> bool:
        if self.modem is None:
            return False
        try:
            await self.modem.wait_ready(timeout_s)
        except TimeoutError:
            return False
        return True

    async def send(self, to: str, text: str) -> bool:
        """Send one text; False when there is no ready port or the modem refused."""
        if self.modem is None or not self.modem.ready.is_set():
            return False
        try:
            await self.modem.send_text(to, text, status_report=False)
        except (ModemError, OSError) as exc:
            _LOGGER.warning("sending to %s failed: %s", to, exc)
            return False
        return True

    async def stored(self) -> list[StoredSms]:
        """The received SMS on the SIM (empty without a ready port)."""
        if self.modem is None or not self.modem.ready.is_set():
            return []
        try:
            return await self.modem.list_stored()
        except (ModemError, OSError) as exc:
            _LOGGER.debug("listing stored SMS failed: %s", exc)  # every cycle while it lasts
            return []

    async def delete(self, sms: StoredSms) -> None:
        if self.modem is not None:
            with contextlib.suppress(ModemError, OSError):
                await self.modem.delete_stored(sms.index, sms.memory)

    def _new_modem(self) -> Modem:
        return Modem(
            self.url,
            baudrate=self._baudrate,
            pin=self._sim_pin,
            command_timeout_s=self._command_timeout_s,
            submit_timeout_s=self._submit_timeout_s,
        )

    def _lock(self) -> bool:
        _, lock_path = lock_paths(self._ledger_path)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o664)
        except OSError as exc:
            _LOGGER.error("cannot open %s (%s): no takeover of the modem port", lock_path, exc)  # noqa: TRY400
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
