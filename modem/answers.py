"""Fields of AT answers in PDU mode, in every shape modems print them (pure functions).

27.005 fixes the shapes; real modems drop, quote or add fields (see the docstrings).
"""

from __future__ import annotations

import contextlib
import logging

from modem.errors import PduError
from modem.pdu import decode_pdu

_LOGGER = logging.getLogger(__name__)


def split_fields(text: str) -> list[str]:
    """Comma-separated fields with quotes removed ('"SM",3' -> ['SM', '3'])."""
    fields: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            fields.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    fields.append("".join(cur).strip())
    return fields


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def parse_cmgr_header(payload: str) -> tuple[int | None, int | None]:
    """(<stat>, <length>) of a PDU-mode '+CMGR:' head, in every shape modems print.

    '1,,24' (27.005), '1,"",24' (Telit), '1,"Smith, J",24' (a phonebook <alpha>), '0,23' (no
    <alpha>), ',,92' (no <stat>: ZTE, DWM-156), '24' (length only), '4,1,,151' (an extra field):
    the length is the last field, the <stat> the first when there are two or more.
    """
    return _stat_and_length(split_fields(payload.strip()))


def _stat_and_length(fields: list[str]) -> tuple[int | None, int | None]:
    length = _int_or_none(fields[-1]) if fields else None
    status = _int_or_none(fields[0]) if len(fields) >= 2 else None
    return status, length


def parse_cmgl_header(payload: str) -> tuple[int, int | None, int | None] | None:
    """(<index>, <stat>, <length>) of a PDU-mode '+CMGL:' head; None without a readable index.

    '3,1,,24', '3,1,"",24', '17,3,35' (Pantech, no <alpha>), '3,,,24' (no <stat>).
    """
    fields = split_fields(payload.strip())
    index = _int_or_none(fields[0])
    if index is None:
        return None
    status, length = _stat_and_length(fields[1:])
    return index, status, length


def with_smsc_field(pdu: str, length: int | None) -> str:
    """The PDU as SMSC field + TPDU: quotes dropped, and "00" put in front when the modem left
    the SMSC field out (its hex is exactly the header's <length> octets, which count the TPDU only).
    """
    pdu = pdu.strip().strip('"')
    if length is None or length <= 0 or len(pdu) != 2 * length:
        return pdu
    # A modem that counts the SMSC octets into <length> (against 27.005) prints a PDU that
    # decodes as it is: keep that reading.
    with contextlib.suppress(PduError):
        decode_pdu(pdu)
        return pdu
    return "00" + pdu


def parse_mem_index(line: str) -> tuple[str, int | None]:
    fields = split_fields(line.split(":", 1)[1] if ":" in line else "")
    try:
        return (fields[0], int(fields[1])) if len(fields) >= 2 else ("", int(fields[0]))
    except (ValueError, IndexError):
        _LOGGER.warning("malformed %r", line)
        return ("", None)
