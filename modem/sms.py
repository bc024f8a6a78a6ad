"""SMS operations over the AT engine: one readable coroutine per operation.

`Modem` owns a `Port` (kept open, reopened after unplug) and an `AtEngine`.
On every (re)open it initialises the modem (echo off, numeric errors, SIM/PIN,
PDU mode, CNMI routing, storage) and sweeps stored messages, so nothing
received while the gateway was down is lost. Stored SMS are deleted only after
the caller's callback returned (its content committed elsewhere). Codes that
mean "not yet" (SIM busy, +CME ERROR: 515) are waited out with backoff during
init, said once when the wait starts and once when it ends.

A submit silent past a deadline learnt from this modem's recent submits
(`modem.liveness`) gets the modem probed (`modem.at`): a frozen modem that
answers again ends the submit at once as `SubmitLost` (possibly sent), a busy
one answers the submit first. `stalled_since` tells the daemon it is waiting
on the modem, not stuck.

Results are typed (`Submitted`, `StoredSms`, `Signal`, ...), never strings.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from modem import profiles
from modem.at import DEFAULT_TIMEOUT_S, PROBE_EVERY_S, AtEngine, Liveness, Response, Urc
from modem.errors import (
    AtError,
    AtTimeout,
    CallbackDeferred,
    CmeError,
    CmsError,
    ModemError,
    PduError,
    Retry,
    SubmitLost,
    TransportError,
)
from modem.liveness import SubmitTimes
from modem.pdu import Address, Deliver, StatusReport, Submit, decode_pdu, encode_submits
from modem.transport import Port

_LOGGER = logging.getLogger(__name__)

# Consecutive command timeouts after which the port is closed and reopened (reset path).
TIMEOUTS_BEFORE_REOPEN = 2
# After AT+CFUN=1,1, how long a USB modem may take to drop off the bus before we reopen ourselves.
RESET_SETTLE_S = 5.0
# SIM busy right after boot or PIN entry: AT+CPIN? alone waits this long (ZTE needs ~2 s steps).
SIM_BUSY_WAIT_S = 10.0
# With nothing announced for this long, stored memories are swept again: an announcement
# (+CMTI/+CDSI) lost in a frozen or garbled port must not leave a report in the modem.
QUIET_SWEEP_S = 60.0
# At most this many routed messages a dead gateway never acked are refused at (re)open.
UNSEEN_ACKS_MAX = 20
# Wait-and-retry codes (SIM busy, +CME ERROR: 515 "init in progress"): the modem says "not yet".
# Retried at 0.5 s doubling to 5 s (with jitter): a few commands a minute, ready soon after it is.
WAIT_RETRY_MIN_S = 0.5
WAIT_RETRY_MAX_S = 5.0
# Initialisation waits this long on such codes; then it fails and the port keeper's backoff takes over.
INIT_PATIENCE_S = 120.0
# A submit silent this long (at least; more when this modem's submits are slow) gets the modem probed.
SUBMIT_FLOOR_S = 10.0


class ModemState(enum.StrEnum):
    """Where the modem connection stands, as the status page shows it."""

    DISCONNECTED = "disconnected"
    INITIALISING = "initialising"
    SIM_LOCKED = "sim_locked"  # needs a PIN we do not have, or PUK
    NO_SIM = "no_sim"
    READY = "ready"


@dataclass(frozen=True)
class Identity:
    manufacturer: str
    model: str
    revision: str
    imei: str


_REG_TEXT = {0: "not registered", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming"}


@dataclass(frozen=True)
class Registration:
    """+CREG/+CEREG status (27.007 §7.2): 1 home, 5 roaming are registered."""

    status: int
    lac: str = ""
    cell: str = ""
    act: int | None = None

    @property
    def registered(self) -> bool:
        return self.status in (1, 5)

    @property
    def text(self) -> str:
        return _REG_TEXT.get(self.status, f"status {self.status}")

    @property
    def technology(self) -> str:
        return {0: "GSM", 2: "UMTS", 3: "EDGE", 4: "HSDPA", 5: "HSUPA", 6: "HSPA", 7: "LTE"}.get(
            self.act if self.act is not None else -1, ""
        )


@dataclass(frozen=True)
class Signal:
    """+CSQ (27.007 §8.5): rssi 0..31 maps to -113..-51 dBm, 99 unknown."""

    rssi: int
    ber: int = 99

    @property
    def dbm(self) -> int | None:
        return None if not 0 <= self.rssi <= 31 else -113 + 2 * self.rssi

    @property
    def bars(self) -> int:
        """0..5 bars, the usual phone scale."""
        dbm = self.dbm
        if dbm is None:
            return 0
        return sum(dbm >= t for t in (-107, -99, -91, -83, -75))


@dataclass(frozen=True)
class Storage:
    memory: str
    used: int
    total: int

    @property
    def full(self) -> bool:
        return self.total > 0 and self.used >= self.total


@dataclass(frozen=True)
class Submitted:
    """The network accepted one part: its message reference for matching reports."""

    mr: int
    seq: int = 1
    total: int = 1
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class StoredSms:
    """One message read from modem storage."""

    memory: str
    index: int
    status: int | None
    pdu: str
    message: Deliver | Submit | StatusReport | None  # None: undecodable, see error
    error: str = ""  # why the PDU could not be decoded


@dataclass(frozen=True)
class Undecodable:
    """A PDU the decoder refused, handed over for quarantine before the modem forgets it."""

    port: str  # the modem's url
    memory: str  # "SM"/"SR"/"ME"...; "" for a routed +CMT/+CDS
    index: int | None  # None when routed
    pdu: str  # the raw hex as the modem gave it
    reason: str  # the PduError text


@dataclass(frozen=True)
class _Announced:
    """One +CMTI/+CDSI to act on: where we read it (not always where the URC said)."""

    memory: str
    index: int
    report: bool = False  # from +CDSI: the slot must hold a status report to be taken
    announced: str = ""  # the memory the URC named, when we read elsewhere (Quectel)


class SendError(ModemError):
    """A multipart send stopped at one part; `submitted` holds the parts accepted before it."""

    def __init__(self, cause: ModemError, submitted: list[Submitted]) -> None:
        super().__init__(f"send stopped after {len(submitted)} part(s): {cause}")
        self.cause = cause
        self.submitted = submitted


DeliverCallback = Callable[[Deliver], Awaitable[None]]
ReportCallback = Callable[[StatusReport], Awaitable[None]]
UndecodableCallback = Callable[[Undecodable], Awaitable[None]]


@dataclass
class ModemInfo:
    """Last known facts about the modem (plain fields; reading them never does I/O)."""

    identity: Identity | None = None
    sim: str = ""
    iccid: str = ""
    registration: Registration | None = None
    operator: str = ""
    signal: Signal | None = None
    storage: Storage | None = None
    cnmi: str = ""
    report_recovery: str = ""  # "stored", "acknowledged" or "none" (see modem.profiles)
    profile: str = ""
    resets: int = 0
    reopens: int = 0
    last_error: str = ""


class Modem:
    """A GSM/LTE modem on one AT port."""

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        pin: str = "",
        on_deliver: DeliverCallback | None = None,
        on_status_report: ReportCallback | None = None,
        on_undecodable: UndecodableCallback | None = None,
        command_timeout_s: float = DEFAULT_TIMEOUT_S,
        submit_timeout_s: float | None = None,
        submit_floor_s: float = SUBMIT_FLOOR_S,
    ) -> None:
        self.url = url
        self.pin = pin
        self.info = ModemInfo()
        self.state = ModemState.DISCONNECTED
        self.ready = asyncio.Event()
        self.state_changed = asyncio.Condition()
        self._on_deliver = on_deliver
        self._on_status_report = on_status_report
        self._on_undecodable = on_undecodable
        self._deferring = False  # a callback deferred (said once) and none has taken a message since
        self._command_timeout_s = command_timeout_s
        self._submit_timeout_s = submit_timeout_s
        self.submit_times = SubmitTimes(submit_floor_s, submit_timeout_s or profiles.GENERIC.submit_timeout_s)
        # Monotonic time a submit went silent past its deadline (the modem is being probed), else None.
        self.stalled_since: float | None = None
        self._patience_until: float | None = None  # loop time; set while wait-and-retry codes are waited out
        self._waiting: str | None = None  # the wait-and-retry code being waited out, logged once
        self.profile = profiles.GENERIC
        self._port = Port(url, baudrate=baudrate, on_data=self._data)
        self._engine = AtEngine(self._port.write, sync_timeout_s=min(2.0, command_timeout_s))
        self._engine.on_urc("+CMTI:", self._urc_cmti)
        self._engine.on_urc("+CDSI:", self._urc_cdsi)
        self._engine.on_urc("+CMT:", self._urc_cmt)
        self._engine.on_urc("+CDS:", self._urc_cds)
        self._engine.on_urc("+CREG:", self._urc_creg)
        self._engine.on_urc("+CEREG:", self._urc_creg)
        self._engine.on_urc("RDY", self._urc_reset)
        self._engine.on_urc("^SYSSTART", self._urc_reset)
        self._engine.on_urc("", self._urc_other)
        self._inbox: asyncio.Queue[_Announced] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._timeouts = 0
        self._memory = ""  # current <mem1> of CPMS
        # One reader of stored memories at a time: CPMS then CMGR/CMGD must not interleave.
        self._storage_lock = asyncio.Lock()
        # Routed +CMT/+CDS are committed and acked in arrival order: AT+CNMA acks the oldest.
        self._routed_lock = asyncio.Lock()
        self._acknowledge = False  # AT+CSMS=1 took: every routed +CMT/+CDS needs AT+CNMA
        self._cnmi_off = False  # an ack came too late: the modem turned routing off (27.005 +CNMA)
        self._concat_ref = random.randrange(256)  # noqa: S311  (not security, spreads refs across restarts)
        self.sent_parts = 0

    def __repr__(self) -> str:
        return f"Modem({self.url!r}, state={self.state.value})"

    # --------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start keeping the port open and initialised, in the background."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._port.run(self._initialise, self._lost))
            self._spawn(self._inbound_worker())

    async def connect(self) -> None:
        """Open the port once, without initialising or sweeping (for probing)."""
        await self._port.open()
        self._spawn(self._watch_once())

    async def _watch_once(self) -> None:
        self._lost(await self._port.wait_lost())

    async def stop(self) -> None:
        """Stop and close the port."""
        tasks = [t for t in (self._runner, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._runner = None
        self._tasks.clear()
        await self._port.close()
        self._set_state(ModemState.DISCONNECTED)

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait until the modem is initialised; TimeoutError otherwise."""
        async with asyncio.timeout(timeout_s):
            await self.ready.wait()

    async def reopen(self) -> None:
        """Close the port; the keeper reopens and re-initialises it (hang recovery)."""
        self.info.reopens += 1
        await self._port.close()

    async def reset(self) -> None:
        """Full modem reset (AT+CFUN=1,1); USB modems re-enumerate and the port is reopened."""
        self.info.resets += 1
        self._set_state(ModemState.INITIALISING)
        try:
            await self.command("AT+CFUN=1,1", timeout_s=15)
        except (AtError, AtTimeout, TransportError) as exc:
            _LOGGER.info("reset: %s; reopening the port", exc)
        # A USB modem drops off the bus and re-enumerates: let the old port go first, or we
        # would reopen it, initialise, and lose it a moment later. A serial modem stays put.
        try:
            async with asyncio.timeout(RESET_SETTLE_S):
                await self._port.wait_lost()
        except TimeoutError:
            await self._port.close()

    # ---------------------------------------------------------------- commands
    async def command(
        self, cmd: str, *, timeout_s: float | None = None, prefix: str | None = None
    ) -> Response:
        """One AT command through the engine; repeated timeouts make the port reopen.

        While initialising, a wait-and-retry code (SIM busy, +CME ERROR: 515) repeats the
        command with backoff instead of failing: one log line when the wait starts, one when
        it ends.
        """
        loop = asyncio.get_running_loop()
        delay = WAIT_RETRY_MIN_S
        waited_since: float | None = None
        while True:
            try:
                response = await self._engine.command(
                    cmd, timeout_s=timeout_s or self._command_timeout_s, prefix=prefix
                )
            except AtTimeout:
                self._note_timeout()
                raise
            except AtError as exc:
                pause = delay * random.uniform(0.5, 1.5)  # noqa: S311  (jitter, not security)
                patience = self._patience_until
                if exc.retry is not Retry.NOW or patience is None or loop.time() + pause > patience:
                    raise
                if waited_since is None:
                    waited_since = loop.time()
                    self._wait_began(cmd, exc)
                await asyncio.sleep(pause)
                delay = min(delay * 2, WAIT_RETRY_MAX_S)
                continue
            self._timeouts = 0
            if waited_since is not None:
                self._wait_ended(cmd, loop.time() - waited_since)
            return response

    @contextlib.contextmanager
    def _patient(self, seconds: float) -> Iterator[None]:
        """Wait out wait-and-retry codes for up to `seconds` (the outermost caller's limit holds)."""
        if self._patience_until is not None:
            yield
            return
        self._patience_until = asyncio.get_running_loop().time() + seconds
        try:
            yield
        finally:
            self._patience_until = None
            self._waiting = None

    def _wait_began(self, cmd: str, exc: AtError) -> None:
        what = f"+{exc.kind} ERROR {exc.code}: {exc.meaning}"
        self.info.last_error = f"{what}; waiting"
        if what != self._waiting:
            self._waiting = what
            _LOGGER.warning("%s: %s answered %s; retrying with backoff", self.url, cmd, what)

    def _wait_ended(self, cmd: str, waited_s: float) -> None:
        if self._waiting is not None:
            _LOGGER.info(
                "%s: %s went through after %.1f s (%s is over)", self.url, cmd, waited_s, self._waiting
            )
            self._waiting = None
            self.info.last_error = ""

    async def read_identity(self) -> Identity:
        """Manufacturer, model, firmware and IMEI (AT+CGMI/CGMM/CGMR/CGSN)."""

        async def one(cmd: str) -> str:
            try:
                lines = (await self.command(cmd)).lines
            except AtError:
                return ""  # Wavecom answers ERROR to AT+CGMR
            text = " ".join(ln.strip() for ln in lines)
            # Some modems prefix the answer ('+CGMI: ', 'Manufacturer: ').
            return re.sub(r"^(\+\w+:|\w+:)\s*", "", text).strip().strip('"')

        identity = Identity(
            manufacturer=await one("AT+CGMI"),
            model=await one("AT+CGMM"),
            revision=await one("AT+CGMR"),
            imei=await one("AT+CGSN"),
        )
        self.info.identity = identity
        return identity

    async def read_sim_state(self) -> str:
        """'READY', 'SIM PIN', 'SIM PUK', ... or 'NO SIM' (CME 10) / 'SIM FAILURE' (CME 13).

        SIM busy (CME 14) after boot is waited out with backoff, as ModemManager polls it.
        """
        try:
            with self._patient(SIM_BUSY_WAIT_S):
                response = await self.command("AT+CPIN?")
        except CmeError as exc:
            state = {10: "NO SIM", 13: "SIM FAILURE", 11: "SIM PIN", 12: "SIM PUK"}.get(exc.code or -1)
            if state is None:
                raise
            self.info.sim = state
            return state
        except AtTimeout as exc:
            # Wavecom sends '+CPIN: READY' with no final OK: take the partial answer.
            found = [ln for ln in exc.partial if ln.startswith("+CPIN:")]
            if not found:
                raise
            state = found[0][6:].strip()
            self.info.sim = state
            return state
        state = response.first("+CPIN:").strip('"')
        self.info.sim = state
        return state

    async def enter_pin(self, pin: str) -> None:
        """Unlock the SIM. A wrong PIN raises CmeError(16); never retried here (3 tries lock the SIM)."""
        if not re.fullmatch(r"\d{4,8}", pin):
            raise ValueError("a SIM PIN is 4 to 8 digits")
        await self.command(f'AT+CPIN="{pin}"')

    async def read_iccid(self) -> str:
        """The SIM's ICCID (AT+CCID, or vendor variants)."""
        for cmd in ("AT+CCID", "AT+QCCID", "AT+ICCID", "AT^ICCID?"):
            try:
                lines = (await self.command(cmd)).lines
            except AtError:
                continue
            for line in lines:
                digits = re.sub(r"[^0-9A-Fa-f]", "", line.split(":", 1)[-1])
                if len(digits) >= 18:
                    self.info.iccid = digits
                    return digits
        return ""

    async def read_registration(self) -> Registration:
        """Network registration, from +CEREG (LTE) when registered there, else +CREG."""
        best: Registration | None = None
        for cmd, prefix in (("AT+CREG?", "+CREG:"), ("AT+CEREG?", "+CEREG:")):
            try:
                payload = (await self.command(cmd)).prefixed(prefix)
            except AtError:
                continue
            if not payload:
                continue
            reg = _parse_registration(payload[0], solicited=True)
            if reg is not None and (best is None or (reg.registered and not best.registered)):
                best = reg
        if best is None:
            best = Registration(status=4)
        self.info.registration = best
        return best

    async def read_operator(self) -> str:
        """Operator name in long alphanumeric form."""
        with contextlib.suppress(AtError):
            await self.command("AT+COPS=3,0")
        payload = (await self.command("AT+COPS?")).prefixed("+COPS:")
        name = ""
        if payload:
            fields = _split_fields(payload[0])
            if len(fields) >= 3:
                name = fields[2]
        self.info.operator = name
        return name

    async def read_signal(self) -> Signal:
        """Received signal strength (AT+CSQ)."""
        fields = _split_fields((await self.command("AT+CSQ")).first("+CSQ:"))
        signal = Signal(rssi=int(fields[0]), ber=int(fields[1]) if len(fields) > 1 and fields[1] else 99)
        self.info.signal = signal
        return signal

    async def read_storage(self) -> Storage:
        """Use of the receive memory (AT+CPMS?)."""
        payload = (await self.command("AT+CPMS?")).first("+CPMS:")
        fields = _split_fields(payload)
        storage = Storage(memory=fields[0], used=int(fields[1]), total=int(fields[2]))
        self.info.storage = storage
        return storage

    async def select_memory(self, memory: str) -> None:
        """Make memory the one AT+CMGR/CMGL/CMGD work on."""
        if memory == self._memory:
            return
        await self.command(f'AT+CPMS="{memory}"')
        self._memory = memory

    async def list_stored(self, memory: str | None = None) -> list[StoredSms]:
        """Every message in memory (AT+CMGL=4, PDU mode), decoded where possible."""
        await self.select_memory(memory or self.profile.storage)
        lines = (await self.command("AT+CMGL=4", timeout_s=max(30.0, self._command_timeout_s))).lines
        result: list[StoredSms] = []
        header: tuple[int, int | None, int | None] | None = None
        for line in lines:
            if line.startswith("+CMGL:"):
                header = _parse_cmgl_header(line[6:])
                if header is None:
                    _LOGGER.warning("skipping malformed %r", line)
                continue
            if header is None:
                continue
            index, status, length = header
            result.append(_stored(self._memory, index, status, _with_smsc_field(line, length)))
            header = None
        return result

    async def _read_each(self, memory: str) -> list[StoredSms]:
        """Every message in memory by AT+CMGR, slot by slot, for modems whose AT+CMGL refuses it."""
        try:
            response = await self.command(f'AT+CPMS="{memory}"')
            used, total = (int(n) for n in re.findall(r"\d+", response.first("+CPMS:"))[:2])
        except (AtError, ValueError) as exc:
            _LOGGER.info("cannot read %s slot by slot: %s", memory, exc)
            return []
        self._memory = memory
        found: list[StoredSms] = []
        for index in range(total + 1):  # 0- or 1-based: one slot more covers both
            if len(found) >= used:
                break
            try:
                sms = await self.read_stored(index, memory)
            except CmsError:
                continue
            if sms is not None:
                found.append(sms)
        return found

    async def read_stored(self, index: int, memory: str | None = None) -> StoredSms | None:
        """One stored message (AT+CMGR), or None when the slot is empty."""
        await self.select_memory(memory or self.profile.storage)
        try:
            lines = (await self.command(f"AT+CMGR={index}")).lines
        except CmsError as exc:
            if exc.code in (321, 500):  # empty slot; some modems say 500 (gnokii)
                return None
            raise
        header = next((ln for ln in lines if ln.startswith("+CMGR:")), None)
        if header is None:
            return None  # Quectel: bare OK for a slot announced in the wrong memory
        pdu = lines[lines.index(header) + 1] if lines.index(header) + 1 < len(lines) else ""
        status, length = _parse_cmgr_header(header[6:])
        return _stored(self._memory, index, status, _with_smsc_field(pdu, length))

    async def delete_stored(self, index: int, memory: str | None = None) -> None:
        """Delete one stored message (AT+CMGD)."""
        await self.select_memory(memory or self.profile.storage)
        await self.command(f"AT+CMGD={index}")

    def next_concat_ref(self) -> int:
        """A fresh 8-bit concatenation reference (TS 23.040 9.2.3.24.1)."""
        self._concat_ref = (self._concat_ref + 1) % 256
        return self._concat_ref

    async def send_submit(self, submit: Submit) -> Submitted:
        """Send one SMS-SUBMIT part (AT+CMGS in PDU mode); returns its TP-MR from +CMGS."""
        timeout_s = self._submit_timeout_s or self.profile.submit_timeout_s
        times = self.submit_times
        times.ceiling_s = timeout_s
        liveness = (
            Liveness(times.probe_after_s, on_stall=self._stall_began)
            if not self.profile.send_aborted_by_input
            else None
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = "no answer"
        try:
            response = await self._engine.command_with_data(
                f"AT+CMGS={submit.tpdu_length}",
                submit.hex(),
                timeout_s=timeout_s,
                prefix="+CMGS:",
                liveness=liveness,
            )
            outcome = "answered"
        except SubmitLost:
            outcome = "lost"
            raise
        except AtTimeout:
            self._note_timeout()
            raise
        except AtError:
            outcome = "answered"
            raise
        finally:
            self._stall_ended(outcome, loop.time() - started)
        times.record(loop.time() - started)
        self._timeouts = 0
        # '+CMGS: <mr>[,<scts>|<ackpdu>]' (Telit, Quectel UGxx, Neoway, Nordic; the <scts> quoted
        # or not, so it may hold commas): the MR is the first field, the modem's, not our PDU's
        # (python-gsmmodem#44).
        mr_text = _split_fields(response.first("+CMGS:"))[0]
        if not mr_text.isdigit():
            raise AtError(f"AT+CMGS={submit.tpdu_length}", f"+CMGS: {mr_text}", response.lines)
        self.sent_parts += 1
        concat = submit.concat
        return Submitted(
            mr=int(mr_text) % 256,
            seq=concat.seq if concat else 1,
            total=concat.total if concat else 1,
        )

    async def send_text(
        self, to: str, text: str, *, status_report: bool = True, validity_relative: int | None = None
    ) -> list[Submitted]:
        """Send text (segmented, one concatenation reference); SendError names the parts already sent."""
        submits = encode_submits(
            Address.parse(to),
            text,
            concat_ref=self.next_concat_ref(),
            status_report_request=status_report,
            validity_relative=validity_relative,
        )
        done: list[Submitted] = []
        for submit in submits:
            try:
                done.append(await self.send_submit(submit))
            except ModemError as exc:
                if not done:
                    raise
                raise SendError(exc, done) from exc
        return done

    async def sweep(self) -> int:
        """Hand every stored received SMS and status report to the callbacks; delete each after."""
        async with self._storage_lock:
            return await self._sweep()

    async def _sweep(self) -> int:
        handled = 0
        memories = [self.profile.storage]
        report_memory = self.profile.report_memory
        if report_memory not in memories:
            with contextlib.suppress(AtError):
                await self.select_memory(report_memory)
                memories.append(report_memory)
        for memory in memories:
            try:
                stored = await self.list_stored(memory)
            except AtError as exc:
                if memory != report_memory:
                    _LOGGER.info("cannot list %s: %s", memory, exc)
                    continue
                # Some modems cannot list SR (D-Link DWM-156, gammu #156): read slot by slot.
                stored = await self._read_each(memory)
            for sms in stored:
                if await self._handle_stored(sms):
                    handled += 1
        with contextlib.suppress(AtError):
            await self.select_memory(self.profile.storage)
        return handled

    # ---------------------------------------------------------------- internals
    def _data(self, data: bytes) -> None:
        self._engine.data_received(data)

    def _lost(self, reason: Exception | None) -> None:
        self._engine.connection_lost(reason)
        self._memory = ""
        self.info.reopens = self._port.reopens
        self._set_state(ModemState.DISCONNECTED)

    def _stall_began(self, silent_s: float) -> None:
        self.stalled_since = time.monotonic() - silent_s
        self.info.last_error = "no answer to a submit: probing whether the modem is alive"
        usual = self.submit_times.usual_s
        _LOGGER.warning(
            "%s: no answer to a submit for %.1f s (usually %s); probing the modem every %g s",
            self.url,
            silent_s,
            "unknown" if usual is None else f"{usual:.1f} s",
            PROBE_EVERY_S,
        )

    def _stall_ended(self, outcome: str, elapsed_s: float) -> None:
        if self.stalled_since is None:
            return
        self.stalled_since = None
        self.info.last_error = ""
        if outcome == "lost":
            _LOGGER.warning(
                "%s answers again after %.1f s silent: the submit in flight was lost; it counts as possibly sent",
                self.url,
                elapsed_s,
            )
        elif outcome == "answered":
            _LOGGER.info(
                "%s: the submit answered after %.1f s (slow network; the modem was alive)",
                self.url,
                elapsed_s,
            )
        else:
            _LOGGER.warning("%s: no answer to the submit in %.1f s; giving up on it", self.url, elapsed_s)

    def _note_timeout(self) -> None:
        if self.state is not ModemState.READY:
            return  # initialising: the port keeper reopens, with backoff, if init fails
        self._timeouts += 1
        if self._timeouts >= TIMEOUTS_BEFORE_REOPEN:
            _LOGGER.warning("%s stopped answering; reopening the port", self.url)
            self._timeouts = 0
            self._spawn(self.reopen())

    def _set_state(self, state: ModemState) -> None:
        self.state = state
        if state is ModemState.READY:
            self.ready.set()
        else:
            self.ready.clear()

    async def _initialise(self) -> None:
        """Bring a freshly opened port to READY, waiting out SIM busy and "init in progress" codes."""
        self._set_state(ModemState.INITIALISING)
        self._memory = ""
        try:
            with self._patient(INIT_PATIENCE_S):
                await self._initialise_steps()
        except ModemError as exc:
            self.info.last_error = f"initialisation failed: {exc}"
            raise

    async def _initialise_steps(self) -> None:
        """The order ModemManager and Gammu use."""
        await self._wake()
        await self.command("ATE0")
        with contextlib.suppress(AtError):
            await self.command("AT+CMEE=1")
        identity = await self.read_identity()
        self.profile = profiles.choose(identity.manufacturer, identity.model)
        self.info.profile = self.profile.name
        for cmd in self.profile.extra_init:
            with contextlib.suppress(AtError):
                await self.command(cmd)
        sim = await self.read_sim_state()
        if sim == "SIM PIN" and self.pin:
            await self.enter_pin(self.pin)
            sim = await self.read_sim_state()
        if sim != "READY":
            self._set_state(ModemState.NO_SIM if sim in ("NO SIM", "SIM FAILURE") else ModemState.SIM_LOCKED)
            self.info.last_error = f"SIM state {sim}" + (": set modem.pin" if sim == "SIM PIN" else "")
            _LOGGER.error("SIM is %s; not ready", sim)
            return
        with contextlib.suppress(AtError):
            await self.read_iccid()
        await self.command("AT+CMGF=0")
        await self._choose_cnmi()
        with contextlib.suppress(AtError):
            await self.command(
                f'AT+CPMS="{self.profile.storage}","{self.profile.storage}","{self.profile.storage}"'
            )
            self._memory = self.profile.storage
        for cmd in ("AT+CREG=2", "AT+CEREG=2"):
            with contextlib.suppress(AtError):
                await self.command(cmd)
        await self.refresh_status()
        await self.sweep()
        self.info.last_error = ""
        self._set_state(ModemState.READY)
        _LOGGER.info(
            "modem ready: %s %s, %s, signal %s dBm",
            identity.manufacturer,
            identity.model,
            self.info.registration.text if self.info.registration else "?",
            self.info.signal.dbm if self.info.signal else "?",
        )

    async def refresh_status(self) -> None:
        """Re-read registration, operator, signal and storage into `info`."""
        for read in (self.read_registration, self.read_operator, self.read_signal, self.read_storage):
            try:
                await read()
            except (AtError, ValueError, IndexError) as exc:
                _LOGGER.debug("status read failed: %s", exc)

    async def _wake(self) -> None:
        # After boot a modem may need a moment: each try waits out its own timeout (no busy loop).
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            # A client killed between "> " and Ctrl-Z leaves the modem waiting for PDU text:
            # everything we type would be swallowed as such until ESC.
            self._engine.abort_input()
            try:
                await self.command("AT", timeout_s=min(2.0, self._command_timeout_s))
            except AtError:
                return  # it answered: awake; the next commands wait out "init in progress" codes
            except AtTimeout:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                continue
            return

    async def _choose_cnmi(self) -> None:
        """The profile's first accepted CNMI; a routed one (ds=1) with AT+CSMS=1 so reports are acked."""
        self._acknowledge = False
        for value in self.profile.cnmi:
            routed_reports = value.split(",")[3:4] == ["1"]
            if routed_reports:
                try:
                    await self.command("AT+CSMS=1")
                    self._acknowledge = True
                except AtError:
                    self._acknowledge = False  # phase 2 only: a report routed to nobody is lost
            try:
                await self.command(f"AT+CNMI={value}")
            except AtError:
                if self._acknowledge:
                    self._acknowledge = False
                    with contextlib.suppress(AtError):
                        await self.command("AT+CSMS=0")
                continue
            self.info.cnmi = value
            self.info.report_recovery = (
                "acknowledged"
                if self._acknowledge
                else "stored"
                if value.split(",")[3:4] == ["2"]
                else "none"
            )
            self._cnmi_off = False
            if self._acknowledge:
                await self._reject_unseen()
            _LOGGER.info(
                "status reports %s (CNMI=%s): %s",
                self.info.report_recovery,
                value,
                self.profile.why_recovery or "profile default",
            )
            return
        self.info.report_recovery = "none"
        _LOGGER.warning("modem accepted no CNMI setting: received SMS are found only by sweeps")

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, ModemError):
            _LOGGER.warning("%s: %s", self.url, exc)  # an expected modem fault: one line, no traceback
        elif exc is not None:
            _LOGGER.error("modem task failed", exc_info=exc)

    async def _handle_stored(self, sms: StoredSms) -> bool:
        """Give a stored message to its callback, then delete it; False when kept."""
        msg = sms.message
        if msg is None:
            # Undecodable: quarantined (committed) first, then the slot is freed so memory cannot fill.
            if not await self._quarantine(sms.memory, sms.index, sms.pdu, sms.error):
                return False
        elif isinstance(msg, Deliver):
            if self._on_deliver is None:
                return False
            if not await self._commit(
                self._on_deliver(msg),
                "received SMS are kept on the SIM",
                f"inbound callback failed; keeping {sms.memory}:{sms.index} on the SIM",
            ):
                return False
        elif isinstance(msg, StatusReport):
            if self._on_status_report is None:
                return False  # not ours to take (the watchdog's port): the gateway's sweep commits it
            if not await self._commit(
                self._on_status_report(msg),
                "status reports are kept on the SIM",
                f"report callback failed; keeping {sms.memory}:{sms.index}",
            ):
                return False
        else:
            return False  # a stored SUBMIT (draft/outbox): not ours to delete
        await self.delete_stored(sms.index, sms.memory)
        return True

    async def _quarantine(self, memory: str, index: int | None, pdu: str, reason: str) -> bool:
        """Hand an undecodable PDU to the quarantine callback; True once it is committed (or logged)."""
        where = f"{memory}:{index}" if memory else "routed"
        if self._on_undecodable is None:
            # Nobody here keeps it (the watchdog's port): left for the gateway, which quarantines it.
            # Not the PDU itself: it holds the sender's text (maybe a command with its PIN).
            _LOGGER.info(
                "undecodable PDU (%s, %d hex digits) at %s left for the gateway", reason, len(pdu), where
            )
            return False
        if not await self._commit(
            self._on_undecodable(Undecodable(self.url, memory, index, pdu, reason)),
            "undecodable PDUs are kept (stored) or refused (routed)",
            f"quarantine failed; keeping the undecodable PDU at {where}",
        ):
            return False
        _LOGGER.warning("quarantined an undecodable PDU from %s (%s)", where, reason)
        return True

    async def _inbound_worker(self) -> None:
        """Read, hand over and delete messages announced by +CMTI/+CDSI, one at a time.

        When nothing was announced for QUIET_SWEEP_S, sweep anyway: an announcement lost in a
        frozen port must not leave a report or an SMS behind until the next reconnect.
        """
        while True:
            try:
                async with asyncio.timeout(QUIET_SWEEP_S):
                    item = await self._inbox.get()
            except TimeoutError:
                if self.ready.is_set():
                    await self._quiet_check()
                continue
            try:
                await self.ready.wait()
                await self._take_stored(item)
            except (ModemError, ValueError) as exc:
                _LOGGER.warning(
                    "reading %s:%d failed (%s); the next sweep retries", item.memory, item.index, exc
                )

    async def _quiet_check(self) -> None:
        try:
            if self._acknowledge:
                await self._restore_routing()
            await self.sweep()
        except ModemError as exc:
            _LOGGER.info("periodic sweep failed (%s); retried later", exc)

    async def _take_stored(self, item: _Announced) -> None:
        async with self._storage_lock:
            await self._take_announced(item)

    async def _take_announced(self, item: _Announced) -> None:
        sms = await self.read_stored(item.index, item.memory)
        if sms is None:
            if item.announced and item.announced != item.memory:
                # Announced in one memory, absent from the one the model really uses: the
                # announced slot may hold an unrelated SMS (Quectel), never taken as a report.
                sms = await self.read_stored(item.index, item.announced)
                if sms is not None and not isinstance(sms.message, StatusReport):
                    return
            if sms is None:
                return
        if item.report and sms.message is not None and not isinstance(sms.message, StatusReport):
            _LOGGER.info(
                "+CDSI named %s:%d, which holds no status report; left alone", item.memory, item.index
            )
            return
        await self._handle_stored(sms)

    async def _take_routed(self, urc: Urc, kind: type[Deliver] | type[StatusReport]) -> None:
        """Commit one routed +CMT/+CDS, then acknowledge it (AT+CSMS=1): the network re-sends it otherwise."""
        assert urc.pdu is not None  # noqa: S101  (checked by the caller)
        async with self._routed_lock:
            try:
                msg = decode_pdu(urc.pdu)
            except PduError as exc:
                committed = await self._quarantine("", None, urc.pdu, str(exc))
            else:
                committed = await self._hand_over_routed(urc, msg, kind)
            if self._acknowledge:
                await self._acknowledge_routed(committed)

    async def _hand_over_routed(
        self, urc: Urc, msg: Deliver | Submit | StatusReport, kind: type[Deliver] | type[StatusReport]
    ) -> bool:
        if isinstance(msg, StatusReport) and self._on_status_report is not None:
            call = self._on_status_report(msg)
        elif isinstance(msg, Deliver) and self._on_deliver is not None:
            call = self._on_deliver(msg)
        elif isinstance(msg, StatusReport | Deliver):
            return False  # nobody here takes it: RP-ERROR, so the network keeps it for the gateway
        else:
            _LOGGER.warning("%s carried a %s, expected %s", urc.name, type(msg).__name__, kind.__name__)
            return True
        return await self._commit(
            call,
            "routed messages are refused (RP-ERROR) for the network to re-send",
            f"callback for a routed {urc.name} failed",
        )

    async def _commit(self, call: Awaitable[None], meanwhile: str, failed: str) -> bool:
        """Await a callback that commits to the caller's ledger: True once it returned. A deferral
        (full disk) is one line per episode; any other failure is logged and the item kept."""
        try:
            await call
        except CallbackDeferred as exc:
            self._deferred(exc, meanwhile)
            return False
        except Exception:
            _LOGGER.exception("%s", failed)
            return False
        self._deferring = False
        return True

    def _deferred(self, exc: CallbackDeferred, meanwhile: str) -> None:
        """One line per episode (every sweep and network re-send meets the same cause), not per message."""
        if not self._deferring:
            self._deferring = True
            _LOGGER.warning("%s: %s; %s until it takes them again", self.url, exc, meanwhile)
        else:
            _LOGGER.debug("%s: deferred again: %s", self.url, exc)

    async def _acknowledge_routed(self, committed: bool) -> None:
        # RP-ACK once committed; RP-ERROR (AT+CNMA=2) otherwise, so the network keeps it and re-sends.
        command = "AT+CNMA" if committed else "AT+CNMA=2"
        try:
            await self.command(command)
        except CmsError as exc:
            if exc.code != 340:
                _LOGGER.warning("%s refused: %s", command, exc)
                return
            # 340: no ack expected any more. We were too late: the modem sent RP-ERROR (the
            # network re-sends the message) and turned routing off; turn it on again.
            _LOGGER.warning("acknowledgement came too late; the network re-sends; routing restored")
            self._cnmi_off = True
            await self._restore_routing()
        except ModemError as exc:
            _LOGGER.warning("%s failed (%s); the network re-sends the message", command, exc)
            self._cnmi_off = True

    async def _reject_unseen(self) -> None:
        """RP-ERROR every routed message still waiting for an ack from before this (re)open.

        It was written to a port nobody read (a dead gateway): refusing it now makes the
        network keep it and send it again, and keeps routing on; left alone, its ack timer
        would expire later and the modem would turn routing off under our feet.
        """
        for _ in range(UNSEEN_ACKS_MAX):
            try:
                await self.command("AT+CNMA=2")
            except AtError:
                return  # 340: nothing (more) waits for an ack
        _LOGGER.warning("the modem still expects acknowledgements after %d refusals", UNSEEN_ACKS_MAX)

    async def _restore_routing(self) -> None:
        """Re-apply CNMI when the modem dropped routing (a missed +CNMA sets mt=ds=0)."""
        if not self.info.cnmi:
            return
        if not self._cnmi_off:
            try:
                current = (await self.command("AT+CNMI?")).first("+CNMI:")
            except (AtError, ValueError):
                return
            self._cnmi_off = current.replace(" ", "") != self.info.cnmi
        if self._cnmi_off:
            with contextlib.suppress(AtError):
                await self.command(f"AT+CNMI={self.info.cnmi}")
                self._cnmi_off = False
                _LOGGER.info("routing restored (CNMI=%s)", self.info.cnmi)

    # --------------------------------------------------------------------- URCs
    def _urc_cmti(self, urc: Urc) -> None:
        mem, index = _parse_mem_index(urc.line)
        if index is not None:
            self._inbox.put_nowait(_Announced(mem or self.profile.storage, index))

    def _urc_cdsi(self, urc: Urc) -> None:
        mem, index = _parse_mem_index(urc.line)
        if index is None:
            return
        if self.profile.cdsi_memory_trusted and mem:
            self._inbox.put_nowait(_Announced(mem, index, report=True))
        else:
            # The model names the wrong memory: read where it really keeps reports.
            self._inbox.put_nowait(_Announced(self.profile.report_memory, index, report=True, announced=mem))

    def _urc_cmt(self, urc: Urc) -> None:
        self._routed(urc, Deliver)

    def _urc_cds(self, urc: Urc) -> None:
        self._routed(urc, StatusReport)

    def _routed(self, urc: Urc, kind: type[Deliver] | type[StatusReport]) -> None:
        if urc.pdu is None:
            _LOGGER.warning("%s without its PDU line: nothing to keep", urc.line)
            return
        self._spawn(self._take_routed(urc, kind))

    def _urc_creg(self, urc: Urc) -> None:
        reg = _parse_registration(urc.line.split(":", 1)[1], solicited=False)
        if reg is not None:
            self.info.registration = reg
            _LOGGER.info("registration: %s", reg.text)

    def _urc_reset(self, urc: Urc) -> None:
        if self.state is ModemState.READY:
            _LOGGER.warning("modem announced a restart (%s); re-initialising", urc.line)
            self.info.resets += 1
            self._spawn(self.reopen())

    def _urc_other(self, urc: Urc) -> None:
        _LOGGER.debug("unsolicited: %s", urc.line)


# ------------------------------------------------------------------- parsing
def _split_fields(text: str) -> list[str]:
    """Comma-separated fields with quotes removed ('"SM",3' -> ['SM', '3'])."""
    fields: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            fields.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    fields.append("".join(cur).strip())
    return fields


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _parse_cmgr_header(payload: str) -> tuple[int | None, int | None]:
    """(<stat>, <length>) of a PDU-mode '+CMGR:' head, in every shape modems print.

    '1,,24' (27.005), '1,"",24' (Telit), '1,"Smith, J",24' (a phonebook <alpha>), '0,23' (no
    <alpha>), ',,92' (no <stat>: ZTE, DWM-156), '24' (length only), '4,1,,151' (an extra field):
    the length is the last field, the <stat> the first when there are two or more.
    """
    return _stat_and_length(_split_fields(payload.strip()))


def _stat_and_length(fields: list[str]) -> tuple[int | None, int | None]:
    length = _int_or_none(fields[-1]) if fields else None
    status = _int_or_none(fields[0]) if len(fields) >= 2 else None
    return status, length


def _parse_cmgl_header(payload: str) -> tuple[int, int | None, int | None] | None:
    """(<index>, <stat>, <length>) of a PDU-mode '+CMGL:' head; None without a readable index.

    '3,1,,24', '3,1,"",24', '17,3,35' (Pantech, no <alpha>), '3,,,24' (no <stat>).
    """
    fields = _split_fields(payload.strip())
    index = _int_or_none(fields[0])
    if index is None:
        return None
    status, length = _stat_and_length(fields[1:])
    return index, status, length


def _with_smsc_field(pdu: str, length: int | None) -> str:
    """The PDU as SMSC field + TPDU: quotes dropped, and "00" put in front when the modem left
    the SMSC field out (its hex is exactly the header's <length> octets, which count the TPDU only).
    """
    pdu = pdu.strip().strip('"')
    if length is None or length <= 0 or len(pdu) != 2 * length:
        return pdu
    # A modem that counts the SMSC octets into <length> (against 27.005) prints a PDU that
    # decodes as it is: keep that reading.
    with contextlib.suppress(PduError):
        decode_pdu(pdu)
        return pdu
    return "00" + pdu


def _parse_mem_index(line: str) -> tuple[str, int | None]:
    fields = _split_fields(line.split(":", 1)[1] if ":" in line else "")
    try:
        return (fields[0], int(fields[1])) if len(fields) >= 2 else ("", int(fields[0]))
    except (ValueError, IndexError):
        _LOGGER.warning("malformed %r", line)
        return ("", None)


def _parse_registration(payload: str, *, solicited: bool) -> Registration | None:
    """'<n>,<stat>[,lac,ci[,act]]' when solicited; '<stat>[,lac,ci[,act]]' as a URC."""
    fields = [f.strip().strip('"') for f in payload.split(",")]
    if solicited:
        fields = fields[1:]
    try:
        status = int(fields[0])
    except (ValueError, IndexError):
        return None
    act: int | None = None
    if len(fields) >= 4:
        with contextlib.suppress(ValueError):
            act = int(fields[3])
    return Registration(
        status=status,
        lac=fields[1] if len(fields) > 1 else "",
        cell=fields[2] if len(fields) > 2 else "",
        act=act,
    )


def _stored(memory: str, index: int, status: int | None, pdu: str) -> StoredSms:
    try:
        message: Deliver | Submit | StatusReport | None = decode_pdu(pdu)
    except PduError as exc:
        return StoredSms(memory=memory, index=index, status=status, pdu=pdu, message=None, error=str(exc))
    return StoredSms(memory=memory, index=index, status=status, pdu=pdu, message=message)


# Shortest national significant number we trust for suffix matching (short codes excluded).
_MIN_SUFFIX_DIGITS = 6


def same_subscriber(a: str, b: str) -> bool:
    """Whether two numbers name the same subscriber, whatever their format.

    Status reports give the recipient as the network chose: '+4915112345678',
    '4915112345678', '015112345678' (TOA 0x81/0xA1). Without knowing the country
    code, compare the national significant numbers: strip '+', and a leading
    trunk '0' or international '00', then one must end with the other.
    """
    da, db = _significant(a), _significant(b)
    if not da or not db:
        return a == b
    if da == db:
        return True
    short, long_ = sorted((da, db), key=len)
    return len(short) >= _MIN_SUFFIX_DIGITS and long_.endswith(short)


def _significant(number: str) -> str:
    digits = "".join(c for c in number if c.isdigit())
    if number.startswith("+"):
        return digits
    if digits.startswith("00"):
        return digits[2:]
    return digits.removeprefix("0")
