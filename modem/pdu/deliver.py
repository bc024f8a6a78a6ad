"""SMS-DELIVER (TS 23.040 9.2.2.1): what the modem shows in +CMT, +CMGR and +CMGL."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from modem.errors import PduError
from modem.pdu.address import Address
from modem.pdu.fields import Reader, TpduFraming, check_octet, encode_timestamp, read_timestamp
from modem.pdu.udh import (
    Concat,
    Encoding,
    InformationElement,
    coerce_dcs,
    dcs_encoding,
    dcs_reserved,
    decode_user_data,
    encode_user_data,
    join_concat,
    pid_reserved,
    split_concat,
    text_to_units,
    units_to_text,
)

MTI_DELIVER = 0x00
MTI_RESERVED = 0x03  # 9.2.3.1: an MS processes it as an SMS-DELIVER


@dataclass(frozen=True)
class Deliver(TpduFraming):
    """An SMS-DELIVER. `user_data` is the raw data after the UDH (GSM-7 codes, UTF-16BE or 8-bit octets).

    Give `text` or `user_data`; the other is derived. When both are given, `encode()` uses `user_data`.
    A decoded `scts` is None when its digits were unreadable, naive when only its zone was.
    """

    sender: Address
    scts: datetime.datetime | None  # aware (9.2.3.11); see above for decoded oddities
    text: str = ""
    encoding: Encoding = Encoding.GSM7
    user_data: bytes = b""
    concat: Concat | None = None
    extra_ies: tuple[InformationElement, ...] = ()
    pid: int = 0
    dcs: int = 0  # replaced by the plain TP-DCS of `encoding` when it selects another alphabet
    # True when TP-MMS is 0: 9.2.3.2 TP-MMS=0 means "more messages are waiting in the SC".
    more_messages: bool = False
    status_report_indication: bool = False
    smsc: Address | None = None
    reply_path: bool = False
    # Fields read as unknown when decoding (modem.pdu.tolerance); not part of the message.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dcs", coerce_dcs(self.dcs, self.encoding))
        check_octet(self.pid, "TP-PID")
        if self.encoding is Encoding.GSM7 and any(code > 0x7F for code in self.user_data):
            raise PduError("GSM-7 user data holds septet codes 0..127")
        if self.text and not self.user_data:
            object.__setattr__(self, "user_data", text_to_units(self.text, self.encoding))
        elif self.user_data and not self.text:
            object.__setattr__(self, "text", units_to_text(self.user_data, self.encoding))

    @property
    def first_octet(self) -> int:
        """TP-MTI, TP-MMS, TP-SRI, TP-UDHI, TP-RP (9.2.2.1)."""
        udhi = self.concat is not None or bool(self.extra_ies)
        return (
            MTI_DELIVER
            | (0 if self.more_messages else 0x04)
            | (0x20 if self.status_report_indication else 0)
            | (0x40 if udhi else 0)
            | (0x80 if self.reply_path else 0)
        )

    def encode_tpdu(self) -> bytes:
        """The TPDU alone (no SMSC field)."""
        out = bytearray((self.first_octet,))
        out += self.sender.encode_tp()
        out += bytes((self.pid, self.dcs))
        out += encode_timestamp(self.scts)
        _udhi, ud = encode_user_data(self.user_data, self.encoding, join_concat(self.concat, self.extra_ies))
        return bytes(out + ud)

    @classmethod
    def read(cls, reader: Reader, smsc: Address | None) -> Deliver:
        """Parse the TPDU at the reader's position."""
        first = reader.octet("first octet")
        if first & 0x03 == MTI_RESERVED:
            reader.warn("TP-MTI 3 is reserved: read as an SMS-DELIVER (TS 23.040 9.2.3.1)")
        elif first & 0x03 != MTI_DELIVER:
            raise PduError(f"TP-MTI {first & 0x03} is not SMS-DELIVER")
        sender = Address.decode_tp(reader)
        pid = reader.octet("TP-PID")
        dcs = reader.octet("TP-DCS")
        scts = read_timestamp(reader, "TP-SCTS")
        for reserved in (pid_reserved(pid), dcs_reserved(dcs)):
            if reserved:
                reader.warn(reserved)
        encoding = dcs_encoding(dcs)
        ies, units = decode_user_data(reader, encoding, bool(first & 0x40))
        concat, extra = split_concat(ies)
        return cls(
            sender=sender,
            scts=scts,
            text=units_to_text(units, encoding),
            encoding=encoding,
            user_data=units,
            concat=concat,
            extra_ies=extra,
            pid=pid,
            dcs=dcs,
            more_messages=not first & 0x04,
            status_report_indication=bool(first & 0x20),
            smsc=smsc,
            reply_path=bool(first & 0x80),
            warnings=reader.warnings_tuple(),
        )
