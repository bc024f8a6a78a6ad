"""Login rate limits: per-address backoff after failed logins and a box-wide budget of password checks.

A password check costs ~0.4 s of CPU (PBKDF2, 600k rounds). Without limits, a handful of
guessers keep the CPU busy and every other request waits. So:

- per address (an IPv4 address, or an IPv6 /64 since one host owns a whole /64): the first
  `FREE_FAILURES` failures cost nothing, then each failure locks the address out for
  1, 2, 4 ... up to `MAX_LOCK_S` seconds; one attempt in flight per address at a time;
- box-wide: a token bucket of password checks (`BURST`, refilled at `CHECKS_PER_S`), so many
  addresses together still cannot buy more than a fraction of one core.

Refusals are 429 with Retry-After and cost no hashing. An admin API key (checked with one
SHA-256) still logs in while the box-wide budget is spent; only the password waits.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

FREE_FAILURES = 5  # typos and a forgotten caps lock cost nothing
LOCK_BASE_S = 1.0  # the first lockout; each further failure doubles it
MAX_LOCK_S = 900.0
FORGET_S = 3600.0  # an address with no failure for this long starts afresh
BURST = 10  # password checks box-wide before the refill rate applies
CHECKS_PER_S = 0.5  # steady box-wide rate: at most ~0.2 cores spent on PBKDF2
MAX_ADDRESSES = 4096  # remembered addresses; the stalest is forgotten first


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0
    in_flight: bool = False


class LoginThrottle:
    """Decides whether a login attempt may run now; `clock` is injectable for tests of the arithmetic."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._now = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._tokens = float(BURST)
        self._refilled = self._now()

    # ------------------------------------------------------------ per address
    def wait_s(self, address: str) -> float:
        """Seconds before this address may try again; 0 when it may try now."""
        rec = self._records.get(bucket(address))
        if rec is None:
            return 0.0
        now = self._now()
        if rec.in_flight:
            return 1.0
        return max(0.0, rec.locked_until - now)

    def begin(self, address: str) -> None:
        """An attempt starts (call only after wait_s said 0): further ones wait until it ends."""
        self._record(bucket(address)).in_flight = True

    def failed(self, address: str) -> float:
        """A wrong password or key; returns the lockout it earned (0 while still free)."""
        rec = self._record(bucket(address))
        now = self._now()
        rec.in_flight = False
        if now - rec.last_failure > FORGET_S:
            rec.failures = 0
        rec.failures += 1
        rec.last_failure = now
        over = rec.failures - FREE_FAILURES
        lock = 0.0 if over <= 0 else min(MAX_LOCK_S, LOCK_BASE_S * 2.0 ** (over - 1))
        rec.locked_until = now + lock
        return lock

    def succeeded(self, address: str) -> None:
        self._records.pop(bucket(address), None)

    def abandoned(self, address: str) -> None:
        """The attempt ended without a verdict (refused before checking): no failure counted."""
        rec = self._records.get(bucket(address))
        if rec is not None:
            rec.in_flight = False

    # ---------------------------------------------------------------- box-wide
    def take_check(self) -> float:
        """Take one password check from the box-wide budget: 0 when taken, else seconds until one is."""
        now = self._now()
        self._tokens = min(float(BURST), self._tokens + (now - self._refilled) * CHECKS_PER_S)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / CHECKS_PER_S

    def _record(self, key: str) -> _Record:
        rec = self._records.get(key)
        if rec is None:
            rec = self._records[key] = _Record()
            if len(self._records) > MAX_ADDRESSES:
                self._evict()
        self._records.move_to_end(key)
        return rec

    def _evict(self) -> None:
        """Forget the least recently seen address that is not locked out (an attacker's many
        addresses cannot push a locked one out); if all are locked, the least recent one."""
        now = self._now()
        for key, rec in self._records.items():
            if rec.locked_until <= now and not rec.in_flight:
                del self._records[key]
                return
        self._records.popitem(last=False)


def bucket(address: str) -> str:
    """The unit a limit applies to: the IPv4 address, or the /64 of an IPv6 address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def retry_after(seconds: float) -> str:
    """A Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
