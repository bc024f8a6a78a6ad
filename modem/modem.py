"""A GSM/LTE modem on one AT port: its lifecycle, initialisation, status reads and URC routing.

`Modem` owns a `Port` (kept open, reopened after unplug) and an `AtEngine`.
On every (re)open it initialises the modem (echo off, numeric errors, SIM/PIN,
PDU mode, CNMI routing, storage) and sweeps stored messages, so nothing
received while the gateway was down is lost. Codes that mean "not yet" (SIM
busy, +CME ERROR: 515) are waited out with backoff during init, said once when
the wait starts and once when it ends. Moving messages (submit, read, delete,
sweep, reports) is `modem.sms.SmsOperations`, which `Modem` mixes in.

Results are typed (`Submitted`, `StoredSms`, `Signal`, ...), never strings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Awaitable, Iterator

from modem import profiles
from modem.answers import parse_mem_index, split_fields
from modem.at import DEFAULT_TIMEOUT_S, AtEngine, Response, Urc, UrcHandler
from modem.errors import AtError, AtTimeout, CmeError, ModemError, Retry, TransportError
from modem.pdu import Deliver, StatusReport
from modem.sms import (
    SUBMIT_FLOOR_S,
    Announced,
    DeliverCallback,
    ReportCallback,
    SmsOperations,
    UndecodableCallback,
)
from modem.status import Identity, ModemInfo, ModemState, Registration, Signal, Storage, parse_registration
from modem.transport import Port

_LOGGER = logging.getLogger(__name__)

# Consecutive command timeouts after which the port is closed and reopened (reset path).
TIMEOUTS_BEFORE_REOPEN = 2
# After AT+CFUN=1,1, how long a USB modem may take to drop off the bus before we reopen ourselves.
RESET_SETTLE_S = 5.0
# SIM busy right after boot or PIN entry: AT+CPIN? alone waits this long (ZTE needs ~2 s steps).
SIM_BUSY_WAIT_S = 10.0
# Wait-and-retry codes (SIM busy, +CME ERROR: 515 "init in progress"): the modem says "not yet".
# Retried at 0.5 s doubling to 5 s (with jitter): a few commands a minute, ready soon after it is.
WAIT_RETRY_MIN_S = 0.5
WAIT_RETRY_MAX_S = 5.0
# Initialisation waits this long on such codes; then it fails and the port keeper's backoff takes over.
INIT_PATIENCE_S = 120.0


class Modem(SmsOperations):
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
        super().__init__(
            on_deliver=on_deliver,
            on_status_report=on_status_report,
            on_undecodable=on_undecodable,
            submit_timeout_s=submit_timeout_s,
            submit_floor_s=submit_floor_s,
        )
        self.url = url
        self.pin = pin
        self.info = ModemInfo()
        self.state = ModemState.DISCONNECTED
        self.ready = asyncio.Event()
        self._command_timeout_s = command_timeout_s
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
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._timeouts = 0

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

    def on_urc(self, prefix: str, handler: UrcHandler) -> None:
        """Route unsolicited lines starting with prefix to handler too (USSD's +CUSD: modem/ussd.py)."""
        self._engine.on_urc(prefix, handler)

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

    # ------------------------------------------------------------ status reads
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
            reg = parse_registration(payload[0], solicited=True)
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
            fields = split_fields(payload[0])
            if len(fields) >= 3:
                name = fields[2]
        self.info.operator = name
        return name

    async def read_signal(self) -> Signal:
        """Received signal strength (AT+CSQ)."""
        fields = split_fields((await self.command("AT+CSQ")).first("+CSQ:"))
        signal = Signal(rssi=int(fields[0]), ber=int(fields[1]) if len(fields) > 1 and fields[1] else 99)
        self.info.signal = signal
        return signal

    async def read_storage(self) -> Storage:
        """Use of the receive memory (AT+CPMS?)."""
        payload = (await self.command("AT+CPMS?")).first("+CPMS:")
        fields = split_fields(payload)
        storage = Storage(memory=fields[0], used=int(fields[1]), total=int(fields[2]))
        self.info.storage = storage
        return storage

    # ---------------------------------------------------------------- internals
    def _data(self, data: bytes) -> None:
        self._engine.data_received(data)

    def _lost(self, reason: Exception | None) -> None:
        self._engine.connection_lost(reason)
        self._memory = ""
        self.info.reopens = self._port.reopens
        self._set_state(ModemState.DISCONNECTED)

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

    # --------------------------------------------------------------------- URCs
    def _urc_cmti(self, urc: Urc) -> None:
        mem, index = parse_mem_index(urc.line)
        if index is not None:
            self._inbox.put_nowait(Announced(mem or self.profile.storage, index))

    def _urc_cdsi(self, urc: Urc) -> None:
        mem, index = parse_mem_index(urc.line)
        if index is None:
            return
        if self.profile.cdsi_memory_trusted and mem:
            self._inbox.put_nowait(Announced(mem, index, report=True))
        else:
            # The model names the wrong memory: read where it really keeps reports.
            self._inbox.put_nowait(Announced(self.profile.report_memory, index, report=True, announced=mem))

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
        reg = parse_registration(urc.line.split(":", 1)[1], solicited=False)
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
