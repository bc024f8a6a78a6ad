"""The modem the watchdog alerts through and reads on-call replies from: its own (aux) AT port,
or the daemon's primary port borrowed while the daemon is gone.

Borrowing follows the daemon↔watchdog lock protocol in `modem.portlock`: the primary port is
taken only when no daemon holds `serve.alive`, under `modem.lock`, and given back as soon as the
daemon returns.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from modem import Modem, ModemError, StoredSms
from modem.portlock import Takeover, daemon_present

_LOGGER = logging.getLogger(__name__)


class AlertModem:
    """The modem the watchdog sends through: always its own port, or the primary while borrowed."""

    def __init__(
        self,
        url: str,
        *,
        lock_dir: Path,
        takeover: bool,
        baudrate: int = 115200,
        sim_pin: str = "",
        command_timeout_s: float = 5.0,
        submit_timeout_s: float = 30.0,
    ) -> None:
        self.url = url
        self.takeover = takeover
        self._lock_dir = lock_dir  # where the daemon↔watchdog lock files are (next to the ledger)
        self._baudrate = baudrate
        self._sim_pin = sim_pin
        self._command_timeout_s = command_timeout_s
        self._submit_timeout_s = submit_timeout_s
        self.modem: Modem | None = None
        self._lock = Takeover(lock_dir)

    def __repr__(self) -> str:
        mode = "takeover" if self.takeover else "own"
        return f"AlertModem({self.url!r}, {mode}, holding={self.modem is not None})"

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
        self._lock.release()

    async def adjust(self, *, want: bool) -> None:
        """Takeover mode: take the primary when wanted and the daemon is gone; give it back when it returns."""
        if not self.takeover:
            return
        present = daemon_present(self._lock_dir)
        if self.modem is not None and (present or not want):
            _LOGGER.info("giving the modem port back%s", " (the daemon is back)" if present else "")
            await self.stop()
            return
        if self.modem is None and want and not present and self._lock.take():
            _LOGGER.warning("the daemon is gone: taking the modem port %s over", self.url)
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
