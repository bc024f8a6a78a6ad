"""sd_notify: READY once serving, WATCHDOG only while the dispatcher makes progress, STATUS with the queue.

Outside systemd (no NOTIFY_SOCKET) every call is a no-op. A dispatcher held up by a modem
that stopped answering (the modem layer is probing it) is not a stuck daemon: a restart
would not help, so WATCHDOG=1 goes on and the log says so once.
"""

from __future__ import annotations

import logging
import os

import sdnotify

_LOGGER = logging.getLogger(__name__)


class Notifier:
    """Talks to systemd's notify socket, when there is one."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        usec = os.environ.get("WATCHDOG_USEC", "")
        # Ping at half the interval, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval_s = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None

    def _send(self, text: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(text)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        self._send("STOPPING=1")


class Progress:
    """Whether the dispatcher is moving, held up by a silent modem, or stuck; each change logged once."""

    def __init__(self, stale_s: float) -> None:
        self.stale_s = stale_s
        self.state = "moving"  # moving | modem (waiting on a stalled modem) | stuck

    def check(self, idle_s: float, stalled: list[tuple[str, float]]) -> bool:
        """Whether WATCHDOG=1 may be sent, given the dispatcher's idle time and (modem, silent s) stalls."""
        if idle_s < self.stale_s:
            state = "moving"
        elif stalled:
            state = "modem"
        else:
            state = "stuck"
        if state != self.state:
            if state == "moving":
                _LOGGER.info("dispatcher moving again")
            elif state == "modem":
                names = ", ".join(f"{name} (silent {silent:.0f} s)" for name, silent in stalled)
                _LOGGER.warning(
                    "dispatcher waiting %.0f s on %s: the modem stopped answering, not the daemon; "
                    "WATCHDOG=1 continues while it is probed",
                    idle_s,
                    names,
                )
            else:
                _LOGGER.error("dispatcher made no progress for %.0f s: withholding WATCHDOG=1", idle_s)
            self.state = state
        return state != "stuck"
