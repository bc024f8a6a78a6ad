"""Splitting text into SMS segments and joining received parts (TS 23.040 9.2.3.24.1, TS 23.038 6.1.2)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modem.pdu import gsm7, ucs2
from modem.pdu.address import Address
from modem.pdu.deliver import Deliver
from modem.pdu.submit import Submit
from modem.pdu.udh import Concat, Encoding, units_to_text

# 160 septets / 140 octets of user data, less a 6-octet UDH with an 8-bit
# reference: 7 septets (48 bits + 1 fill bit) or 6 octets (3 UTF-16 units).
GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


@dataclass(frozen=True)
class Segmentation:
    """The alphabet chosen for a text and the text of each segment."""

    encoding: Encoding
    parts: tuple[str, ...]


def segment_text(text: str, *, encoding: Encoding | None = None, concat_bits: int = 8) -> Segmentation:
    """Split text as it will be sent; never splits an escape or a surrogate pair.

    The alphabet is GSM-7 when the text fits it, else UCS-2, unless `encoding` forces one
    (GSM-7 forced on a text outside it raises ValueError). `concat_bits=16` plans for the
    16-bit reference IE, one octet longer (9.2.3.24.8): 152 septets or 66 units a part.
    """
    fits_gsm7 = gsm7.is_gsm7(text)
    chosen = encoding or (Encoding.GSM7 if fits_gsm7 else Encoding.UCS2)
    longer_udh = 1 if concat_bits == 16 else 0
    if chosen is Encoding.GSM7:
        if not fits_gsm7:
            raise ValueError("text has characters outside the GSM 7-bit alphabet")
        return Segmentation(chosen, _split(text, gsm7.char_septets, GSM7_SINGLE, GSM7_PART - longer_udh))
    if chosen is Encoding.UCS2:
        return Segmentation(chosen, _split(text, ucs2.char_units, UCS2_SINGLE, UCS2_PART - longer_udh))
    raise ValueError("8-bit data cannot be segmented as text")


def count_segments(text: str) -> int:
    """Number of SMS segments `text` takes."""
    return len(segment_text(text).parts)


def encode_submits(
    destination: str | Address,
    text: str,
    *,
    concat_ref: int,
    status_report_request: bool = True,
    validity_relative: int | None = None,
    smsc: Address | None = None,
    segmentation: Segmentation | None = None,
) -> list[Submit]:
    """One SMS-SUBMIT per segment; several carry Concat(concat_ref & 0xFF, total, seq).

    `segmentation` is a plan made earlier for `text` (the caller's, kept with the message);
    without one the text is segmented here."""
    address = Address.parse(destination) if isinstance(destination, str) else destination
    segmentation = segment_text(text) if segmentation is None else segmentation
    total = len(segmentation.parts)
    return [
        Submit(
            destination=address,
            text=part,
            encoding=segmentation.encoding,
            concat=Concat(concat_ref & 0xFF, total, seq) if total > 1 else None,
            status_report_request=status_report_request,
            validity_relative=validity_relative,
            smsc=smsc,
        )
        for seq, part in enumerate(segmentation.parts, start=1)
    ]


def join_user_data(parts: Sequence[Deliver | Submit]) -> str:
    """Text of parts already in order: raw user data of same-alphabet runs is joined, then decoded once."""
    texts: list[str] = []
    run = bytearray()
    run_encoding: Encoding | None = None
    for part in parts:
        if part.encoding is not run_encoding:
            if run_encoding is not None:
                texts.append(units_to_text(bytes(run), run_encoding))
            run, run_encoding = bytearray(), part.encoding
        # Senders split surrogate pairs (and escapes) across segments: join first.
        run += part.user_data
    if run_encoding is not None:
        texts.append(units_to_text(bytes(run), run_encoding))
    return "".join(texts)


def _split(text: str, cost: Callable[[str], int], single: int, per_part: int) -> tuple[str, ...]:
    """Greedy split: one part when it fits `single`, else parts of at most `per_part` units."""
    costs = [cost(char) for char in text]
    if sum(costs) <= single:
        return (text,)
    parts: list[str] = []
    start = used = 0
    for index, units in enumerate(costs):
        if used + units > per_part:
            parts.append(text[start:index])
            start, used = index, 0
        used += units
    parts.append(text[start:])
    return tuple(parts)
