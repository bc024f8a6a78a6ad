"""The watchdog's e-mails in flight: one task each, so a slow mail server never holds up a cycle
(the systemd watchdog ping, the SMS path); a transient failure is tried again every `retry_s`
until `expire_s` after it was queued, a permanent one is given up at once. One log line when a
mail is deferred and one with its final outcome, never a line per try."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from watchdog.alert import Alert
from watchdog.mail import MailError, SmtpSettings, mailto_address, send_mail

_LOGGER = logging.getLogger("watchdog")

Record = Callable[[Alert, str, str, float], None]  # (alert, recipient, outcome, at)


class MailOutbox:
    def __init__(self, smtp: SmtpSettings, record: Record, *, expire_s: float, retry_s: float = 30.0) -> None:
        self.smtp = smtp
        self.record = record
        self.expire_s = expire_s
        self.retry_s = retry_s
        self.tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"MailOutbox({self.smtp!r}, in flight {len(self.tasks)})"

    def submit(self, alert: Alert, target: str, subject: str, body: str) -> None:
        task = asyncio.create_task(self._deliver(alert, target, subject, body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _deliver(self, alert: Alert, target: str, subject: str, body: str) -> None:
        queued = time.monotonic()
        deferred = False
        while True:
            try:
                await send_mail(self.smtp, mailto_address(target), subject, body)
            except MailError as exc:
                if exc.transient and time.monotonic() - queued + self.retry_s < self.expire_s:
                    if not deferred:
                        _LOGGER.warning("e-mail to %s deferred (%s); trying again", target, exc.reason)
                        deferred = True
                    await asyncio.sleep(self.retry_s)  # a back-off, not a synchronisation
                    continue
                outcome = "expired" if exc.transient else "failed"
                _LOGGER.warning("e-mail to %s %s: %s", target, outcome, exc.reason)
                self.record(alert, target, outcome, time.time())
                return
            except ValueError as exc:  # a target or subject refused before any connection
                _LOGGER.warning("e-mail to %s refused: %s", target, exc)
                self.record(alert, target, "failed", time.time())
                return
            _LOGGER.warning("sent %s e-mail to %s: %s", alert.kind, target, subject)
            self.record(alert, target, "sent", time.time())
            return
