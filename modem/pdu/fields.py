"""Shared TPDU fields: an octet reader, semi-octets and SCTS timestamps (TS 23.040 9.1.2, 9.2.3.11)."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Self

from modem.errors import PduError

if TYPE_CHECKING:
    from modem.pdu.address import Address


class Reader:
    """Reads a PDU front to back; running out of octets is a PduError, never an IndexError.

    `warnings` collects the fields read as unknown rather than rejected (see `tolerance`).
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.warnings: list[str] = []

    def warn(self, text: str) -> None:
        """Note a field that was read as unknown (each text once per PDU)."""
        if text not in self.warnings:
            self.warnings.append(text)

    def __repr__(self) -> str:
        return f"Reader(pos={self.pos}, len={len(self.data)})"

    @property
    def remaining(self) -> int:
        """Octets not read yet."""
        return len(self.data) - self.pos

    def warnings_tuple(self) -> tuple[str, ...]:
        """The warnings so far, for a frozen dataclass; notes octets left after the TPDU."""
        if self.remaining:
            self.warn(f"{describe_rest(self.data[self.pos :])} after the TPDU ignored")
            self.pos = len(self.data)
        return tuple(self.warnings)

    def octet(self, what: str) -> int:
        """One octet."""
        if self.pos >= len(self.data):
            raise PduError(f"PDU truncated: no octet left for {what} at offset {self.pos}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, count: int, what: str) -> bytes:
        """Exactly `count` octets."""
        if count > self.remaining:
            raise PduError(
                f"PDU truncated: {what} needs {count} octets at offset {self.pos}, {self.remaining} left"
            )
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk


def describe_rest(rest: bytes) -> str:
    """Octets left over, for a warning: FF padding (a SIM record, 31.102 EF_SMS) or a short hex."""
    if rest == b"\xff" * len(rest):
        return f"{len(rest)} octet(s) of FF padding"
    shown = rest[:16].hex().upper() + ("..." if len(rest) > 16 else "")
    return f"{len(rest)} octet(s) {shown}"


def parse_hex(text: str) -> bytes:
    """Hex as a modem prints it (either case, whitespace allowed) -> octets."""
    compact = "".join(text.split())
    if len(compact) % 2:
        raise PduError(f"odd number of hex digits ({len(compact)})")
    try:
        return bytes.fromhex(compact)
    except ValueError as exc:
        raise PduError(f"not hex: {exc}") from None


def swap_nibbles(value: int) -> int:
    """Semi-octet order: the first digit is in the low nibble (9.1.2.3)."""
    return ((value & 0x0F) << 4) | (value >> 4)


def _bcd(octet: int, what: str) -> int:
    """Two swapped BCD digits -> 0..99."""
    low, high = octet & 0x0F, octet >> 4
    if low > 9 or high > 9:
        raise PduError(f"{what}: semi-octets 0x{octet:02X} are not decimal digits")
    return low * 10 + high


def _to_bcd(value: int) -> int:
    return swap_nibbles(((value // 10) << 4) | (value % 10))


def _local_time(raw: bytes) -> datetime.datetime:
    """The SC's local date and time from the first six octets, without its zone."""
    year, month, day, hour, minute, second = (_bcd(octet, "timestamp") for octet in raw[:6])
    try:
        return datetime.datetime(2000 + year, month, day, hour, minute, second)  # noqa: DTZ001 - zone added by the caller
    except ValueError as exc:
        raise PduError(f"timestamp is not a valid date/time: {exc}") from None


def _time_zone(tz: int) -> datetime.timezone:
    # 9.2.3.11: quarter hours in two swapped semi-octets; bit 3 of the octet is the sign.
    tens, units = tz & 0x07, tz >> 4
    if units > 9:
        raise PduError(f"timestamp time zone 0x{tz:02X} is not decimal")
    quarters = tens * 10 + units
    return datetime.timezone(datetime.timedelta(minutes=15 * quarters) * (-1 if tz & 0x08 else 1))


def read_timestamp(reader: Reader, what: str) -> datetime.datetime | None:
    """Seven octets of a timestamp that nothing depends on (TP-SCTS, TP-DT, absolute TP-VP).

    The octets must be there (a short PDU is still a PduError), but their digits need not make
    sense: unreadable date/time digits give None, a time-zone octet that is not decimal gives
    the SC's local time without a zone (a naive datetime). Both are noted in `reader.warnings`.
    """
    raw = reader.take(7, what)
    try:
        local = _local_time(raw)
    except PduError as exc:
        reader.warn(f"{what} {raw.hex().upper()} is not a date and time, taken as unknown ({exc})")
        return None
    try:
        return local.replace(tzinfo=_time_zone(raw[6]))
    except PduError:
        reader.warn(f"{what} time zone octet 0x{raw[6]:02X} is not decimal: zone taken as unknown")
        return local


def encode_timestamp(when: datetime.datetime | None) -> bytes:
    """Aware datetime in 2000..2099 with a quarter-hour offset -> seven octets."""
    if when is None:
        raise PduError("an unknown timestamp cannot be encoded")
    offset = when.utcoffset()
    if offset is None:
        raise PduError("timestamp must be timezone-aware")
    if not 2000 <= when.year <= 2099:
        raise PduError(f"timestamp year {when.year} is outside 2000..2099")
    minutes, rest = divmod(int(offset.total_seconds()), 60)
    if rest or minutes % 15:
        raise PduError(f"UTC offset {offset} is not a whole number of quarter hours")
    quarters = abs(minutes) // 15
    if quarters > 79:
        raise PduError(f"UTC offset {offset} does not fit the time zone field")
    tz = _to_bcd(quarters) | (0x08 if minutes < 0 else 0)
    fields = (when.year - 2000, when.month, when.day, when.hour, when.minute, when.second)
    return bytes(_to_bcd(value) for value in fields) + bytes((tz,))


def as_octets(data: str | bytes | bytearray | memoryview) -> bytes:
    """Octets from raw bytes, or from hex text as the modem prints it."""
    if isinstance(data, str):
        return parse_hex(data)
    return bytes(data)


def check_octet(value: int, what: str) -> None:
    """PduError unless 0 <= value <= 255."""
    if not 0 <= value <= 0xFF:
        raise PduError(f"{what} must be 0..255, not {value}")


class TpduFraming:
    """SMSC field + TPDU framing shared by SUBMIT, DELIVER and STATUS-REPORT.

    Subclasses provide `smsc`, `encode_tpdu()` and `read(reader, smsc)`.
    """

    smsc: Address | None
    warnings: tuple[str, ...]

    def encode_tpdu(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        """SMSC field + TPDU, as written after the AT+CMGS prompt or printed by +CMT/+CDS/+CMGR."""
        return (self.smsc.encode_smsc() if self.smsc else b"\x00") + self.encode_tpdu()

    def hex(self) -> str:
        """Upper-case hex of `encode()`."""
        return self.encode().hex().upper()

    @property
    def tpdu_length(self) -> int:
        """Octets after the SMSC field: the <n> of AT+CMGS=<n>, the <length> of +CMT/+CDS/+CMGR."""
        return len(self.encode_tpdu())

    @classmethod
    def decode(cls, data: str | bytes, *, smsc: bool = True) -> Self:
        """Parse octets (or hex); `smsc=False` when there is no SMSC field."""
        from modem.pdu.address import Address  # noqa: PLC0415  (address imports this module)
        from modem.pdu.tolerance import log_once  # noqa: PLC0415  (as above)

        reader = Reader(as_octets(data))
        address = Address.decode_smsc(reader) if smsc else None
        message = cls.read(reader, address)
        log_once(message.warnings, kind=cls.__name__)
        return message

    @classmethod
    def read(cls, reader: Reader, smsc: Address | None) -> Self:
        raise NotImplementedError
