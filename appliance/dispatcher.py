"""The dispatcher: drains the ledger's queue into the modem(s), one worker per modem.

Each part is committed as `sending` before AT+CMGS is written, and recorded with
its `+CMGS: <mr>` after. Errors are mapped once, in `classify()`, to an outcome:
retry later with backoff and jitter (transient), fail now (permanent), or "the
modem is down" (the message goes back untouched and another modem may take it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import functools
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from appliance.config import DispatcherConfig, ModemConfig
from appliance.ledger import LedgerUnreachable, Message, StorageFull, Store, StoreError, rfc3339
from appliance.metrics import Metrics
from appliance.segments import plan
from appliance.states import PartState
from modem import AtError, AtTimeout, Modem, ModemError, ModemState, TransportError
from modem.pdu import Address, encode_submits

_LOGGER = logging.getLogger(__name__)

# How long an idle worker sleeps when nothing is due and nobody wakes it: a safety net only,
# new messages wake the worker at once.
IDLE_WAIT_S = 5.0
# Below this, a rate-limit wait is not worth a timeline entry. Half a second, not one: at
# 60 a minute the wait after a send is a hair under 1 s and must still say why.
NOTABLE_DELAY_S = 0.5
# After an unexpected failure in the send loop, pause this long before the next turn.
TURN_ERROR_PAUSE_S = 1.0
# Claim the next message during a send only when its token comes within this time.
PREFETCH_MAX_WAIT_S = 1.0
# While the ledger's disk is full, look this often whether it has room again.
DISK_FULL_WAIT_S = 1.0
LEDGER_WAIT_S = 1.0  # a turn's wait for the ledger's server (each turn shows progress to systemd)
DISK_FULL_PAUSE = "the ledger's disk is full: sending paused until space is freed"


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
        return Classified(Outcome.MODEM_DOWN, "modem_unavailable", str(exc), ambiguous=exc.maybe_sent)
    if isinstance(exc, ModemError):
        return Classified(Outcome.RETRY, "modem_error", str(exc))
    return Classified(Outcome.RETRY, "internal_error", repr(exc))


def backoff_s(attempt: int, cfg: DispatcherConfig, rng: random.Random) -> float:
    """Exponential backoff with jitter: base * 2^(n-1), capped, times 0.5..1.5."""
    # Doublings bounded: 2.0 ** 1024 overflows (max_attempts has no upper limit), the cap comes long before.
    raw: float = min(cfg.backoff_max_s, cfg.backoff_base_s * 2.0 ** min(max(0, attempt - 1), 1000))
    return raw * rng.uniform(0.5, 1.5)


class TokenBucket:
    """Sends per minute for one modem, with a burst; carriers block SIMs that flood.

    It starts full: up to `burst` sends go back to back, then one every 60/per_minute s.
    Over any window of T seconds at most burst + T * per_minute / 60 sends pass, so the
    long-run rate is per_minute whatever the burst. After a restart `replay` sets it from the
    sends the ledger recorded, so a crash loop does not send a fresh burst per start.
    """

    def __init__(
        self, per_minute: float, *, burst: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute = per_minute
        self.rate_s = per_minute / 60.0
        self.capacity = max(1.0, burst)
        self.tokens = self.capacity
        self._clock = clock
        self._last = clock()

    @property
    def lookback_s(self) -> float:
        """How far back sends are replayed: twice the time an empty bucket takes to fill."""
        return 2 * self.capacity / self.rate_s

    def replay(self, ages_s: Iterable[float]) -> None:
        """The bucket after sends made `ages_s` seconds ago. It is taken as empty `lookback_s` ago:
        never fuller than it really is (a restart adds no burst), and exact unless the modem sent
        at its limit all that time (then a little stricter)."""
        window = self.lookback_s
        tokens, last = 0.0, window
        for age in sorted((min(max(a, 0.0), window) for a in ages_s), reverse=True):
            tokens = min(self.capacity, tokens + (last - age) * self.rate_s) - 1
            last = age
        self.tokens = min(self.capacity, tokens + last * self.rate_s)
        self._last = self._clock()

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

    def describe(self) -> str:
        """The limit in words, for a timeline entry."""
        return f"the modem's rate limit ({self.per_minute:g} a minute, burst {self.capacity:g})"


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
        self.wakes = 0  # wake() calls so far: a worker's pause sees one that came during its turn
        self.flood = RecipientFlood(cfg.per_recipient_per_minute)
        self.last_progress = time.monotonic()
        self.rng = random.Random()  # noqa: S311  (jitter, not security)
        self.workers: list[ModemWorker] = []

    def wake(self) -> None:
        """A message was committed: start now (no polling gap)."""
        self.wakes += 1
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
        self.bucket = TokenBucket(cfg.rate_per_minute, burst=cfg.rate_burst)
        self.failures = 0
        self._wakes_seen = 0
        self.set_aside_until = 0.0
        self.sent_parts = 0
        dispatcher.metrics.add_modem(name)
        self._prefetch: asyncio.Task[Message | None] | None = None
        self._records: set[asyncio.Task[None]] = set()
        # +CMGS the ledger could not take yet (full disk): (message, part, MR, when), retried first.
        self._unrecorded: list[tuple[str, int, int, float]] = []
        # Claims (their `now`) the ledger's server went away under: released once it answers.
        self._cut_off_claims: list[float] = []

    @property
    def available(self) -> bool:
        return self.modem.state is ModemState.READY and time.monotonic() >= self.set_aside_until

    async def run(self) -> None:
        """Forever: a failure in one turn (ledger error, bug) is logged and the next turn begins."""
        await self._restore_rate()
        while True:
            try:
                await self._turn()
            except StorageFull as exc:
                # Even the reserve is used up by now: the store said so once; the next turn waits for room.
                _LOGGER.error("dispatcher on %s: %s", self.name, exc)  # noqa: TRY400  (expected fault)
            except LedgerUnreachable:
                await self._wait_for_ledger()  # said once by the ledger; nothing is sent meanwhile
            except Exception:
                _LOGGER.exception(
                    "dispatcher on %s: unexpected failure; continuing in %g s", self.name, TURN_ERROR_PAUSE_S
                )
                await asyncio.sleep(TURN_ERROR_PAUSE_S)

    async def _restore_rate(self) -> None:
        """The rate limit goes on where the last run left it (systemd restarts within seconds)."""
        now = time.time()
        try:
            sent = await self.d.store.submitted_since(self.name, now - self.bucket.lookback_s)
        except (StoreError, sqlite3.Error) as exc:
            _LOGGER.warning(
                "dispatcher on %s: recent sends unreadable, rate limit starts full: %s", self.name, exc
            )
            return
        self.bucket.replay(now - at for at in sent)

    async def _turn(self) -> None:
        """Claim one message (or take the prefetched one) and send it."""
        self._wakes_seen = self.d.wakes  # a wake from here on is for what this look may miss
        self.d.progress()
        if self._ledger_paused():
            await self._wait_for_ledger()
            return
        if self._unrecorded:
            await self._record_again()
        if self._cut_off_claims:
            await self._settle_cut_off_claims()
        prefetched, self._prefetch = self._prefetch, None
        try:
            if prefetched is not None:
                msg = await prefetched
                if msg is not None and not self.available:
                    await self.d.store.release(msg.id, f"{self.name} became unavailable before sending")
                    self.d.wake()
                    return
            else:
                if self.d.store.storage_problem is not None:
                    await self._wait_for_disk()
                    return
                if not self.available:
                    await self._wait_available()
                    return
                wait = self.bucket.wait_s()
                if wait > 0:
                    if wait >= NOTABLE_DELAY_S:
                        await self._note_rate_limit(time.time() + wait)
                    # Woken early by a new message: the next turn says in its timeline why it waits.
                    await self._pause(wait)
                    return
                msg = await self._claim()
        except (StorageFull, LedgerUnreachable):
            return  # nothing was claimed, or the claim was rolled back; the next turn waits
        if msg is None:
            await self._idle()
            return
        self.d.wake()  # more may be due: let other workers look too
        await self._send(msg)

    async def _claim(self, *, mark_first_part: bool = True) -> Message | None:
        now = time.time()
        try:
            return await self._claim_at(now, mark_first_part=mark_first_part)
        except LedgerUnreachable:
            # Its COMMIT may have made it before the server went away: checked once it answers.
            self._cut_off_claims.append(now)
            raise

    async def _settle_cut_off_claims(self) -> None:
        while self._cut_off_claims:
            released = await self.d.store.release_cut_off_claim(self.name, self._cut_off_claims[0])
            self._cut_off_claims.pop(0)
            if released:
                _LOGGER.warning(
                    "dispatcher on %s: claim cut off by the ledger's outage put back: %s", self.name, released
                )

    async def _claim_at(self, now: float, *, mark_first_part: bool = True) -> Message | None:
        return await self.d.store.claim_next(
            self.name,
            now=now,
            delay_until=self.d.flood.blocked_until(now),
            delay_reason=f"anti-flood: at most {self.d.cfg.per_recipient_per_minute:g} messages a minute to one recipient",
            mark_first_part=mark_first_part,
        )

    def _prefetch_next(self) -> None:
        """Claim the next message while the modem submits this one: no idle gap between sends.

        Its first part stays `pending` until its own turn marks it just before AT+CMGS: a crash
        (or a takeover) while it waits resends it as never handed over, with no duplicate flag.
        """
        # Only when the rate limit lets the next send follow soon: a prefetched message
        # waits for its token in `sending`, which must stay short.
        if self._prefetch is None and self.available and self.bucket.wait_s() < PREFETCH_MAX_WAIT_S:
            self._prefetch = asyncio.create_task(self._claim(mark_first_part=False))

    def _record(self, msg_id: str, seq: int, mr: int) -> None:
        """Commit +CMGS in the background; the store's FIFO write lock keeps the order."""
        record = (msg_id, seq, mr, time.time())
        task = asyncio.create_task(self._record_part(*record))
        self._records.add(task)
        task.add_done_callback(lambda t: self._recorded(t, record))

    async def _record_part(self, msg_id: str, seq: int, mr: int, at: float) -> None:
        try:
            await self.d.store.part_submitted(msg_id, seq, mr, self.name, at=at)
        except LedgerUnreachable:
            spool = self.d.store.spool
            if spool is None:
                raise
            # The server went away with this part in flight: the spool's journal keeps what the
            # network said and writes it to the server before anything else is sent.
            await spool.part_submitted(msg_id, seq, mr, self.name, at=at)
            _LOGGER.warning(
                "message %s part %d (MR %d): the ledger's server is unreachable; kept in the spool's journal",
                msg_id,
                seq,
                mr,
            )

    def _ledger_paused(self) -> bool:
        """Send nothing: the ledger's server is unreachable, or what the modem did meanwhile is
        not on it yet (the spool's journal)."""
        spool = self.d.store.spool
        return not self.d.store.reachable.is_set() or (spool is not None and spool.sending_paused)

    async def _wait_for_ledger(self) -> None:
        try:
            async with asyncio.timeout(LEDGER_WAIT_S):
                await self.d.store.reachable.wait()
                if self.d.store.spool is not None:  # its journal is being written to the server
                    await self.d.store.spool.journal_written.wait()
        except TimeoutError:
            pass

    async def _once_ledger_answers(self, write: Callable[[], Awaitable[None]]) -> None:
        """`write`, tried again each time the ledger's server is unreachable, once it answers."""
        while True:
            try:
                await write()
            except LedgerUnreachable:
                await self._wait_for_ledger()
                self.d.progress()
                continue
            return

    def _recorded(self, task: asyncio.Task[None], record: tuple[str, int, int, float]) -> None:
        self._records.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        msg_id, seq, mr, _at = record
        self._unrecorded.append(record)
        if isinstance(exc, StorageFull):
            # Even the reserve is used up: keep it here and write it first once there is room.
            _LOGGER.error(
                "message %s part %d was accepted by the network (MR %d) but the full disk keeps it "
                "from the ledger; it is recorded once there is room",
                msg_id,
                seq,
                mr,
            )
        else:
            _LOGGER.error("recording message %s part %d failed; retrying", msg_id, seq, exc_info=exc)

    async def settle(self, timeout_s: float) -> None:
        """At stop: let the +CMGS records still being committed finish (else their parts stay
        `sending` and the next start counts them as possibly sent)."""
        if self._records:
            await asyncio.wait(set(self._records), timeout=timeout_s)
        if self._unrecorded:
            await self._record_again()

    async def _record_again(self) -> None:
        while self._unrecorded:
            msg_id, seq, mr, at = self._unrecorded[0]
            try:
                await self.d.store.part_submitted(msg_id, seq, mr, self.name, at=at)
            except (StorageFull, LedgerUnreachable):
                return
            except Exception:
                _LOGGER.exception("recording message %s part %d failed again; giving up", msg_id, seq)
            self._unrecorded.pop(0)

    async def _wait_for_disk(self) -> None:
        """The ledger's disk is full: send nothing (it could not be recorded) until it has room."""
        try:
            async with asyncio.timeout(DISK_FULL_WAIT_S):
                await self.d.store.writable.wait()
        except TimeoutError:
            pass

    async def _put_back(self, msg: Message) -> None:
        """A claimed message goes back to the queue because the disk is full (vital: on the reserve).

        After the +CMGS records of its parts sent so far: releasing first would mark them pending.
        A record that did not make it leaves the message `sending`, so a restart counts that part
        as possibly sent rather than sending it again unannounced. Shielded: a stop (SIGTERM) in
        the middle must not leave the message `sending` either.
        """
        work = asyncio.ensure_future(self._put_back_now(msg))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await work
            raise

    async def _put_back_now(self, msg: Message) -> None:
        if self._records:
            await asyncio.wait(set(self._records))
        if any(r[0] == msg.id for r in self._unrecorded):
            return
        try:
            await self.d.store.release(msg.id, DISK_FULL_PAUSE)
        except StorageFull:
            _LOGGER.error(  # noqa: TRY400  (an expected fault: one line, no traceback)
                "message %s stays `sending`: the full disk keeps even its release from the ledger", msg.id
            )

    async def _wait_available(self) -> None:
        # Wake up when the modem comes back or the set-aside time ends.
        aside_s = self.set_aside_until - time.monotonic()
        if aside_s > 0:
            # Set aside while the modem is READY: `ready` is set, so waiting on it would return
            # at once and the loop would spin without yielding, freezing the whole daemon.
            await asyncio.sleep(min(1.0, aside_s))
            return
        timeout = 1.0
        try:
            async with asyncio.timeout(timeout):
                await self.modem.ready.wait()
        except TimeoutError:
            pass

    async def _idle(self) -> None:
        due = await self.d.store.next_due()
        await self._pause(IDLE_WAIT_S if due is None else max(0.0, min(IDLE_WAIT_S, due - time.time())))

    async def _pause(self, seconds: float) -> None:
        """Until `seconds` pass or a message is committed. One committed while this turn looked
        (its claim and next_due are awaits) ends the pause at once: cleared here, that wake was
        lost, and the message waited IDLE_WAIT_S (seen as a flaky 5 s in tests under load)."""
        if self.d.wakes != self._wakes_seen:
            return
        self.d.work.clear()
        try:
            async with asyncio.timeout(seconds):
                await self.d.work.wait()
        except TimeoutError:
            pass

    async def _note_rate_limit(self, until: float) -> None:
        # `until` is taken before these awaits: a later one would hold the message past its token.
        nxt = await self.d.store.peek_next(time.time())
        if nxt is not None:
            await self.d.store.delay(nxt, until, f"waiting for {self.bucket.describe()}", move=False)

    async def _send(self, msg: Message) -> None:
        """Send the parts of msg not yet accepted by the network, with its concatenation reference."""
        assert msg.body is not None  # noqa: S101  (bodies are purged only from final messages)
        # The intake's plan: same function, same text, the alphabet it chose (stored with the message).
        submits = encode_submits(
            Address.parse(msg.to),
            msg.body,
            concat_ref=msg.concat_ref or 0,
            status_report_request=True,
            validity_relative=_validity_octet(msg.expires_at - time.time()),
            segmentation=plan(msg.body, msg.encoding),
        )
        if len(submits) != msg.segments:  # only if the split rules changed between accept and send
            _LOGGER.error("message %s: %d segments now, %d at accept", msg.id, len(submits), msg.segments)
        states = {p.seq: p.status for p in msg.parts}
        todo = [
            s
            for s in submits
            if states.get(s.concat.seq if s.concat else 1) in (PartState.PENDING, PartState.SENDING)
        ]
        for i, submit in enumerate(todo):
            seq = submit.concat.seq if submit.concat else 1
            if self.d.store.storage_problem is not None:
                await self._put_back(msg)
                return
            while self._ledger_paused():  # the next part only once the last one's record is in
                await self._wait_for_ledger()
                self.d.progress()
            wait = self.bucket.wait_s()
            if wait > 0:  # a prefetched message, or the next part of a multipart one
                if wait >= NOTABLE_DELAY_S:
                    await self.d.store.note(
                        msg.id,
                        "delayed",
                        f"part {seq}/{msg.segments} waiting for {self.bucket.describe()} "
                        f"until {rfc3339(time.time() + wait)}",
                    )
                await asyncio.sleep(wait)
            self.bucket.take()
            if states[seq] is not PartState.SENDING:  # the claim marked the first one already
                try:  # not a new AT+CMGS before the server has its mark
                    await self._once_ledger_answers(functools.partial(self.d.store.part_sending, msg.id, seq))
                except StorageFull:
                    await self._put_back(msg)
                    return
            # Counted at the attempt, before the next claim looks (a failed send over-counts: safe).
            self.d.flood.record(msg.to, time.time())
            if i == len(todo) - 1:
                self._prefetch_next()
            try:
                submitted = await self.modem.send_submit(submit)
            except (ModemError, OSError) as exc:
                # The failure is recorded once the server answers (nothing else is sent meanwhile).
                await self._once_ledger_answers(functools.partial(self._failed, msg, exc))
                return
            self._record(msg.id, seq, submitted.mr)
            self.d.metrics.count_send(self.name, "ok")
            self.sent_parts += 1
            self.failures = 0
            self.d.progress()
        if todo:  # every part it still lacked is with the network now: this modem completed it
            self.d.metrics.modem_messages_sent_total.labels(modem=self.name).inc()

    async def _failed(self, msg: Message, exc: BaseException) -> None:
        c = classify(exc)
        self.d.metrics.send_errors_total.labels(code=c.code).inc()
        _LOGGER.warning("message %s on %s: %s (%s)", msg.id, self.name, c.code, c.message)
        if c.outcome is Outcome.MODEM_DOWN:
            # The port is gone: no attempt is used up. If it went after the PDU was written,
            # the network may have the message already: say so before sending it again.
            if c.ambiguous:
                await self.d.store.note(
                    msg.id, "outcome_unknown", f"{c.code}: the port went away after the PDU was written"
                )
            await self.d.store.release(msg.id, f"{self.name} unavailable: {c.message}")
            self.d.metrics.count_send(self.name, "modem_down")
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
            self.d.metrics.count_send(self.name, "permanent")
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
        self.d.metrics.count_send(self.name, "transient")

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
