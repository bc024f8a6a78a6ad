"""The dispatcher: drains the ledger's queue into the modem(s), one worker per modem.

Each part is committed as `sending` before AT+CMGS is written, and recorded with
its `+CMGS: <mr>` after. Errors are mapped once, in `classify()`, to an outcome:
retry later with backoff and jitter (transient), fail now (permanent), or "the
modem is down" (the message goes back untouched and another modem may take it).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.config import DispatcherConfig, ModemConfig
from appliance.metrics import Metrics
from appliance.states import PartState
from appliance.store import Message, Store
from modem import AtError, AtTimeout, Modem, ModemError, ModemState, TransportError
from modem.pdu import Address, encode_submits

_LOGGER = logging.getLogger(__name__)

# How long an idle worker sleeps when nothing is due and nobody wakes it: a safety net only,
# new messages wake the worker at once.
IDLE_WAIT_S = 5.0
# Below this, a rate-limit wait is not worth a timeline entry.
NOTABLE_DELAY_S = 1.0


class Outcome(enum.Enum):
    RETRY = "retry"
    PERMANENT = "permanent"
    MODEM_DOWN = "modem_down"


@dataclass(frozen=True)
class Classified:
    outcome: Outcome
    code: str
    message: str
    ambiguous: bool = False  # the network may have the message already (duplicate risk)


def classify(exc: BaseException) -> Classified:
    """Map a modem exception to what the dispatcher does about it (the one mapping point)."""
    if isinstance(exc, AtError):
        kind = exc.kind.lower()
        code = f"{kind}_{exc.code}" if exc.code is not None else (kind if kind != "at" else "modem_error")
        meaning = exc.meaning
        if exc.hint:
            meaning = f"{meaning} ({exc.hint})"
        if exc.kind in ("CMS", "CME"):
            # 332 network timeout and 513 lower-layer failure: the SC may have it already.
            ambiguous = exc.code in (332, 513)
            if exc.retry.transient:
                return Classified(Outcome.RETRY, code, meaning, ambiguous)
            return Classified(Outcome.PERMANENT, code, meaning, ambiguous)
        return Classified(Outcome.RETRY, code, f"modem answered {exc.final}")
    if isinstance(exc, AtTimeout):
        return Classified(Outcome.RETRY, "modem_timeout", str(exc), ambiguous=True)
    if isinstance(exc, TransportError):
        return Classified(Outcome.MODEM_DOWN, "modem_unavailable", str(exc))
    if isinstance(exc, ModemError):
        return Classified(Outcome.RETRY, "modem_error", str(exc))
    return Classified(Outcome.RETRY, "internal_error", repr(exc))


def backoff_s(attempt: int, cfg: DispatcherConfig, rng: random.Random) -> float:
    """Exponential backoff with jitter: base * 2^(n-1), capped, times 0.5..1.5."""
    raw: float = min(cfg.backoff_max_s, cfg.backoff_base_s * 2.0 ** max(0, attempt - 1))
    return raw * rng.uniform(0.5, 1.5)


class TokenBucket:
    """Sends per minute for one modem; carriers block SIMs that flood."""

    def __init__(
        self, per_minute: float, *, burst: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_s = per_minute / 60.0
        self.capacity = max(1.0, burst)
        self.tokens = self.capacity
        self._clock = clock
        self._last = clock()

    def wait_s(self) -> float:
        """Seconds until a token is available (0 when one is)."""
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate_s

    def take(self) -> None:
        self._refill()
        self.tokens -= 1

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate_s)
        self._last = now


class RecipientFlood:
    """Anti-flood: at most N parts per minute to one recipient, over all modems."""

    def __init__(self, per_minute: float) -> None:
        self.per_minute = per_minute
        self._sent: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def record(self, number: str, now: float) -> None:
        self._sent[number].append(now)

    def blocked_until(self, now: float) -> dict[str, float]:
        """Recipients over the limit, with the time they may get the next message."""
        out: dict[str, float] = {}
        limit = max(1, int(self.per_minute))
        for number, times in list(self._sent.items()):
            while times and times[0] <= now - 60:
                times.popleft()
            if not times:
                del self._sent[number]
            elif len(times) >= limit:
                out[number] = times[0] + 60
        return out


class Dispatcher:
    """Shared state of the workers: wake-up signal, anti-flood, progress for the systemd watchdog."""

    def __init__(self, store: Store, cfg: DispatcherConfig, metrics: Metrics) -> None:
        self.store = store
        self.cfg = cfg
        self.metrics = metrics
        self.work = asyncio.Event()
        self.flood = RecipientFlood(cfg.per_recipient_per_minute)
        self.last_progress = time.monotonic()
        self.rng = random.Random()  # noqa: S311  (jitter, not security)
        self.workers: list[ModemWorker] = []

    def wake(self) -> None:
        """A message was committed: start now (no polling gap)."""
        self.work.set()

    def progress(self) -> None:
        self.last_progress = time.monotonic()

    async def run(self) -> None:
        """Run every worker; they never return."""
        async with asyncio.TaskGroup() as tg:
            for worker in self.workers:
                tg.create_task(worker.run(), name=f"worker {worker.name}")


class ModemWorker:
    """Drains the queue into one modem."""

    def __init__(self, dispatcher: Dispatcher, modem: Modem, cfg: ModemConfig, name: str) -> None:
        self.d = dispatcher
        self.modem = modem
        self.cfg = cfg
        self.name = name
        self.bucket = TokenBucket(cfg.rate_per_minute)
        self.failures = 0
        self.set_aside_until = 0.0
        self.sent_parts = 0

    @property
    def available(self) -> bool:
        return self.modem.state is ModemState.READY and time.monotonic() >= self.set_aside_until

    async def run(self) -> None:
        while True:
            self.d.progress()
            if not self.available:
                await self._wait_available()
                continue
            wait = self.bucket.wait_s()
            if wait > 0:
                if wait >= NOTABLE_DELAY_S:
                    await self._note_rate_limit(wait)
                await asyncio.sleep(wait)
                continue
            now = time.time()
            flooded = self.d.flood.blocked_until(now)
            msg = await self.d.store.claim_next(
                self.name,
                now=now,
                delay_until=flooded,
                delay_reason=f"anti-flood: at most {self.d.cfg.per_recipient_per_minute:g} messages a minute to one recipient",
            )
            if msg is None:
                await self._idle()
                continue
            self.d.work.set()  # more may be due: let other workers look too
            await self._send(msg)

    async def _wait_available(self) -> None:
        # Wake up when the modem comes back or the set-aside time ends.
        timeout = max(0.05, min(1.0, self.set_aside_until - time.monotonic()))
        try:
            async with asyncio.timeout(timeout):
                await self.modem.ready.wait()
        except TimeoutError:
            pass

    async def _idle(self) -> None:
        due = await self.d.store.next_due()
        timeout = IDLE_WAIT_S if due is None else max(0.0, min(IDLE_WAIT_S, due - time.time()))
        self.d.work.clear()
        try:
            async with asyncio.timeout(timeout):
                await self.d.work.wait()
        except TimeoutError:
            pass

    async def _note_rate_limit(self, wait: float) -> None:
        nxt = await self.d.store.peek_next(time.time())
        if nxt is not None:
            await self.d.store.delay(
                nxt,
                time.time() + wait,
                f"waiting for the modem's rate limit ({self.cfg.rate_per_minute:g} a minute)",
            )

    async def _send(self, msg: Message) -> None:
        """Send the parts of msg not yet accepted by the network, with its concatenation reference."""
        assert msg.body is not None  # noqa: S101  (bodies are purged only from final messages)
        submits = encode_submits(
            Address.parse(msg.to),
            msg.body,
            concat_ref=msg.concat_ref or 0,
            status_report_request=True,
            validity_relative=_validity_octet(msg.expires_at - time.time()),
        )
        if len(submits) != msg.segments:
            _LOGGER.error("message %s: %d segments now, %d at accept", msg.id, len(submits), msg.segments)
        done = {p.seq for p in msg.parts if p.status not in (PartState.PENDING, PartState.SENDING)}
        for submit in submits:
            seq = submit.concat.seq if submit.concat else 1
            if seq in done:
                continue
            self.bucket.take()
            await self.d.store.part_sending(msg.id, seq)
            try:
                submitted = await self.modem.send_submit(submit)
            except (ModemError, OSError) as exc:
                await self._failed(msg, exc)
                return
            await self.d.store.part_submitted(msg.id, seq, submitted.mr, self.name)
            self.d.flood.record(msg.to, time.time())
            self.d.metrics.sends_total.labels(result="ok").inc()
            self.sent_parts += 1
            self.failures = 0
            self.d.progress()

    async def _failed(self, msg: Message, exc: BaseException) -> None:
        c = classify(exc)
        self.d.metrics.send_errors_total.labels(code=c.code).inc()
        _LOGGER.warning("message %s on %s: %s (%s)", msg.id, self.name, c.code, c.message)
        if c.outcome is Outcome.MODEM_DOWN:
            # Nothing reached the network (the port is gone): no attempt is used up.
            await self.d.store.release(msg.id, f"{self.name} unavailable: {c.message}")
            self.d.metrics.sends_total.labels(result="modem_down").inc()
            self._note_failure()
            self.d.wake()
            return
        if c.ambiguous:
            await self.d.store.note(
                msg.id, "outcome_unknown", f"{c.code}: the network may have the message already"
            )
        if c.outcome is Outcome.PERMANENT:
            await self.d.store.send_failed(
                msg.id, code=c.code, message=c.message, retry_at=None, max_attempts=self.d.cfg.max_attempts
            )
            self.d.metrics.sends_total.labels(result="permanent").inc()
            return
        self._note_failure()
        delay = backoff_s(msg.attempts, self.d.cfg, self.d.rng)
        await self.d.store.send_failed(
            msg.id,
            code=c.code,
            message=c.message,
            retry_at=time.time() + delay,
            max_attempts=self.d.cfg.max_attempts,
        )
        self.d.metrics.sends_total.labels(result="transient").inc()

    def _note_failure(self) -> None:
        self.failures += 1
        if self.failures >= self.d.cfg.modem_failures_before_set_aside:
            _LOGGER.error(
                "%s failed %d times in a row; set aside for %g s",
                self.name,
                self.failures,
                self.d.cfg.set_aside_s,
            )
            self.set_aside_until = time.monotonic() + self.d.cfg.set_aside_s
            self.failures = 0


def _validity_octet(seconds: float) -> int:
    """TP-VP relative format (TS 23.040 9.2.3.12.1) for the time left, rounded down."""
    minutes = max(5.0, seconds / 60)
    if minutes <= 720:
        return max(0, min(143, int(minutes // 5) - 1))
    hours = minutes / 60
    if hours <= 24:
        return min(167, 143 + int((hours - 12) * 2))
    days = hours / 24
    if days <= 30:
        return min(196, 166 + int(days))
    return min(255, 192 + int(days / 7))
