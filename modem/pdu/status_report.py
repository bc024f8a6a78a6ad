"""SMS-STATUS-REPORT (TS 23.040 9.2.2.3) and TP-Status (9.2.3.15)."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field, replace

from modem.errors import PduError
from modem.pdu.address import Address
from modem.pdu.fields import (
    Reader,
    TpduFraming,
    check_octet,
    describe_rest,
    encode_timestamp,
    read_timestamp,
)
from modem.pdu.udh import (
    Encoding,
    InformationElement,
    dcs_encoding,
    dcs_reserved,
    decode_user_data,
    encode_user_data,
    text_to_units,
    units_to_text,
)

MTI_STATUS_REPORT = 0x02
# 9.2.3.27 TP-PI bits
PI_PID, PI_DCS, PI_UDL, PI_EXTENSION = 0x01, 0x02, 0x04, 0x80
PI_RESERVED = 0x78  # bits 3..6: "the receiving entity shall ignore" them (9.2.3.27)


class StatusCategory(enum.StrEnum):
    """The four TP-ST classes of 9.2.3.15, plus the reserved upper half."""

    COMPLETED = "completed"  # 0x00-0x1F: transaction completed (delivered or as good as)
    TRYING = "trying"  # 0x20-0x3F: temporary error, SC still trying (not final)
    PERMANENT = "permanent"  # 0x40-0x5F: permanent error, SC is not making more attempts
    GAVE_UP = "gave_up"  # 0x60-0x7F: temporary error, SC is not making more attempts
    RESERVED = "reserved"  # >= 0x80: treated as a final failure


_MEANINGS: dict[int, str] = {
    0x00: "received by the SME (delivered)",
    0x01: "forwarded to the SME, delivery not confirmed",
    0x02: "replaced by the SC",
    0x20: "congestion",
    0x21: "SME busy",
    0x22: "no response from SME",
    0x23: "service rejected",
    0x24: "quality of service not available",
    0x25: "error in SME",
    0x40: "remote procedure error",
    0x41: "incompatible destination",
    0x42: "connection rejected by SME",
    0x43: "not obtainable",
    0x44: "quality of service not available",
    0x45: "no interworking available",
    0x46: "SM validity period expired",
    0x47: "SM deleted by originating SME",
    0x48: "SM deleted by SC administration",
    0x49: "SM does not exist",
    0x60: "congestion",
    0x61: "SME busy",
    0x62: "no response from SME",
    0x63: "service rejected",
    0x64: "quality of service not available",
    0x65: "error in SME",
}


class TpStatus(int):
    """A TP-ST value (9.2.3.15) with its class, finality and meaning."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"TpStatus(0x{int(self):02X})"

    @property
    def category(self) -> StatusCategory:
        """The 9.2.3.15 class of this value."""
        if self >= 0x80 or self < 0:
            return StatusCategory.RESERVED
        return (
            StatusCategory.COMPLETED,
            StatusCategory.TRYING,
            StatusCategory.PERMANENT,
            StatusCategory.GAVE_UP,
        )[self >> 5]

    @property
    def is_final(self) -> bool:
        """False only while the SC is still trying (0x20-0x3F)."""
        return self.category is not StatusCategory.TRYING

    @property
    def is_success(self) -> bool:
        """True for the completed class 0x00-0x1F (reserved/SC-specific completed values included)."""
        return self.category is StatusCategory.COMPLETED

    @property
    def meaning(self) -> str:
        """A short English description."""
        if self in _MEANINGS:
            return _MEANINGS[self]
        low = int(self) & 0x1F
        kind = {
            StatusCategory.COMPLETED: "transaction completed",
            StatusCategory.TRYING: "temporary error, SC still trying",
            StatusCategory.PERMANENT: "permanent error",
            StatusCategory.GAVE_UP: "temporary error, SC stopped trying",
            StatusCategory.RESERVED: "reserved value",
        }[self.category]
        if self.category is StatusCategory.RESERVED:
            return kind
        return f"{kind} ({'SC-specific' if low >= 0x10 else 'reserved'})"


@dataclass(frozen=True)
class StatusReport(TpduFraming):
    """An SMS-STATUS-REPORT; the optional TP-PI/PID/DCS/UD tail is parsed when present.

    Matching needs TP-MR, TP-RA and TP-ST only: a decoded `scts`/`discharge_time` is None when
    its digits were unreadable and naive when only its zone was (see `warnings`).
    """

    mr: int
    recipient: Address
    scts: datetime.datetime | None
    discharge_time: datetime.datetime | None
    status: int  # TP-ST, raw
    smsc: Address | None = None
    # Beyond the agreed interface, so decoded PDUs re-encode to the same octets:
    more_messages: bool = False  # True when TP-MMS is 0 (9.2.3.2), as in Deliver
    status_report_qualifier: bool = False  # TP-SRQ: report of an SMS-COMMAND (9.2.3.26)
    parameter_indicator: int | None = None  # TP-PI when present; None and defaults below: no tail
    pid: int = 0
    dcs: int = 0
    text: str = ""
    extra_ies: tuple[InformationElement, ...] = ()
    # Fields read as unknown when decoding (modem.pdu.tolerance); not part of the report.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        for value, what in (
            (self.mr, "TP-MR"),
            (self.status, "TP-ST"),
            (self.pid, "TP-PID"),
            (self.dcs, "TP-DCS"),
        ):
            check_octet(value, what)
        if self.parameter_indicator is not None:
            check_octet(self.parameter_indicator, "TP-PI")

    @property
    def tp_status(self) -> TpStatus:
        """`status` with its class and meaning."""
        return TpStatus(self.status)

    @property
    def is_final(self) -> bool:
        """False while the SC is still trying (TP-ST 0x20-0x3F)."""
        return self.tp_status.is_final

    @property
    def is_success(self) -> bool:
        """True when the SC reports the message delivered (TP-ST 0x00-0x1F)."""
        return self.tp_status.is_success

    @property
    def encoding(self) -> Encoding:
        """Alphabet of the optional user data."""
        return dcs_encoding(self.dcs) if self._pi & PI_DCS else Encoding.GSM7

    @property
    def _pi(self) -> int:
        if self.parameter_indicator is not None:
            return self.parameter_indicator
        return (
            (PI_PID if self.pid else 0)
            | (PI_DCS if self.dcs else 0)
            | (PI_UDL if self.text or self.extra_ies else 0)
        )

    @property
    def first_octet(self) -> int:
        """TP-MTI, TP-MMS, TP-SRQ, TP-UDHI (9.2.2.3)."""
        udhi = bool(self._pi & PI_UDL and self.extra_ies)
        return (
            MTI_STATUS_REPORT
            | (0 if self.more_messages else 0x04)
            | (0x20 if self.status_report_qualifier else 0)
            | (0x40 if udhi else 0)
        )

    def encode_tpdu(self) -> bytes:
        """The TPDU alone (no SMSC field)."""
        out = bytearray((self.first_octet, self.mr))
        out += self.recipient.encode_tp()
        out += encode_timestamp(self.scts) + encode_timestamp(self.discharge_time)
        out.append(self.status)
        pi = self._pi
        if self.parameter_indicator is None and not pi:
            return bytes(out)
        # An extension bit would announce a further TP-PI octet that we do not write.
        out.append(pi & ~PI_EXTENSION)
        if pi & PI_PID:
            out.append(self.pid)
        if pi & PI_DCS:
            out.append(self.dcs)
        if pi & PI_UDL:
            encoding = self.encoding
            _udhi, ud = encode_user_data(text_to_units(self.text, encoding), encoding, self.extra_ies)
            out += ud
        return bytes(out)

    @classmethod
    def read(cls, reader: Reader, smsc: Address | None) -> StatusReport:
        """Parse the TPDU at the reader's position; a short or garbled tail after TP-ST is ignored."""
        first = reader.octet("first octet")
        if first & 0x03 != MTI_STATUS_REPORT:
            raise PduError(f"TP-MTI {first & 0x03} is not SMS-STATUS-REPORT")
        mr = reader.octet("TP-MR")
        recipient = Address.decode_tp(reader)
        scts = read_timestamp(reader, "TP-SCTS")
        discharge = read_timestamp(reader, "TP-DT")
        status = reader.octet("TP-ST")
        report = cls(
            mr=mr,
            recipient=recipient,
            scts=scts,
            discharge_time=discharge,
            status=status,
            smsc=smsc,
            more_messages=not first & 0x04,
            status_report_qualifier=bool(first & 0x20),
        )
        if reader.remaining:
            tail_at = reader.pos
            try:
                report = cls._read_tail(reader, report, udhi=bool(first & 0x40))
            except PduError as exc:
                # Modems append odd octets after TP-ST (gammu #156, Wavecom): the
                # mandatory part is what matters, so keep it.
                rest = reader.data[tail_at:]
                reader.warnings = [w for w in reader.warnings if not w.startswith("TP-PI 0x")]
                reader.warn(f"{describe_rest(rest)} after TP-ST ignored: not a TP-PI tail ({exc})")
                reader.pos = len(reader.data)
        return replace(report, warnings=reader.warnings_tuple())

    @classmethod
    def _read_tail(cls, reader: Reader, report: StatusReport, *, udhi: bool) -> StatusReport:
        pi = reader.octet("TP-PI")
        if pi & PI_RESERVED:
            reader.warn(f"TP-PI 0x{pi:02X} sets reserved bits: ignored (9.2.3.27)")
        more = pi
        while more & PI_EXTENSION:  # 9.2.3.27: bit 7 announces another TP-PI octet
            more = reader.octet("TP-PI extension")
        pid = reader.octet("TP-PID") if pi & PI_PID else 0
        dcs = reader.octet("TP-DCS") if pi & PI_DCS else 0
        text = ""
        ies: tuple[InformationElement, ...] = ()
        reserved = dcs_reserved(dcs) if pi & PI_DCS else None
        if reserved:
            reader.warn(reserved)
        if pi & PI_UDL:
            encoding = dcs_encoding(dcs) if pi & PI_DCS else Encoding.GSM7
            ies, units = decode_user_data(reader, encoding, udhi)
            text = units_to_text(units, encoding)
        return replace(report, parameter_indicator=pi, pid=pid, dcs=dcs, text=text, extra_ies=ies)
