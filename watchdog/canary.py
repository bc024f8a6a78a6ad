"""Optional loopback canary (off by default: it costs an SMS): text the box's own number every
`every_s` and expect it back within `timeout_s`; a miss is an incident (a carrier that accepts and
silently drops)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass
class Canary:
    """Pure bookkeeping; the main loop sends `due()` texts and feeds received ones to `received()`."""

    every_s: float
    timeout_s: float
    token: str | None = None
    sent_at: float | None = None
    missed_since: float | None = None

    @property
    def enabled(self) -> bool:
        return self.every_s > 0

    def due(self, now: float) -> str | None:
        """The text to send now, or None."""
        if not self.enabled or self.token is not None:
            return None
        last = self.sent_at if self.sent_at is not None else now - self.every_s
        if now - last < self.every_s:
            return None
        self.token = secrets.token_hex(4)
        self.sent_at = now
        return f"smsgw canary {self.token}"

    def matches(self, text: str) -> bool:
        """Whether `text` is the canary in flight (without consuming it)."""
        return self.token is not None and f"canary {self.token}" in text

    def received(self, text: str) -> bool:
        """Whether `text` is the canary in flight (then it is consumed)."""
        if not self.matches(text):
            return False
        self.token = None
        self.missed_since = None
        return True

    def check(self, now: float) -> float | None:
        """Since when the canary is missing (None: fine)."""
        if self.token is not None and self.sent_at is not None and now - self.sent_at > self.timeout_s:
            self.missed_since = self.sent_at
            self.token = None  # the next one goes out on schedule; the incident stays until one returns
        return self.missed_since
