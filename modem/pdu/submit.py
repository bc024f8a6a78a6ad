"""SMS-SUBMIT (TS 23.040 9.2.2.2): what we hand the modem after AT+CMGS=<n>."""

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

MTI_SUBMIT = 0x01
# 9.2.3.3 TP-VPF (bits 4..3 of the first octet)
VPF_NONE, VPF_ENHANCED, VPF_RELATIVE, VPF_ABSOLUTE = 0, 1, 2, 3


@dataclass(frozen=True)
class Submit(TpduFraming):
    """An SMS-SUBMIT; `encode()` gives SMSC field + TPDU, `tpdu_length` the <n> of AT+CMGS."""

    destination: Address
    text: str = ""  # GSM7 / UCS2
    encoding: Encoding = Encoding.GSM7
    data: bytes = b""  # EIGHT_BIT
    concat: Concat | None = None
    extra_ies: tuple[InformationElement, ...] = ()
    mr: int = 0
    status_report_request: bool = True
    reject_duplicates: bool = False
    validity_relative: int | None = None  # TP-VP relative octet (9.2.3.12.1)
    pid: int = 0
    smsc: Address | None = None  # None: SMSC field "00", the SIM's SMSC
    # Beyond the agreed interface, so decoded PDUs re-encode to the same octets:
    dcs: int = 0  # replaced by the plain TP-DCS of `encoding` when it selects another alphabet
    reply_path: bool = False
    validity_absolute: datetime.datetime | None = None  # TP-VPF 11 (9.2.3.12.2)
    validity_enhanced: bytes | None = None  # TP-VPF 01, the raw 7 octets (9.2.3.12.3)
    # Fields read as unknown when decoding (modem.pdu.tolerance); not part of the message.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dcs", coerce_dcs(self.dcs, self.encoding))
        for value, what in ((self.mr, "TP-MR"), (self.pid, "TP-PID")):
            check_octet(value, what)
        if self.validity_relative is not None:
            check_octet(self.validity_relative, "TP-VP")
        given = [
            v
            for v in (self.validity_relative, self.validity_absolute, self.validity_enhanced)
            if v is not None
        ]
        if len(given) > 1:
            raise PduError("give at most one validity period (relative, absolute or enhanced)")
        if self.validity_enhanced is not None and len(self.validity_enhanced) != 7:
            raise PduError("an enhanced validity period is 7 octets")
        if self.encoding is Encoding.EIGHT_BIT and self.text:
            raise PduError("an 8-bit SMS-SUBMIT carries `data`, not `text`")
        _ = self.user_data  # fail now, not at send time, on text the alphabet cannot carry

    @property
    def user_data(self) -> bytes:
        """Raw user data after the header: GSM-7 codes, UTF-16BE octets, or the 8-bit data."""
        if self.encoding is Encoding.EIGHT_BIT:
            return self.data
        return text_to_units(self.text, self.encoding)

    @property
    def first_octet(self) -> int:
        """TP-MTI, TP-RD, TP-VPF, TP-SRR, TP-UDHI, TP-RP (9.2.2.2)."""
        if self.validity_relative is not None:
            vpf = VPF_RELATIVE
        elif self.validity_absolute is not None:
            vpf = VPF_ABSOLUTE
        elif self.validity_enhanced is not None:
            vpf = VPF_ENHANCED
        else:
            vpf = VPF_NONE
        udhi = self.concat is not None or bool(self.extra_ies)
        return (
            MTI_SUBMIT
            | (0x04 if self.reject_duplicates else 0)
            | vpf << 3
            | (0x20 if self.status_report_request else 0)
            | (0x40 if udhi else 0)
            | (0x80 if self.reply_path else 0)
        )

    def encode_tpdu(self) -> bytes:
        """The TPDU alone (no SMSC field)."""
        out = bytearray((self.first_octet, self.mr))
        out += self.destination.encode_tp()
        out += bytes((self.pid, self.dcs))
        if self.validity_relative is not None:
            out.append(self.validity_relative)
        elif self.validity_absolute is not None:
            out += encode_timestamp(self.validity_absolute)
        elif self.validity_enhanced is not None:
            out += self.validity_enhanced
        _udhi, ud = encode_user_data(self.user_data, self.encoding, join_concat(self.concat, self.extra_ies))
        return bytes(out + ud)

    @classmethod
    def read(cls, reader: Reader, smsc: Address | None) -> Submit:
        """Parse the TPDU at the reader's position."""
        first = reader.octet("first octet")
        if first & 0x03 != MTI_SUBMIT:
            raise PduError(f"TP-MTI {first & 0x03} is not SMS-SUBMIT")
        mr = reader.octet("TP-MR")
        destination = Address.decode_tp(reader)
        pid = reader.octet("TP-PID")
        dcs = reader.octet("TP-DCS")
        vpf = (first >> 3) & 0x03
        relative = absolute = enhanced = None
        if vpf == VPF_RELATIVE:
            relative = reader.octet("TP-VP")
        elif vpf == VPF_ABSOLUTE:
            # An unreadable absolute validity period is dropped (the SC's default applies).
            absolute = read_timestamp(reader, "TP-VP")
        elif vpf == VPF_ENHANCED:
            enhanced = reader.take(7, "TP-VP")
        for reserved in (pid_reserved(pid), dcs_reserved(dcs)):
            if reserved:
                reader.warn(reserved)
        encoding = dcs_encoding(dcs)
        ies, units = decode_user_data(reader, encoding, bool(first & 0x40))
        concat, extra = split_concat(ies)
        return cls(
            destination=destination,
            text="" if encoding is Encoding.EIGHT_BIT else units_to_text(units, encoding),
            encoding=encoding,
            data=units if encoding is Encoding.EIGHT_BIT else b"",
            concat=concat,
            extra_ies=extra,
            mr=mr,
            status_report_request=bool(first & 0x20),
            reject_duplicates=bool(first & 0x04),
            validity_relative=relative,
            pid=pid,
            smsc=smsc,
            dcs=dcs,
            reply_path=bool(first & 0x80),
            validity_absolute=absolute,
            validity_enhanced=enhanced,
            warnings=reader.warnings_tuple(),
        )
