"""The prepaid SIM's balance: asked by USSD (`[ussd] balance_code`), read with `balance_regex`.

`BalanceChecker.run()` asks soon after start, then every `check_every_s`; a failed check is
retried sooner (from a minute, doubling up to `check_every_s`), and each kind of failure (no
answer, modem refused, amount not found) is logged once when it starts and once when it ends,
never as a traceback loop. Every check yields a `BalanceReading` for the ledger, the page, the
metric and the watchdog (`below_floor`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from appliance.config import UssdConfig
from modem.errors import ModemError

_LOGGER = logging.getLogger(__name__)

NOT_FOUND = "balance not found in response"
# The first check waits for the modem to register; a USSD request before that is refused.
FIRST_CHECK_AFTER_S = 30.0
RETRY_MIN_S = 60.0
# Operators' texts carry the subscriber's number, vouchers, PINs: long digit runs are masked.
_LONG_DIGITS = re.compile(r"\d{6,}")
MAX_TEXT_CHARS = 500

Ask = Callable[[str], Awaitable[str]]


@dataclass(frozen=True)
class BalanceReading:
    """One balance check: the amount when found, or why not."""

    at: datetime
    ok: bool
    value: float | None = None
    text: str = ""  # the operator's answer, long digit runs masked (redact_text)
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "at": self.at.isoformat(),
            "ok": self.ok,
            "value": self.value,
            "text": self.text,
            "error": self.error,
        }


def failure_kind(reading: BalanceReading) -> str:
    """A failed check's kind for the failure counter: timeout, refused, not_found or modem."""
    if reading.error == NOT_FOUND:
        return "not_found"
    name = reading.error.split(":", 1)[0]
    if name in ("UssdTimeout", "AtTimeout", "TimeoutError"):
        return "timeout"
    if name in ("UssdError", "AtError", "CmeError", "CmsError"):
        return "refused"
    return "modem"


def parse_amount(text: str, pattern: re.Pattern[str]) -> float | None:
    """The amount in the first group of `pattern`'s first match; "12,34" and "12.34" both 12.34.

    With both separators the last one is the decimal mark ("1.234,56" and "1,234.56" are 1234.56).
    None when nothing matches or the group is not a number.
    """
    match = pattern.search(text)
    if match is None or match.lastindex is None:
        return None
    raw = (match.group(1) or "").replace(" ", "").replace("\u00a0", "")
    decimal = max(raw.rfind("."), raw.rfind(","))
    if decimal >= 0:
        raw = raw[:decimal].replace(".", "").replace(",", "") + "." + raw[decimal + 1 :]
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def redact_text(text: str) -> str:
    """The operator's text with digit runs of six or more masked after their first two, bounded."""
    masked = _LONG_DIGITS.sub(lambda m: m.group(0)[:2] + "*" * (len(m.group(0)) - 2), text)
    return masked[:MAX_TEXT_CHARS]


def reading_from(text: str, pattern: re.Pattern[str], at: datetime | None = None) -> BalanceReading:
    """The reading an operator's answer gives: the amount, or NOT_FOUND (never an exception)."""
    when = at or datetime.now(UTC)
    value = parse_amount(text, pattern)
    if value is None:
        return BalanceReading(when, ok=False, text=redact_text(text), error=NOT_FOUND)
    return BalanceReading(when, ok=True, value=value, text=redact_text(text))


class BalanceChecker:
    """Asks for the balance on a schedule and keeps the latest reading."""

    def __init__(
        self,
        ask: Ask,
        config: UssdConfig,
        *,
        on_reading: Callable[[BalanceReading], Awaitable[None]] | None = None,
        first_after_s: float = FIRST_CHECK_AFTER_S,
        retry_min_s: float = RETRY_MIN_S,
    ) -> None:
        self._ask = ask
        self.config = config
        self._pattern = re.compile(config.balance_regex)
        self._on_reading = on_reading
        self.first_after_s = first_after_s
        self.retry_min_s = retry_min_s
        self.latest: BalanceReading | None = None  # the last check, good or bad
        self.last_value: BalanceReading | None = None  # the last check that found an amount
        self._failing: str | None = None  # the kind of failure logged, until a check succeeds
        self.checks = 0
        self.failures = 0

    @property
    def below_floor(self) -> bool:
        """True when the last amount found is below `alert_below` (0 = never)."""
        floor = self.config.alert_below
        reading = self.last_value
        return floor > 0 and reading is not None and reading.value is not None and reading.value < floor

    async def check(self) -> BalanceReading:
        """Ask once; an expected fault becomes a failed reading, logged once per kind."""
        self.checks += 1
        try:
            text = await self._ask(self.config.balance_code)
        except (ModemError, TimeoutError) as exc:
            reading = BalanceReading(datetime.now(UTC), ok=False, error=f"{type(exc).__name__}: {exc}")
            kind = type(exc).__name__
        else:
            reading = reading_from(text, self._pattern)
            kind = "not_found" if not reading.ok else ""
        self._note(reading, kind)
        self.latest = reading
        if reading.ok:
            self.last_value = reading
        if self._on_reading is not None:
            await self._on_reading(reading)
        return reading

    def _note(self, reading: BalanceReading, kind: str) -> None:
        if reading.ok:
            if self._failing is not None:
                _LOGGER.info("balance check works again: %.2f", reading.value)
                self._failing = None
            return
        self.failures += 1
        if kind != self._failing:
            self._failing = kind
            _LOGGER.warning("balance check failed (%s); retrying with backoff", reading.error)

    async def run(self) -> None:
        """Check soon after start, then every `check_every_s`; failures are retried sooner. Never returns
        unless cancelled; returns at once when the check is off (`check_every_s = 0`)."""
        every = float(self.config.check_every_s)
        if every <= 0:
            return
        delay = self.first_after_s
        retry = self.retry_min_s
        while True:
            await asyncio.sleep(delay)
            try:
                reading = await self.check()
            except Exception:  # a bug in a callback must not end the schedule, nor loop tracebacks
                if self._failing != "callback":
                    self._failing = "callback"
                    _LOGGER.exception("balance check failed unexpectedly")
                reading = None
            if reading is not None and reading.ok:
                delay, retry = every, self.retry_min_s
            else:
                delay, retry = min(retry, every), min(retry * 2, every)
