"""Segment counts and boundaries: GSM-7 160/153 septets, UCS-2 70/67 units, escapes and pairs kept whole."""

from __future__ import annotations

import pytest

from modem.pdu import Encoding, count_segments, encode_submits, segment_text
from modem.pdu.gsm7 import septet_count
from modem.pdu.ucs2 import unit_count

EMOJI = "\U0001f600"


@pytest.mark.parametrize(
    ("text", "encoding", "sizes"),
    [
        ("", Encoding.GSM7, [0]),
        ("a" * 160, Encoding.GSM7, [160]),
        ("a" * 161, Encoding.GSM7, [153, 8]),
        ("a" * 306, Encoding.GSM7, [153, 153]),
        ("a" * 307, Encoding.GSM7, [153, 153, 1]),
        ("€" * 80, Encoding.GSM7, [80]),  # 160 septets: still one
        ("€" * 81, Encoding.GSM7, [76, 5]),  # 152 septets per part: a pair never straddles
        ("a" * 152 + "€" + "b", Encoding.GSM7, [154]),  # 155 septets: one part
        ("a" * 152 + "€" + "b" * 10, Encoding.GSM7, [152, 11]),  # '€' would need septets 153-154: moves on
        ("a" * 151 + "€" + "b" * 9, Encoding.GSM7, [152, 9]),  # 151 + 2 = 153 fits exactly
        ("ж" * 70, Encoding.UCS2, [70]),
        ("ж" * 71, Encoding.UCS2, [67, 4]),
        ("ж" * 134, Encoding.UCS2, [67, 67]),
        ("ж" * 135, Encoding.UCS2, [67, 67, 1]),
        (EMOJI * 35, Encoding.UCS2, [35]),  # 70 units
        ("a" + EMOJI * 35, Encoding.UCS2, [34, 2]),  # 71 units; 1 + 33*2 = 67, the 34th emoji moves on
        (EMOJI * 40, Encoding.UCS2, [33, 7]),  # 80 units > 70 (python-gsmmodem-new says 1 part)
        ("a" * 66 + EMOJI + "b" * 10, Encoding.UCS2, [66, 11]),  # pair at units 67-68 is not split
        ("abc`", Encoding.UCS2, [4]),  # '`' is not GSM-7 (the library's table says 0x5F; it is '§')
        ("abc§", Encoding.GSM7, [4]),
        ("x\x1by", Encoding.UCS2, [3]),  # ESC is not a character of the text
    ],
)
def test_segmentation(text: str, encoding: Encoding, sizes: list[int]) -> None:
    segmentation = segment_text(text)
    assert segmentation.encoding is encoding
    assert [len(part) for part in segmentation.parts] == sizes
    assert "".join(segmentation.parts) == text
    assert count_segments(text) == len(sizes)
    assert len(encode_submits("+4915112345678", text, concat_ref=1)) == len(sizes)


@pytest.mark.parametrize("text", ["a" * 152 + "€" + "b" * 10, "€" * 200, "{}" * 90 + "x"])
def test_gsm7_parts_stay_within_153_septets_and_never_end_in_escape(text: str) -> None:
    parts = segment_text(text).parts
    assert len(parts) > 1
    assert all(septet_count(part) <= 153 for part in parts)
    for submit in encode_submits("+4915112345678", text, concat_ref=9):
        codes = submit.user_data
        assert codes[-1:] != b"\x1b"
        assert len(codes) <= 153


@pytest.mark.parametrize("text", ["a" + EMOJI * 35, EMOJI * 100, "ж" * 66 + EMOJI + "ж" * 5])
def test_ucs2_parts_stay_within_67_units_and_never_split_a_pair(text: str) -> None:
    parts = segment_text(text).parts
    assert len(parts) > 1
    assert all(unit_count(part) <= 67 for part in parts)
    for submit in encode_submits("+4915112345678", text, concat_ref=9):
        raw = submit.user_data
        assert not 0xD800 <= int.from_bytes(raw[-2:], "big") <= 0xDBFF  # no trailing high surrogate
        assert len(raw) <= 134


def test_euro_at_the_boundary_moves_to_the_next_part() -> None:
    parts = segment_text("a" * 152 + "€" + "b" * 7).parts
    assert parts == ("a" * 152, "€" + "b" * 7)


def test_encode_submits_fills_concat_and_limits() -> None:
    submits = encode_submits("+4915112345678", "a" * 307, concat_ref=0x1FF, validity_relative=167)
    assert [(s.concat.ref, s.concat.total, s.concat.seq) for s in submits if s.concat] == [
        (0xFF, 3, 1),
        (0xFF, 3, 2),
        (0xFF, 3, 3),
    ]
    # 153 text septets + 7 of header = UDL 160 (0xA0) = 140 octets of UD.
    first = submits[0].encode_tpdu()
    assert first[0] == 0x71  # SUBMIT, relative VP, SRR, UDHI
    assert submits[0].tpdu_length == len(first)
    assert len(first) == 2 + 2 + 7 + 2 + 1 + 1 + 140
    assert first[14] == 0xA0


def test_single_segment_has_no_concat() -> None:
    (submit,) = encode_submits("0829200000", "hello", concat_ref=5)
    assert submit.concat is None
    assert submit.destination.toa == 129
    assert submit.hex() == "0021000A8180920200000000" + "05E8329BFD06"


def test_16_bit_references_leave_one_octet_less_per_part() -> None:
    """TS 23.040 9.2.3.24.8: the 16-bit reference IE is 4 octets, so parts hold 152 septets / 66 units."""
    assert [len(p) for p in segment_text("a" * 305, concat_bits=16).parts] == [152, 152, 1]
    assert [len(p) for p in segment_text("ж" * 133, concat_bits=16).parts] == [66, 66, 1]
    for text in ("b" * 400, "Ünï 😀 " * 40):
        for part in segment_text(text, concat_bits=16).parts:
            if segment_text(text).encoding is Encoding.GSM7:
                assert septet_count(part) <= 152
            else:
                assert len(part.encode("utf-16-be")) <= 132


def test_forced_alphabet() -> None:
    assert segment_text("plain", encoding=Encoding.UCS2).encoding is Encoding.UCS2
    assert [len(p) for p in segment_text("x" * 71, encoding=Encoding.UCS2).parts] == [67, 4]
    with pytest.raises(ValueError, match="GSM 7-bit"):
        segment_text("Привет", encoding=Encoding.GSM7)
