"""GSM 7-bit default alphabet and septet packing (TS 23.038 clause 6.2.1, clause 6.1.2.1.1).

The alphabet tables and the packing loops come from python-gsmmodem-new
(`gsmmodem.pdu`); this module wraps them in typed functions and fixes the
library's extension table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gsmmodem.pdu as _lib

from modem.errors import PduError

ESCAPE = 0x1B  # TS 23.038 6.2.1: escape to the extension table


def _basic_table() -> str:
    """The 128-character basic table from the library, with its 0x5F corrected."""
    table: Any = _lib.GSM7_BASIC
    if not isinstance(table, str) or len(table) != 128:
        raise ImportError("gsmmodem.pdu.GSM7_BASIC is not the 128-character GSM-7 table")
    # TS 23.038 6.2.1: 0x5F is '§'; python-gsmmodem-new 0.13 has '`' there, which
    # is not in the GSM-7 alphabet at all.
    return table[:0x5F] + "§" + table[0x60:]


def _extension_table() -> dict[str, int]:
    """Character -> extension code; the library's table minus its bogus entry, plus form feed."""
    table: Any = _lib.GSM7_EXTENDED
    # The library maps 'ÿ' to the int 0x0A (every other value is a one-char str):
    # 'ÿ' is not in the TS 23.038 6.2.1.1 extension table, and 0x0A is the page break.
    ext = {char: ord(code) for char, code in table.items() if isinstance(code, str) and len(code) == 1}
    ext["\f"] = 0x0A
    return ext


BASIC: str = _basic_table()
EXTENSION: dict[str, int] = _extension_table()
# 0x1B in the basic table is the escape itself, never a character of the text.
_BASIC_CODES: dict[str, int] = {char: code for code, char in enumerate(BASIC) if code != ESCAPE}
_EXTENSION_CHARS: dict[int, str] = {code: char for char, code in EXTENSION.items()}


def is_gsm7(text: str) -> bool:
    """True when every character is in the basic or the extension table."""
    return all(char in _BASIC_CODES or char in EXTENSION for char in text)


def char_septets(char: str) -> int:
    """Septets one character takes: 1 (basic), 2 (escape + extension code)."""
    if char in _BASIC_CODES:
        return 1
    if char in EXTENSION:
        return 2
    raise PduError(f"{char!r} is not in the GSM 7-bit default alphabet")


def septet_count(text: str) -> int:
    """Septets the text takes once encoded."""
    return sum(char_septets(char) for char in text)


def encode(text: str) -> bytes:
    """Text -> unpacked GSM-7 codes (one octet per septet, escapes included)."""
    out = bytearray()
    for char in text:
        code = _BASIC_CODES.get(char)
        if code is not None:
            out.append(code)
        elif char in EXTENSION:
            out += bytes((ESCAPE, EXTENSION[char]))
        else:
            raise PduError(f"{char!r} is not in the GSM 7-bit default alphabet")
    return bytes(out)


def decode(codes: Iterable[int]) -> str:
    """Unpacked GSM-7 codes -> text."""
    out: list[str] = []
    escaped = False
    for raw in codes:
        code = raw & 0x7F
        if escaped:
            escaped = False
            # TS 23.038 6.2.1.1: an unknown extension code shows the basic-table
            # character; escape-escape is reserved and shows as a space.
            if code == ESCAPE:
                out.append(" ")
            else:
                out.append(_EXTENSION_CHARS.get(code, BASIC[code]))
        elif code == ESCAPE:
            escaped = True
        else:
            out.append(BASIC[code])
    # A lone trailing escape carries no character; drop it.
    return "".join(out)


def fill_bits(header_octets: int) -> int:
    """Fill bits after a UDH of `header_octets` (UDHL included) so text starts on a septet (TS 23.040 9.2.3.24)."""
    return (7 - (header_octets * 8) % 7) % 7


def header_septets(header_octets: int) -> int:
    """Septets taken by a UDH of `header_octets` (UDHL included) plus its fill bits."""
    return (header_octets * 8 + fill_bits(header_octets)) // 7


def packed_length(septets: int, fill: int = 0) -> int:
    """Octets that `septets` septets after `fill` fill bits occupy."""
    return (septets * 7 + fill + 7) // 8


def pack(codes: bytes, fill: int = 0) -> bytes:
    """Pack septet codes into octets, after `fill` (0..6) zero fill bits (TS 23.038 6.1.2.1.1)."""
    if not 0 <= fill <= 6:
        raise PduError(f"fill bits must be 0..6, not {fill}")
    if any(code > 0x7F for code in codes):
        raise PduError("GSM-7 codes must be 0..127")
    # The library's padBits is not the fill-bit count: it is the bit shift its loop
    # starts at, i.e. 7 - fill (and 0 for no fill), as its own encodeSmsSubmitPdu uses it.
    packed = bytes(_lib.packSeptets(bytearray(codes), padBits=(7 - fill) % 7))
    # Normalise the length: the library emits a lone zero octet for empty input with fill.
    return packed[: packed_length(len(codes), fill)].ljust(packed_length(len(codes), fill), b"\x00")


def unpack(data: bytes, septets: int, fill: int = 0) -> bytes:
    """Unpack `septets` septet codes that follow `fill` (0..6) fill bits at the start of `data`."""
    if not 0 <= fill <= 6:
        raise PduError(f"fill bits must be 0..6, not {fill}")
    if septets < 0:
        raise PduError("negative septet count")
    need = packed_length(septets, fill)
    if len(data) < need:
        raise PduError(f"truncated GSM-7 data: {septets} septets need {need} octets, {len(data)} present")
    if fill == 0:
        codes = _unpack_lib(data[:need], septets)
    else:
        # The library's unpacker takes fill bits only through its prevOctet/shift
        # arguments, which is where its decoder loses a septet after a 7-octet UDH.
        # Unpack one extra leading septet of zero fill instead: prepend (7 - fill)
        # zero bits by shifting the whole bit string left, then drop that septet.
        value = int.from_bytes(data[:need], "little") << (7 - fill)
        shifted = value.to_bytes(need + 1, "little")
        codes = _unpack_lib(shifted, septets + 1)[1:]
    if len(codes) != septets:
        raise PduError(f"GSM-7 data yields {len(codes)} septets, {septets} expected")
    return codes


def _unpack_lib(data: bytes, septets: int) -> bytes:
    """Typed wrapper of gsmmodem.pdu.unpackSeptets, cut to exactly `septets` codes."""
    if septets == 0:
        return b""
    codes = bytes(_lib.unpackSeptets(bytearray(data), septets))
    # The library may append one more septet from the last octet's leftover bits, and drops
    # the 8n-th septet of 7n octets when it is zero ('@'): the callers checked the octets are there.
    return codes[:septets].ljust(septets, b"\x00")
