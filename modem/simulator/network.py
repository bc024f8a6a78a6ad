"""The simulated cellular network behind the fake modem: an SMSC, phones, policies and a log.

The network accepts SMS-SUBMITs from the modem's SIM, reassembles concatenated parts by
(sender SIM, destination, reference) into one message in the destination phone's inbox,
and answers with SMS-STATUS-REPORTs according to a `Policy` (global or per destination):
delivered, "still trying" then final, permanent failure, duplicated, reordered, lost, late,
and with the recipient written back in national format as real networks do.

It also builds inbound SMS-DELIVER parts for `Simulator.inject` and keeps what the modem
could not take (storage full, modem unplugged) until the modem can take it again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal

from modem.pdu import (
    Address,
    Concat,
    Deliver,
    Encoding,
    StatusReport,
    Submit,
    join_user_data,
    segment_text,
)

Order = Literal["in", "reverse", "shuffle"]
RecipientFormat = Literal["international", "national", "unknown"]

# Shorthands for set_policy(outcome=...): the TP-Status values are TS 23.040 9.2.3.15.
OUTCOMES: dict[str, dict[str, Any]] = {
    "delivered": {"status": 0x00, "intermediate": None, "lose": False},
    "pending": {"status": 0x00, "intermediate": 0x30},  # SC-specific "still trying", then delivered
    "fail": {"status": 0x41, "intermediate": None},  # incompatible destination: permanent
    "expired": {"status": 0x46, "intermediate": 0x30},  # still trying, then validity period expired
    "gave_up": {"status": 0x62, "intermediate": 0x22},  # no response from SME, then SC stopped trying
    "lost": {"lose": True},
}


@dataclass
class Policy:
    """How the network treats submits to one destination (or to all, as the default)."""

    status: int = 0x00  # final TP-Status of the report
    intermediate: int | None = None  # a 0x20..0x3F report sent before the final one
    intermediate_gap_s: float = 0.0  # time between the intermediate and the final report
    duplicates: int = 0  # extra copies of every report
    order: Order = "in"  # order of the reports of a multipart message
    lose: bool = False  # no report at all
    delay_s: float | None = None  # None: the network's report_delay_s
    recipient_format: RecipientFormat = "international"  # how the report writes the recipient back
    submit_error: int | None = None  # +CMS ERROR for every submit to this destination
    other_smsc: str | None = None  # the report comes from this SMSC instead

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PartRecord:
    """One received part of a message, as it arrived."""

    mr: int | None
    seq: int
    total: int
    ref: int | None
    text: str
    received_at: datetime


@dataclass
class InboxMessage:
    """A message as the destination phone shows it: parts already joined."""

    sender: str
    text: str
    encoding: str
    parts: int
    received_at: datetime
    records: list[PartRecord] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sender": self.sender,
            "text": self.text,
            "encoding": self.encoding,
            "parts": self.parts,
            "received_at": self.received_at.isoformat(),
            "records": [
                {"mr": r.mr, "seq": r.seq, "total": r.total, "ref": r.ref, "text": r.text}
                for r in self.records
            ],
        }


@dataclass
class Phone:
    """A handset on the simulated network, keyed by its E.164 number."""

    number: str
    inbox: list[InboxMessage] = field(default_factory=list)

    def texts(self) -> list[str]:
        return [m.text for m in self.inbox]


@dataclass
class NetworkEvent:
    """One line of the network log."""

    time: datetime
    kind: str  # submit | submit_rejected | report | report_lost | inject | held | retransmit | ussd
    number: str
    mr: int | None = None
    text: str | None = None
    encoding: str | None = None
    result: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(),
            "kind": self.kind,
            "number": self.number,
            "mr": self.mr,
            "text": self.text,
            "encoding": self.encoding,
            "result": self.result,
        }


class SubmitRejected(Exception):
    """The network refused a submit; the modem answers +CMS ERROR: code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"+CMS ERROR: {code}")
        self.code = code


@dataclass
class _Group:
    """Parts of one concatenated submit, waiting for the rest."""

    parts: dict[int, tuple[Submit, int, datetime]] = field(default_factory=dict)
    reports: list[tuple[int, StatusReport, Policy, datetime]] = field(default_factory=list)
    done: bool = False


def encoding_name(encoding: Encoding) -> str:
    """'gsm7' / 'ucs2' / '8bit'."""
    return Encoding(encoding).value


def encoding_from_name(name: str | None) -> Encoding | None:
    """The codec's Encoding for 'gsm7'/'ucs2'/'8bit'; None lets the codec choose."""
    if name is None:
        return None
    try:
        return Encoding(name.lower())
    except ValueError:
        raise ValueError(f"unknown encoding {name!r}: use gsm7, ucs2 or 8bit") from None


class Network:
    """SMSC plus phones. Reports and inbound parts leave through `report_sink`/the simulator."""

    def __init__(
        self,
        *,
        smsc: str = "+491710760000",
        country_code: str = "49",
        report_delay_s: float = 3.0,
        report_jitter_s: float = 1.5,
        tz: tzinfo = UTC,
        seed: int | None = None,
    ) -> None:
        self.smsc = smsc
        self.country_code = country_code
        self.report_delay_s = report_delay_s
        self.report_jitter_s = report_jitter_s
        self.tz = tz
        self.phones: dict[str, Phone] = {}
        self.log: list[NetworkEvent] = []
        self.default_policy = Policy()
        self.policies: dict[str, Policy] = {}
        self.report_sink: Callable[[StatusReport], object] | None = None
        self.on_event: Callable[[], None] | None = None  # called after every log entry
        self._random = random.Random(seed)  # noqa: S311 - simulated behaviour, not secrets
        self._groups: dict[tuple[str, str, int], _Group] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._next_ref = self._random.randrange(256)
        self._changed = asyncio.Event() if _has_loop() else None

    def __repr__(self) -> str:
        return f"Network(smsc={self.smsc!r}, phones={len(self.phones)}, log={len(self.log)})"

    # -- phones and policies -------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(self.tz).replace(microsecond=0)

    def phone(self, number: str) -> Phone:
        """The phone with this number, created on first use (numbers are normalised to E.164)."""
        key = self.normalise(number)
        if key not in self.phones:
            self.phones[key] = Phone(key)
        return self.phones[key]

    def set_policy(self, number: str | None = None, outcome: str | None = None, **fields: Any) -> Policy:
        """Set how submits to `number` (None: every number without its own policy) are treated."""
        base = self.default_policy if number is None else self.policy_for(number)
        changes: dict[str, Any] = {}
        if outcome is not None:
            if outcome not in OUTCOMES:
                raise ValueError(f"unknown outcome {outcome!r}: one of {', '.join(OUTCOMES)}")
            changes.update(OUTCOMES[outcome])
        changes.update(fields)
        policy = dataclasses.replace(base, **changes)
        if number is None:
            self.default_policy = policy
        else:
            self.policies[self.normalise(number)] = policy
        return policy

    def policy_for(self, number: str) -> Policy:
        return self.policies.get(self.normalise(number), self.default_policy)

    def normalise(self, number: str) -> str:
        """E.164 with '+' for international and national numbers; anything else unchanged."""
        digits = number.strip()
        if digits.startswith("+"):
            return digits
        if digits.startswith("00") and digits[2:].isdigit():
            return "+" + digits[2:]
        if digits.startswith("0") and digits.isdigit():
            return "+" + self.country_code + digits[1:]
        if digits.isdigit() and len(digits) > 7:
            return "+" + digits
        return digits

    def national(self, number: str) -> str:
        """+4915112345678 -> 015112345678 (what some networks write into reports)."""
        e164 = self.normalise(number)
        prefix = "+" + self.country_code
        return "0" + e164[len(prefix) :] if e164.startswith(prefix) else e164.lstrip("+")

    def record(self, kind: str, number: str, **fields: Any) -> NetworkEvent:
        event = NetworkEvent(time=datetime.now(self.tz), kind=kind, number=number, **fields)
        self.log.append(event)
        self._notify()
        return event

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Wait until predicate() holds; the network wakes waiters on every log entry."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                if self._changed is None:
                    self._changed = asyncio.Event()
                self._changed.clear()
                await self._changed.wait()

    # -- outbound: submits and status reports ----------------------------------------------

    def accept(self, sender: str, submit: Submit, mr: int) -> None:
        """Take one SUBMIT from the SIM `sender`; raises SubmitRejected per policy."""
        destination = self.normalise(_address_text(submit.destination))
        policy = self.policy_for(destination)
        text = submit.text or ""
        encoding = encoding_name(submit.encoding)
        if policy.submit_error is not None:
            self.record(
                "submit_rejected",
                destination,
                mr=mr,
                text=text,
                encoding=encoding,
                result=f"+CMS ERROR: {policy.submit_error}",
            )
            raise SubmitRejected(policy.submit_error)
        received_at = self.now()
        concat = submit.concat
        part = f" part {concat.seq}/{concat.total} ref {concat.ref}" if concat else ""
        self.record("submit", destination, mr=mr, text=text, encoding=encoding, result="accepted" + part)
        success = policy.status < 0x20
        if concat is None or concat.total <= 1:
            if success:
                self._deliver_to_phone(sender, destination, [(submit, mr, received_at)])
            if submit.status_report_request:
                self._schedule_reports([(mr, submit, received_at)], policy)
            return
        key = (sender, destination, concat.ref)
        group = self._groups.setdefault(key, _Group())
        if group.done:  # a new message reusing the reference
            group = self._groups[key] = _Group()
        group.parts[concat.seq] = (submit, mr, received_at)
        hold = policy.order != "in"
        if submit.status_report_request and not hold:
            self._schedule_reports([(mr, submit, received_at)], policy)
        if len(group.parts) < concat.total:
            return
        group.done = True
        ordered = [group.parts[seq] for seq in sorted(group.parts)]
        if success:
            self._deliver_to_phone(sender, destination, ordered)
        if hold:
            wanted = [(m, s, t) for s, m, t in ordered if s.status_report_request]
            if policy.order == "reverse":
                wanted.reverse()
            else:
                self._random.shuffle(wanted)
            self._schedule_reports(wanted, policy)
        del self._groups[key]

    def _deliver_to_phone(
        self, sender: str, destination: str, parts: list[tuple[Submit, int, datetime]]
    ) -> None:
        submits = [p[0] for p in parts]
        # Senders split surrogate pairs across parts: the codec joins the raw user data first.
        text = join_user_data(submits)
        records = [
            PartRecord(
                mr=mr,
                seq=s.concat.seq if s.concat else 1,
                total=s.concat.total if s.concat else 1,
                ref=s.concat.ref if s.concat else None,
                text=s.text or "",
                received_at=t,
            )
            for s, mr, t in parts
        ]
        message = InboxMessage(
            sender=sender,
            text=text,
            encoding=encoding_name(submits[0].encoding),
            parts=len(parts),
            received_at=parts[-1][2],
            records=records,
        )
        self.phone(destination).inbox.append(message)
        self.record(
            "delivered", destination, text=text, encoding=message.encoding, result=f"{len(parts)} part(s)"
        )

    def _schedule_reports(self, items: list[tuple[int, Submit, datetime]], policy: Policy) -> None:
        base_delay = self.report_delay_s if policy.delay_s is None else policy.delay_s
        offset = 0.0
        for mr, submit, received_at in items:
            destination = self.normalise(_address_text(submit.destination))
            if policy.lose:
                self.record("report_lost", destination, mr=mr, result="no report (policy: lose)")
                continue
            jitter = self._random.uniform(0, self.report_jitter_s) if self.report_jitter_s > 0 else 0.0
            delay = max(base_delay + jitter, offset)
            offset = delay  # keeps the chosen order even with jitter
            statuses: list[tuple[float, int]] = []
            if policy.intermediate is not None:
                statuses.append((delay, policy.intermediate))
                delay += policy.intermediate_gap_s
            statuses.append((delay, policy.status))
            for when, status in statuses:
                report = StatusReport(
                    mr=mr,
                    recipient=self._report_recipient(destination, policy),
                    scts=received_at,
                    discharge_time=received_at + timedelta(seconds=round(when)),
                    status=status,
                    smsc=Address.parse(policy.other_smsc or self.smsc),
                )
                for _copy in range(1 + policy.duplicates):
                    self._later(when, report, destination)

    def _report_recipient(self, destination: str, policy: Policy) -> Address:
        if policy.recipient_format == "international" or not destination.startswith("+"):
            return Address.parse(destination)
        # TOA 0xA1 (national) or 0x81 (unknown), as in the vectors of modem-behaviour.md 4.
        ton = 2 if policy.recipient_format == "national" else 0
        return Address(self.national(destination), ton, 1)

    def _later(self, delay_s: float, report: StatusReport, destination: str) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self.record("report", destination, mr=report.mr, result=f"status 0x{report.status:02X}")
            if self.report_sink is not None:
                self.report_sink(report)

        handle = loop.call_later(max(delay_s, 0.0), fire)
        self._timers.add(handle)

    # -- inbound -----------------------------------------------------------------------

    def next_reference(self, bits: int) -> int:
        self._next_ref = (self._next_ref + 1) % (1 << bits)
        return self._next_ref

    def build_delivers(
        self,
        sender: str,
        text: str,
        *,
        encoding: str | None = None,
        concat_bits: int = 8,
        smsc: str | list[str] | None = None,
        scts: datetime | None = None,
        ref: int | None = None,
    ) -> list[Deliver]:
        """The SMS-DELIVER parts a network would send for this text (codec segmentation).

        `ref` forces the concatenation reference (e.g. two senders' phones, or an 8-bit and a
        16-bit message, that happen to use the same number); by default the next one is taken.
        """
        chosen, texts = _segments(text, encoding_from_name(encoding), concat_bits)
        total = len(texts)
        if ref is not None and not 0 <= ref < 1 << concat_bits:
            raise ValueError(f"ref {ref} does not fit a {concat_bits}-bit concatenation reference")
        if total <= 1:
            ref = 0
        elif ref is None:
            ref = self.next_reference(concat_bits)
        when = scts or self.now()
        smscs = smsc if isinstance(smsc, list) else [smsc or self.smsc]
        parts: list[Deliver] = []
        for seq, part in enumerate(texts, start=1):
            concat = Concat(ref, total, seq, ref_bits=concat_bits) if total > 1 else None
            parts.append(
                Deliver(
                    sender=Address.parse(sender),
                    scts=when,
                    text=part,
                    encoding=chosen,
                    concat=concat,
                    smsc=Address.parse(smscs[(seq - 1) % len(smscs)]),
                )
            )
        return parts

    def close(self) -> None:
        """Cancel every report still in flight."""
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
        if self.on_event is not None:
            self.on_event()


def _segments(text: str, forced: Encoding | None, concat_bits: int) -> tuple[Encoding, tuple[str, ...]]:
    """The codec's segmentation, for a forced alphabet and 8- or 16-bit references."""
    seg = segment_text(text, encoding=forced, concat_bits=concat_bits)
    return seg.encoding, seg.parts


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _address_text(address: Address) -> str:
    """'+49…' for international numbers, the digits or name otherwise."""
    number = address.number
    if address.ton == 1 and not number.startswith("+"):
        return "+" + number
    return number
