"""Raw SMS user data units of a text, and inbound reassembly as the daemon does it."""

from __future__ import annotations

from modem.pdu import gsm7, ucs2
from modem.pdu.udh import Encoding, units_to_text


def join_units(encoding: str, parts: list[bytes]) -> str:
    """Inbound reassembly as the daemon does it: join raw units, then decode once."""
    return units_to_text(b"".join(parts), Encoding(encoding))


def units(text: str, encoding: str = "gsm7") -> bytes:
    """Raw user data units of a text (unpacked GSM-7 codes or UTF-16BE)."""
    return gsm7.encode(text) if encoding == "gsm7" else ucs2.encode(text)
