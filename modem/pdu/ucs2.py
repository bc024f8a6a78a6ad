"""UCS-2 user data, read and written as UTF-16BE so emoji survive (TS 23.038 clause 6.2.3)."""

from __future__ import annotations

from modem.errors import PduError


def encode(text: str) -> bytes:
    """Text -> UTF-16BE octets; astral characters become surrogate pairs."""
    # surrogatepass: a str may already hold a lone surrogate (half of a split pair).
    return text.encode("utf-16-be", "surrogatepass")


def decode(data: bytes) -> str:
    """UTF-16BE octets -> text; unpaired surrogates and an odd last octet become U+FFFD."""
    return data.decode("utf-16-be", "replace")


def char_units(char: str) -> int:
    """UTF-16 code units one character takes (2 for astral characters)."""
    if len(char) != 1:
        raise PduError(f"expected one character, got {len(char)}")
    return 2 if ord(char) > 0xFFFF else 1


def unit_count(text: str) -> int:
    """UTF-16 code units of the text."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)
