"""User data: its header (IEs, concatenation; TS 23.040 9.2.3.24), TP-DCS and the UDL/UD codec."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from modem.errors import PduError
from modem.pdu import gsm7, ucs2
from modem.pdu.fields import Reader

IEI_CONCAT_8 = 0x00  # 9.2.3.24.1: concatenated SM, 8-bit reference
IEI_CONCAT_16 = 0x08  # 9.2.3.24.8: concatenated SM, 16-bit reference


@dataclass(frozen=True)
class InformationElement:
    """One IE of a UDH: identifier and data (at most 255 octets)."""

    iei: int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.iei <= 0xFF:
            raise PduError(f"IEI must be 0..255, not {self.iei}")
        if len(self.data) > 0xFF:
            raise PduError(f"IE data must be at most 255 octets, not {len(self.data)}")

    def encode(self) -> bytes:
        """IEI, IEDL, IED."""
        return bytes((self.iei, len(self.data))) + self.data


@dataclass(frozen=True)
class Concat:
    """Concatenation IE: reference, total parts, this part's number (1-based)."""

    ref: int
    total: int
    seq: int
    ref_bits: int = 8

    def __post_init__(self) -> None:
        if self.ref_bits not in (8, 16):
            raise PduError(f"concatenation reference is 8 or 16 bits, not {self.ref_bits}")
        if not 0 <= self.ref < 1 << self.ref_bits:
            raise PduError(f"concatenation reference {self.ref} does not fit {self.ref_bits} bits")
        if not 1 <= self.total <= 0xFF:
            raise PduError(f"concatenation total must be 1..255, not {self.total}")
        if not 1 <= self.seq <= self.total:
            raise PduError(f"concatenation sequence {self.seq} is outside 1..{self.total}")

    def to_ie(self) -> InformationElement:
        """The IE carrying this concatenation header."""
        if self.ref_bits == 16:
            return InformationElement(
                IEI_CONCAT_16, bytes((self.ref >> 8, self.ref & 0xFF, self.total, self.seq))
            )
        return InformationElement(IEI_CONCAT_8, bytes((self.ref, self.total, self.seq)))

    @classmethod
    def from_ie(cls, ie: InformationElement) -> Concat | None:
        """The concatenation header in `ie`, or None when `ie` is not a usable one."""
        if ie.iei == IEI_CONCAT_8 and len(ie.data) == 3:
            ref, total, seq = ie.data
            bits = 8
        elif ie.iei == IEI_CONCAT_16 and len(ie.data) == 4:
            ref, total, seq = (ie.data[0] << 8) | ie.data[1], ie.data[2], ie.data[3]
            bits = 16
        else:
            return None
        # 9.2.3.24.1: a zero total, or a sequence of zero or above the total,
        # means the receiving entity ignores the whole IE.
        if total == 0 or not 1 <= seq <= total:
            return None
        return cls(ref, total, seq, bits)


def encode_header(ies: Iterable[InformationElement]) -> bytes:
    """UDHL followed by the IEs; empty when there are none."""
    body = b"".join(ie.encode() for ie in ies)
    if not body:
        return b""
    if len(body) > 139:
        raise PduError(f"user data header of {len(body)} octets does not fit a short message")
    return bytes((len(body),)) + body


def decode_header(body: bytes) -> tuple[InformationElement, ...]:
    """The IEs in a UDH body (the octets after UDHL)."""
    ies: list[InformationElement] = []
    pos = 0
    while pos < len(body):
        if pos + 2 > len(body):
            raise PduError(f"user data header ends inside an IE at octet {pos}")
        iei, length = body[pos], body[pos + 1]
        end = pos + 2 + length
        if end > len(body):
            raise PduError(f"IE 0x{iei:02X} claims {length} octets past the end of the user data header")
        ies.append(InformationElement(iei, body[pos + 2 : end]))
        pos = end
    return tuple(ies)


def split_concat(ies: Iterable[InformationElement]) -> tuple[Concat | None, tuple[InformationElement, ...]]:
    """The first usable concatenation IE, and every other IE in order."""
    concat: Concat | None = None
    rest: list[InformationElement] = []
    for ie in ies:
        found = Concat.from_ie(ie) if concat is None else None
        if found is None:
            rest.append(ie)
        else:
            concat = found
    return concat, tuple(rest)


def join_concat(concat: Concat | None, extra: Iterable[InformationElement]) -> tuple[InformationElement, ...]:
    """The IEs to write: the concatenation IE first, then the others."""
    return ((concat.to_ie(),) if concat else ()) + tuple(extra)


class Encoding(enum.StrEnum):
    """Alphabet of the user data (TS 23.038 clause 4)."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"
    EIGHT_BIT = "8bit"


DEFAULT_DCS: dict[Encoding, int] = {Encoding.GSM7: 0x00, Encoding.EIGHT_BIT: 0x04, Encoding.UCS2: 0x08}
MAX_UD_OCTETS = 140  # 9.2.3.16: at most 140 octets (160 septets)


def dcs_encoding(dcs: int) -> Encoding:
    """The alphabet a TP-DCS octet selects (TS 23.038 clause 4)."""
    group = dcs >> 4
    if group <= 0x07:  # 00xx general / 01xx automatic deletion
        if dcs & 0x20:  # compressed: we cannot decompress, keep the octets
            return Encoding.EIGHT_BIT
        return {0: Encoding.GSM7, 1: Encoding.EIGHT_BIT, 2: Encoding.UCS2}.get(
            (dcs >> 2) & 0x03, Encoding.GSM7
        )
    if group == 0x0E:  # message waiting, store, UCS-2
        return Encoding.UCS2
    if group == 0x0F:  # data coding / message class: bit 2 picks 8-bit
        return Encoding.EIGHT_BIT if dcs & 0x04 else Encoding.GSM7
    # 1100/1101 message waiting (GSM-7); reserved groups are read as GSM-7 (clause 4).
    return Encoding.GSM7


def pid_reserved(pid: int) -> str | None:
    """Why a TP-PID is a reserved value (TS 23.040 9.2.3.9), or None; the message is read anyway."""
    if pid >> 6 == 0b10:
        return f"TP-PID 0x{pid:02X} is reserved (bits 7..6 = 10): ignored"
    return None


def dcs_reserved(dcs: int) -> str | None:
    """Why a TP-DCS is a reserved coding read as GSM-7 (TS 23.038 clause 4), or None."""
    group = dcs >> 4
    if 0x08 <= group <= 0x0B:
        return f"TP-DCS 0x{dcs:02X} is in a reserved coding group: read as GSM 7-bit"
    if group <= 0x07 and not dcs & 0x20 and (dcs >> 2) & 0x03 == 0x03:
        return f"TP-DCS 0x{dcs:02X} names the reserved alphabet 11: read as GSM 7-bit"
    return None


def coerce_dcs(dcs: int, encoding: Encoding) -> int:
    """`dcs` when it selects `encoding`, else the plain TP-DCS for `encoding`."""
    if 0 <= dcs <= 0xFF and dcs_encoding(dcs) is encoding:
        return dcs
    return DEFAULT_DCS[encoding]


def text_to_units(text: str, encoding: Encoding) -> bytes:
    """Text -> raw user data units: GSM-7 codes, UTF-16BE octets, or latin-1 octets for 8-bit."""
    if encoding is Encoding.GSM7:
        return gsm7.encode(text)
    if encoding is Encoding.UCS2:
        return ucs2.encode(text)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise PduError("8-bit user data given as text must be latin-1; pass bytes instead") from None


def units_to_text(units: bytes, encoding: Encoding) -> str:
    """Raw user data units -> text (8-bit data is shown as latin-1)."""
    if encoding is Encoding.GSM7:
        return gsm7.decode(units)
    if encoding is Encoding.UCS2:
        return ucs2.decode(units)
    return units.decode("latin-1")


def encode_user_data(
    units: bytes, encoding: Encoding, ies: Iterable[InformationElement]
) -> tuple[bool, bytes]:
    """(UDHI, TP-UDL + TP-UD) for raw units and a header (9.2.3.16, 9.2.3.24)."""
    header = encode_header(ies)
    if encoding is Encoding.GSM7:
        fill = gsm7.fill_bits(len(header))
        udl = (gsm7.header_septets(len(header)) if header else 0) + len(units)
        if udl > 160:
            raise PduError(f"user data of {udl} septets exceeds 160")
        body = header + gsm7.pack(units, fill if header else 0)
    else:
        udl = len(header) + len(units)
        if udl > MAX_UD_OCTETS:
            raise PduError(f"user data of {udl} octets exceeds {MAX_UD_OCTETS}")
        body = header + units
    return bool(header), bytes((udl,)) + body


def decode_user_data(
    reader: Reader, encoding: Encoding, udhi: bool
) -> tuple[tuple[InformationElement, ...], bytes]:
    """Read TP-UDL + TP-UD -> (IEs, raw units after the header); trailing octets are left unread."""
    udl = reader.octet("TP-UDL")
    octets = gsm7.packed_length(udl) if encoding is Encoding.GSM7 else udl
    data = reader.take(octets, "TP-UD")
    header_len = 0
    ies: tuple[InformationElement, ...] = ()
    if udhi and octets:
        header_len = data[0] + 1
        if header_len > len(data):
            raise PduError(f"UDHL {data[0]} runs past the {len(data)}-octet user data")
        ies = decode_header(data[1:header_len])
    if encoding is not Encoding.GSM7:
        return ies, data[header_len:]
    skip = gsm7.header_septets(header_len) if header_len else 0
    if skip > udl:
        raise PduError(f"user data header takes {skip} septets of a {udl}-septet TP-UDL")
    # Unpack the whole UD as septets and drop the header and its fill bits: the
    # header plus fill is exactly `skip` septets (9.2.3.24).
    return ies, gsm7.unpack(data, udl)[skip:]
