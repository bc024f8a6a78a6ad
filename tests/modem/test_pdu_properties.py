"""Round trips (decode(encode(x)) == x) for the codec, and a fuzz of decode_pdu."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modem.errors import PduError
from modem.pdu import (
    Address,
    Concat,
    Deliver,
    Encoding,
    InformationElement,
    StatusReport,
    Submit,
    decode_pdu,
    encode_submits,
    gsm7,
    join_user_data,
    segment_text,
)
from modem.pdu.fields import Reader
from modem.pdu.udh import decode_header, encode_header

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=400)
GSM7_TEXT = st.text(st.sampled_from(sorted(set(gsm7.BASIC) - {"\x1b"} | set(gsm7.EXTENSION))), max_size=400)
DIGITS = st.text(st.sampled_from("0123456789"), min_size=1, max_size=20)

INTERNATIONAL = st.from_regex(r"\A\+[1-9][0-9]{4,18}\Z").map(lambda n: Address(n, 1, 1))
NUMERIC = st.builds(
    Address,
    st.text(st.sampled_from("0123456789*#abc"), max_size=20),
    st.sampled_from([0, 2, 3, 4, 6, 7]),
    st.integers(0, 15),
)
ALPHANUMERIC = st.text(st.sampled_from(sorted(set(gsm7.BASIC) - {"\x1b"})), max_size=11).map(
    lambda n: Address(n, 5, 0)
)
ADDRESSES = st.one_of(INTERNATIONAL, NUMERIC, ALPHANUMERIC)
SMSC = st.none() | INTERNATIONAL

OFFSETS = st.integers(-79, 79).map(lambda q: datetime.timezone(datetime.timedelta(minutes=15 * q)))
TIMES = st.datetimes(
    min_value=datetime.datetime(2000, 1, 1),  # noqa: DTZ001 -- hypothesis wants naive bounds with timezones=
    max_value=datetime.datetime(2099, 12, 31, 23, 59, 59),  # noqa: DTZ001 -- as above
    timezones=OFFSETS,
).map(lambda t: t.replace(microsecond=0))


def _bit_pack(codes: bytes, fill: int) -> bytes:
    """Reference packer: septets into a little-endian bit string after `fill` zero bits."""
    acc, bits = 0, fill
    for code in codes:
        acc |= code << bits
        bits += 7
    return acc.to_bytes((bits + 7) // 8, "little")


@pytest.mark.slow
@given(
    text=TEXT,
    number=INTERNATIONAL,
    ref=st.integers(0, 1000),
    srr=st.booleans(),
    vp=st.none() | st.integers(0, 255),
)
@settings(max_examples=300)
def test_encode_submits_round_trip(text: str, number: Address, ref: int, srr: bool, vp: int | None) -> None:
    submits = encode_submits(
        number.number, text, concat_ref=ref, status_report_request=srr, validity_relative=vp
    )
    decoded = [decode_pdu(submit.hex()) for submit in submits]
    assert decoded == submits
    assert all(isinstance(d, Submit) for d in decoded)
    assert join_user_data([d for d in decoded if not isinstance(d, StatusReport)]) == text
    for submit in submits:
        assert submit.tpdu_length == len(submit.encode()) - 1
        assert len(submit.encode_tpdu()) <= 176  # 140 octets of UD plus the largest header fields
    if len(submits) > 1:
        assert [s.concat for s in submits] == [
            Concat(ref & 0xFF, len(submits), i) for i in range(1, len(submits) + 1)
        ]


@pytest.mark.slow
@given(text=TEXT, sender=ADDRESSES, scts=TIMES, smsc=SMSC, ref=st.integers(0, 0xFF), sri=st.booleans())
@settings(max_examples=300)
def test_deliver_round_trip_and_join(
    *, text: str, sender: Address, scts: datetime.datetime, smsc: Address | None, ref: int, sri: bool
) -> None:
    segmentation = segment_text(text)
    total = len(segmentation.parts)
    parts = [
        Deliver(
            sender=sender,
            scts=scts,
            text=part,
            encoding=segmentation.encoding,
            # segment_text plans for the 6-octet UDH of an 8-bit reference (67 units per part)
            concat=Concat(ref, total, seq) if total > 1 else None,
            status_report_indication=sri,
            smsc=smsc,
        )
        for seq, part in enumerate(segmentation.parts, start=1)
    ]
    decoded = [decode_pdu(part.encode()) for part in parts]
    assert decoded == parts
    assert all(
        d.scts is not None and d.scts.utcoffset() == scts.utcoffset()
        for d in decoded
        if isinstance(d, Deliver)
    )
    assert join_user_data([d for d in decoded if not isinstance(d, StatusReport)]) == text


@given(
    text=TEXT.filter(lambda t: any(ord(c) > 0xFFFF for c in t) and len(t.encode("utf-16-be")) <= 134),
    data=st.data(),
)
def test_join_rejoins_surrogate_pairs_split_anywhere(text: str, data: st.DataObject) -> None:
    raw = text.encode("utf-16-be")
    cut = data.draw(st.integers(0, len(raw)))
    scts = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    sender = Address("+4915112345678", 1)
    parts = [
        Deliver(sender, scts, encoding=Encoding.UCS2, user_data=chunk, concat=Concat(7, 2, seq))
        for seq, chunk in ((1, raw[:cut]), (2, raw[cut:]))
    ]
    decoded = [decode_pdu(p.encode()) for p in parts]
    assert join_user_data([d for d in decoded if not isinstance(d, StatusReport)]) == text
    assert all(c < "\ud800" or c > "\udfff" for d in decoded for c in d.text)  # no lone surrogates leak


@given(address=ADDRESSES)
def test_tp_address_round_trip(address: Address) -> None:
    encoded = address.encode_tp()
    reader = Reader(encoded)
    assert Address.decode_tp(reader) == address
    assert reader.remaining == 0


@given(address=st.one_of(INTERNATIONAL, st.builds(Address, DIGITS, st.sampled_from([0, 2]))))
def test_smsc_address_round_trip(address: Address) -> None:
    encoded = address.encode_smsc()
    assert encoded[0] == len(encoded) - 1
    assert Address.decode_smsc(Reader(encoded)) == address


@given(text=st.text(max_size=30))
def test_address_parse_kinds(text: str) -> None:
    address = Address.parse(text)
    if text.startswith("+") and len(text) > 1 and set(text[1:]) <= set("0123456789*#"):
        assert address.toa == 145
    elif set(text) <= set("0123456789*#"):
        assert address.toa == 129
    else:
        assert address.toa == 208
    assert address.number == text


@given(
    mr=st.integers(0, 255),
    recipient=ADDRESSES,
    scts=TIMES,
    dt=TIMES,
    status=st.integers(0, 255),
    smsc=SMSC,
    more=st.booleans(),
    srq=st.booleans(),
    tail=st.none()
    | st.tuples(st.integers(0, 255), st.sampled_from([0x00, 0x08]), GSM7_TEXT.map(lambda t: t[:60])),
)
def test_status_report_round_trip(
    *,
    mr: int,
    recipient: Address,
    scts: datetime.datetime,
    dt: datetime.datetime,
    status: int,
    smsc: Address | None,
    more: bool,
    srq: bool,
    tail: tuple[int, int, str] | None,
) -> None:
    extra: dict[str, Any] = {}
    if tail is not None:
        pid, dcs, text = tail
        extra = {"parameter_indicator": 0x07, "pid": pid, "dcs": dcs, "text": text}
    report = StatusReport(mr, recipient, scts, dt, status, smsc, more, srq, **extra)
    decoded = decode_pdu(report.hex())
    assert decoded == report
    assert isinstance(decoded, StatusReport)
    assert decoded.scts is not None
    assert decoded.discharge_time is not None
    assert decoded.scts.utcoffset() == scts.utcoffset()
    assert decoded.discharge_time.utcoffset() == dt.utcoffset()
    assert decoded.is_final is not (0x20 <= status <= 0x3F)


@given(codes=st.binary(max_size=200).map(lambda b: bytes(x & 0x7F for x in b)), fill=st.integers(0, 6))
def test_gsm7_pack_unpack_round_trip(codes: bytes, fill: int) -> None:
    packed = gsm7.pack(codes, fill)
    assert packed == _bit_pack(codes, fill)
    assert gsm7.unpack(packed, len(codes), fill) == codes


@given(text=GSM7_TEXT)
def test_gsm7_text_round_trip(text: str) -> None:
    codes = gsm7.encode(text)
    assert len(codes) == gsm7.septet_count(text)
    assert gsm7.decode(codes) == text


@given(
    ies=st.lists(
        st.builds(InformationElement, st.integers(0, 255), st.binary(max_size=20)), min_size=1, max_size=6
    )
)
def test_udh_round_trip(ies: list[InformationElement]) -> None:
    header = encode_header(ies)
    assert header[0] == len(header) - 1
    assert decode_header(header[1:]) == tuple(ies)


@given(
    concat=st.builds(Concat, st.integers(0, 255), st.just(255), st.integers(1, 255))
    | st.builds(Concat, st.integers(0, 0xFFFF), st.just(255), st.integers(1, 255), st.just(16))
)
def test_concat_ie_round_trip(concat: Concat) -> None:
    assert Concat.from_ie(concat.to_ie()) == concat


VALID = [
    "079119890400202306400C91197909913764511090718384225110907183252200",
    "0021000C91197909913764000036D3E614242F8FCB697B99AC038964B058AD058BB5603950ECA69BE17433D80A56D3CD603A1032AD5004DD73741D341501",
    "07918497483252F0440B918496445078F70008712132014474400B0800032A02017001000041",
    "07918497483252F0440485012039007121320144744016060804001002" + "01D7327BFD6EB340E2321BF46E03",
    "07912658050000F006010D91265817373754F501010161705382010101617083820000",
]


def _decodes_or_pdu_error(data: bytes | str, smsc: bool) -> None:
    """Decoding, and re-encoding what decoded, either works or raises PduError."""
    try:
        message = decode_pdu(data, smsc=smsc)
    except PduError:
        return
    assert isinstance(message, Deliver | Submit | StatusReport)
    try:
        encoded = message.encode()
    except PduError:
        return
    assert encoded[message.smsc.encode_smsc()[0] + 1 if message.smsc else 1 :] == message.encode_tpdu()


@pytest.mark.slow
@given(data=st.binary(max_size=200), smsc=st.booleans())
@settings(max_examples=1000)
def test_fuzz_bytes_only_pdu_error(data: bytes, smsc: bool) -> None:
    _decodes_or_pdu_error(data, smsc)


@given(text=st.text(st.sampled_from("0123456789abcdefABCDEF \n\tZ"), max_size=120), smsc=st.booleans())
@settings(max_examples=300)
def test_fuzz_hex_only_pdu_error(text: str, smsc: bool) -> None:
    _decodes_or_pdu_error(text, smsc)


@pytest.mark.slow
@given(
    pdu=st.sampled_from(VALID),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 200),
)
@settings(max_examples=1000)
def test_fuzz_mutated_vectors_only_pdu_error(pdu: str, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(bytes.fromhex(pdu))
    for index, value in edits:
        if index < len(data):
            data[index] = value
    _decodes_or_pdu_error(bytes(data[:cut] if cut < len(data) else data), True)
