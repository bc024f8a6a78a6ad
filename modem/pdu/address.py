"""Addresses: TP-OA/DA/RA (TS 23.040 9.1.2.5) and the SMSC (RP) address (TS 24.011 8.2.5.1)."""

from __future__ import annotations

from dataclasses import dataclass

from modem.errors import PduError
from modem.pdu import gsm7
from modem.pdu.fields import Reader

TON_UNKNOWN = 0
TON_INTERNATIONAL = 1
TON_NATIONAL = 2
TON_ALPHANUMERIC = 5  # 9.1.2.5: GSM-7 packed, "length" counts semi-octets used

_DIGITS = "0123456789*#abc"  # 9.1.2.3: semi-octets 0-9, then * # a b c; F is the filler
_DIGIT_VALUES = {char: value for value, char in enumerate(_DIGITS)}
_MAX_DIGITS = 20  # 9.1.2.5: the address value is at most 10 octets


@dataclass(frozen=True)
class Address:
    """A phone number ("+49...", "0829200000") or an alphanumeric sender ("Megafon") with its TON/NPI."""

    number: str
    ton: int
    npi: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.ton <= 7:
            raise PduError(f"type of number must be 0..7, not {self.ton}")
        if not 0 <= self.npi <= 15:
            raise PduError(f"numbering plan must be 0..15, not {self.npi}")

    @property
    def toa(self) -> int:
        """Type-of-address octet: 0x80 | TON << 4 | NPI."""
        return 0x80 | self.ton << 4 | self.npi

    @classmethod
    def from_toa(cls, number: str, toa: int) -> Address:
        """Address from its text and TOA octet."""
        return cls(number, (toa >> 4) & 0x07, toa & 0x0F)

    @classmethod
    def parse(cls, text: str) -> Address:
        """ "+49..." -> international; digits, * and # -> unknown (TOA 129); anything else -> alphanumeric."""
        if text.startswith("+") and len(text) > 1 and all(c in "0123456789*#" for c in text[1:]):
            return cls(text, TON_INTERNATIONAL, 1)
        if all(c in "0123456789*#" for c in text):
            return cls(text, TON_UNKNOWN, 1)
        return cls(text, TON_ALPHANUMERIC, 0)

    def encode_tp(self) -> bytes:
        """As TP-OA/DA/RA: length (digits, or semi-octets used when alphanumeric), TOA, value."""
        if self.ton == TON_ALPHANUMERIC:
            codes = gsm7.encode(self.number)
            value = gsm7.pack(codes)
            semi_octets = (len(codes) * 7 + 3) // 4
            if semi_octets > _MAX_DIGITS:
                raise PduError(f"alphanumeric address {self.number!r} is longer than 11 characters")
            return bytes((semi_octets, self.toa)) + value
        digits = self._digits()
        if len(digits) > _MAX_DIGITS:
            raise PduError(f"address {self.number!r} has more than {_MAX_DIGITS} digits")
        return bytes((len(digits), self.toa)) + _encode_semi_octets(digits)

    def encode_smsc(self) -> bytes:
        """As the SMSC (RP) address: length in octets including the TOA, TOA, value."""
        digits = self._digits()
        if len(digits) > _MAX_DIGITS:
            raise PduError(f"SMSC address {self.number!r} has more than {_MAX_DIGITS} digits")
        value = _encode_semi_octets(digits)
        return bytes((len(value) + 1, self.toa)) + value

    @classmethod
    def decode_tp(cls, reader: Reader) -> Address:
        """Read a TP address."""
        length = reader.octet("address length")
        toa = reader.octet("type of address")
        value = reader.take((length + 1) // 2, "address value")
        ton = (toa >> 4) & 0x07
        if ton == TON_ALPHANUMERIC:
            septets = length * 4 // 7
            return cls.from_toa(gsm7.decode(gsm7.unpack(value, septets)), toa)
        return cls.from_toa(_prefix(ton) + _decode_semi_octets(value, length), toa)

    @classmethod
    def decode_smsc(cls, reader: Reader) -> Address | None:
        """Read an SMSC (RP) address; None for the "00" of "use the SIM's".

        Nothing depends on the SMSC's digits, only on the field's length (it says where the
        TPDU starts): a filler inside the number (D-Link DWM-156 / Qualcomm sticks, gammu
        #156) reads as '?' and is noted in `reader.warnings`.
        """
        length = reader.octet("SMSC length")
        if length == 0:
            return None
        toa = reader.octet("SMSC type of address")
        value = reader.take(length - 1, "SMSC address")
        try:
            number = _prefix((toa >> 4) & 0x07) + _decode_semi_octets(
                value, 2 * len(value), trailing_filler=True
            )
        except PduError:
            number = _prefix((toa >> 4) & 0x07) + _decode_semi_octets(
                value, 2 * len(value), trailing_filler=True, unknown="?"
            )
            reader.warn(
                f"SMSC address semi-octets {value.hex().upper()} have a filler inside the number: read as {number}"
            )
        return cls.from_toa(number, toa)

    def _digits(self) -> str:
        number = self.number
        if self.ton == TON_INTERNATIONAL and number.startswith("+"):
            number = number[1:]
        bad = [c for c in number if c not in _DIGIT_VALUES]
        if bad:
            raise PduError(f"address {self.number!r} has characters that are not semi-octets: {bad!r}")
        return number


def _prefix(ton: int) -> str:
    return "+" if ton == TON_INTERNATIONAL else ""


def _encode_semi_octets(digits: str) -> bytes:
    """Digits -> swapped semi-octets, F-filled when odd (9.1.2.3)."""
    nibbles = [_DIGIT_VALUES[c] for c in digits]
    if len(nibbles) % 2:
        nibbles.append(0x0F)
    return bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, len(nibbles), 2))


def _decode_semi_octets(
    value: bytes, count: int, *, trailing_filler: bool = False, unknown: str | None = None
) -> str:
    """`count` semi-octets -> digits; F is only allowed as filler at the end, or reads as `unknown`."""
    nibbles = [n for octet in value for n in (octet & 0x0F, octet >> 4)][:count]
    if trailing_filler:
        while nibbles and nibbles[-1] == 0x0F:
            nibbles.pop()
    if 0x0F in nibbles and unknown is None:
        raise PduError(f"address semi-octets {value.hex().upper()} have a filler inside the number")
    return "".join(_DIGITS[n] if n != 0x0F else str(unknown) for n in nibbles)
