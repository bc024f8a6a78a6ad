"""SMS operations of a `Modem`: submit, read/list/delete stored messages, sweeps, reports.

`SmsOperations` is the half of `modem.modem.Modem` that moves messages; the modem's own
half (port, lifecycle, initialisation, URC routing) lives in `modem.modem`.

Stored SMS are deleted only after the caller's callback returned (its content committed
elsewhere); routed +CMT/+CDS are acknowledged (AT+CNMA) only then, refused otherwise so the
network re-sends. A submit silent past a deadline learnt from this modem's recent submits
(`modem.liveness`) gets the modem probed (`modem.at`): a frozen modem that answers again ends
the submit at once as `SubmitLost` (possibly sent), a busy one answers the submit first.
`stalled_since` tells the daemon it is waiting on the modem, not stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from modem import profiles
from modem.answers import parse_cmgl_header, parse_cmgr_header, split_fields, with_smsc_field
from modem.at import PROBE_EVERY_S, AtEngine, Liveness, Response, Urc
from modem.errors import AtError, AtTimeout, CallbackDeferred, CmsError, ModemError, PduError, SubmitLost
from modem.liveness import SubmitTimes
from modem.pdu import Address, Deliver, StatusReport, Submit, decode_pdu, encode_submits
from modem.status import ModemInfo

_LOGGER = logging.getLogger(__name__)

# With nothing announced for this long, stored memories are swept again: an announcement
# (+CMTI/+CDSI) lost in a frozen or garbled port must not leave a report in the modem.
QUIET_SWEEP_S = 60.0
# At most this many routed messages a dead gateway never acked are refused at (re)open.
UNSEEN_ACKS_MAX = 20
# A submit silent this long (at least; more when this modem's submits are slow) gets the modem probed.
SUBMIT_FLOOR_S = 10.0


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
class Announced:
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


class SmsOperations:
    """Moving messages through a modem; mixed into `Modem`, which provides the AT channel."""

    # Provided by `Modem`: the port's AT channel and what it learnt of the modem.
    url: str
    info: ModemInfo
    profile: profiles.Profile
    ready: asyncio.Event
    _engine: AtEngine
    _command_timeout_s: float
    _timeouts: int

    if TYPE_CHECKING:

        async def command(
            self, cmd: str, *, timeout_s: float | None = None, prefix: str | None = None
        ) -> Response: ...

        def _note_timeout(self) -> None: ...

    def __init__(
        self,
        *,
        on_deliver: DeliverCallback | None,
        on_status_report: ReportCallback | None,
        on_undecodable: UndecodableCallback | None,
        submit_timeout_s: float | None,
        submit_floor_s: float,
    ) -> None:
        self._on_deliver = on_deliver
        self._on_status_report = on_status_report
        self._on_undecodable = on_undecodable
        self._deferring = False  # a callback deferred (said once) and none has taken a message since
        self._submit_timeout_s = submit_timeout_s
        self.submit_times = SubmitTimes(submit_floor_s, submit_timeout_s or profiles.GENERIC.submit_timeout_s)
        # Monotonic time a submit went silent past its deadline (the modem is being probed), else None.
        self.stalled_since: float | None = None
        self._inbox: asyncio.Queue[Announced] = asyncio.Queue()
        self._memory = ""  # current <mem1> of CPMS
        # One reader of stored memories at a time: CPMS then CMGR/CMGD must not interleave.
        self._storage_lock = asyncio.Lock()
        # Routed +CMT/+CDS are committed and acked in arrival order: AT+CNMA acks the oldest.
        self._routed_lock = asyncio.Lock()
        self._acknowledge = False  # AT+CSMS=1 took: every routed +CMT/+CDS needs AT+CNMA
        self._cnmi_off = False  # an ack came too late: the modem turned routing off (27.005 +CNMA)
        self._concat_ref = random.randrange(256)  # noqa: S311  (not security, spreads refs across restarts)
        self.sent_parts = 0

    # --------------------------------------------------------- stored messages
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
                header = parse_cmgl_header(line[6:])
                if header is None:
                    _LOGGER.warning("skipping malformed %r", line)
                continue
            if header is None:
                continue
            index, status, length = header
            result.append(_stored(self._memory, index, status, with_smsc_field(line, length)))
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
        status, length = parse_cmgr_header(header[6:])
        return _stored(self._memory, index, status, with_smsc_field(pdu, length))

    async def delete_stored(self, index: int, memory: str | None = None) -> None:
        """Delete one stored message (AT+CMGD)."""
        await self.select_memory(memory or self.profile.storage)
        await self.command(f"AT+CMGD={index}")

    # ------------------------------------------------------------------ submit
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
        mr_text = split_fields(response.first("+CMGS:"))[0]
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

    # ------------------------------------------- inbound: hand over, then delete
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

    async def _take_stored(self, item: Announced) -> None:
        async with self._storage_lock:
            await self._take_announced(item)

    async def _take_announced(self, item: Announced) -> None:
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
