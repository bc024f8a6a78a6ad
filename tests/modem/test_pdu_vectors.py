"""Real and hand-built PDUs (hex as modems print it) against their decoded values."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from modem.errors import PduError
from modem.pdu import (
    Address,
    Concat,
    Deliver,
    Encoding,
    InformationElement,
    StatusReport,
    Submit,
    TpStatus,
    decode_pdu,
    gsm7,
    join_user_data,
)
from modem.pdu.status_report import StatusCategory
from modem.pdu.udh import encode_header

VECTORS = Path(__file__).parent / "data" / "pdu-vectors.tsv"
TYPES: dict[str, type[Deliver] | type[Submit] | type[StatusReport]] = {
    "SMS-DELIVER": Deliver,
    "SMS-SUBMIT": Submit,
    "SMS-STATUS-REPORT": StatusReport,
}


def _rows() -> list[tuple[str, str, dict[str, Any]]]:
    rows = []
    for line in VECTORS.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        pdu, source, _notes, decoded = line.split("\t")
        rows.append((pdu, source, json.loads(decoded)))
    return rows


ROWS = _rows()
ROW_IDS = [f"{i}-{row[2]['type']}" for i, row in enumerate(ROWS)]


def _address(address: Address) -> str:
    return f"alnum:{address.number}" if address.ton == 5 else address.number


def _udl(message: Deliver | Submit) -> int:
    header = encode_header(((message.concat.to_ie(),) if message.concat else ()) + message.extra_ies)
    if message.encoding is Encoding.GSM7:
        septets = (len(header) * 8 + 6) // 7 if header else 0
        return septets + len(message.user_data)
    return len(header) + len(message.user_data)


def test_vector_file_has_every_usable_row() -> None:
    # 29 rows in shared/modem-traces, of which the withheld ones are not in the file.
    assert len(ROWS) == 17
    assert all("withheld" not in pdu for pdu, _s, _d in ROWS)


@pytest.mark.parametrize(("pdu", "source", "expected"), ROWS, ids=ROW_IDS)
def test_vector_decodes_to_documented_values(pdu: str, source: str, expected: dict[str, Any]) -> None:
    message = decode_pdu(pdu)
    assert isinstance(message, TYPES[expected["type"]]), source
    smsc = expected["smsc"]
    assert (message.smsc.number if message.smsc else None) == smsc
    if isinstance(message, StatusReport | Deliver):
        assert message.more_messages is expected["MMS(no more msgs)"]
    if isinstance(message, StatusReport):
        assert message.first_octet == int(expected["first_octet"], 16)
        assert message.mr == expected["mr"]
        assert _address(message.recipient) == expected["ra"]
        assert message.recipient.toa == expected["tora"]
        for field, value in (("scts", message.scts), ("dt", message.discharge_time)):
            wanted = datetime.datetime.fromisoformat(expected[field])
            assert value == wanted
            assert value.utcoffset() == wanted.utcoffset()
        assert message.status == int(expected["st"], 16)
        assert message.status_report_qualifier is expected["SRQ"]
        final_success = expected["st_class"] == "final-success"
        assert (message.is_final and message.is_success) is final_success
        assert message.tp_status.meaning.startswith("received by the SME")
        return
    assert message.first_octet == int(expected["first_octet"], 16)
    assert message.pid == expected["pid"]
    assert message.dcs == int(expected["dcs"], 16)
    assert message.encoding == expected["alphabet"]
    assert message.text == expected["text"]
    assert _udl(message) == expected["udl"]
    ies = ((message.concat.to_ie(),) if message.concat else ()) + message.extra_ies
    assert [(f"0x{ie.iei:02X}", ie.data.hex().upper()) for ie in ies] == [
        (ie["iei"], ie["data"]) for ie in expected.get("udh", [])
    ]
    for ie in expected.get("udh", []):
        if "concat8" in ie:
            assert message.concat == Concat(**ie["concat8"])
    if isinstance(message, Deliver):
        assert _address(message.sender) == expected["oa"]
        assert message.sender.toa == expected["toa"]
        assert message.status_report_indication is expected["SRI"]
        assert message.reply_path is expected["RP"]
        wanted = datetime.datetime.fromisoformat(expected["scts"])
        assert message.scts == wanted
        assert message.scts.utcoffset() == wanted.utcoffset()
    else:
        assert message.mr == expected["mr"]
        assert _address(message.destination) == expected["da"]
        assert message.destination.toa == expected["toa"]
        assert message.status_report_request is expected["SRR"]
        assert message.reject_duplicates is expected["RD"]
        assert message.validity_relative == expected.get("vp_rel")
        assert message.first_octet >> 3 & 0x03 == expected["VPF"]
        assert message.tpdu_length == expected["tpdu_len_for_CMGS"]


@pytest.mark.parametrize(("pdu", "source", "expected"), ROWS, ids=ROW_IDS)
def test_vector_reencodes_to_same_octets(pdu: str, source: str, expected: dict[str, Any]) -> None:
    message = decode_pdu(pdu)
    assert message.hex() == pdu.upper(), source
    assert message.tpdu_length == len(bytes.fromhex(pdu)) - (bytes.fromhex(pdu)[0] + 1)
    # The type's own decode agrees with decode_pdu.
    assert TYPES[expected["type"]].decode(pdu) == message


def test_emoji_deliver_decodes_exactly() -> None:
    pdu = "07918497483252F0040B918496445078F70008712132014474400A004800690020D83DDE00"
    message = decode_pdu(pdu)
    assert isinstance(message, Deliver)
    assert message.text == "Hi \U0001f600"
    assert message.user_data == bytes.fromhex("004800690020D83DDE00")


def test_gammu_ucs2_parts_with_extra_ie_join() -> None:
    parts = [decode_pdu(pdu) for pdu, _s, d in ROWS if d.get("udh") and d["udh"][1]["iei"] == "0x70"]
    assert [p.concat for p in parts if isinstance(p, Deliver)] == [Concat(42, 2, 1), Concat(42, 2, 2)]
    assert all(p.extra_ies == (InformationElement(0x70, b"\x00"),) for p in parts if isinstance(p, Deliver))
    assert join_user_data([p for p in parts if isinstance(p, Deliver)]) == "AB"


# Hand-built DELIVERs; user data packed by a separate bit-stream packer, not ours.
SMSC = "07918497483252F0"
SCTS = "71213201447440"  # 2017-12-23 10:44:47 +01:00
CRAFTED = [
    pytest.param(
        # KPN-like: short code OA 1002 (TOA 0x85), PID 0x39, 7-octet UDH with a 16-bit
        # reference (no fill bits). python-gsmmodem-new 0.13 decodes this as "elkom, bel om".
        f"{SMSC}44048501203900{SCTS}16060804001002 01D7327BFD6EB340E2321BF46E03",
        {
            "sender": Address("1002", 0, 5),
            "pid": 0x39,
            "concat": Concat(16, 2, 1, ref_bits=16),
            "text": "Welkom, bel om",
        },
        id="gsm7-16bit-ref-7-octet-udh",
    ),
    pytest.param(
        # 6-octet UDH, 8-bit reference: 1 fill bit before the text.
        f"{SMSC}440B918496445078F70000{SCTS}0C0500034C0202906536FB0D",
        {"concat": Concat(0x4C, 2, 2), "text": "Hello"},
        id="gsm7-8bit-ref-fill-bit",
    ),
    pytest.param(
        f"{SMSC}040B918496445078F70000{SCTS}079BF28687DFF800",
        {"text": "€[x]"},
        id="gsm7-extension-chars",
    ),
    pytest.param(
        # Alphanumeric OA "Megafon" (TOA 0xD0): 13 semi-octets used.
        f"{SMSC}040DD0CDF2396C7EBB010000{SCTS}02C834",
        {"sender": Address("Megafon", 5, 0), "text": "Hi"},
        id="alphanumeric-sender",
    ),
    pytest.param(
        f"{SMSC}440B918496445078F70008{SCTS}0B06080412340301D83DDE00",
        {"concat": Concat(0x1234, 3, 1, ref_bits=16), "text": "\U0001f600"},
        id="ucs2-16bit-ref",
    ),
    pytest.param(
        # A part that ends in half an emoji (the sender split the pair): U+FFFD, no error.
        f"{SMSC}040B918496445078F70008{SCTS}040041D83D",
        {"text": "A\ufffd", "user_data": bytes.fromhex("0041D83D")},
        id="ucs2-lone-high-surrogate",
    ),
    pytest.param(
        f"{SMSC}040B918496445078F70008{SCTS}03004100",
        {"text": "A\ufffd"},
        id="ucs2-odd-octet-count",
    ),
    pytest.param(
        # Time zone with the sign bit: 0x0A = -20 quarter hours.
        f"{SMSC}040B918496445078F700007121320144740A04D4F29C0E",
        {
            "scts": datetime.datetime(
                2017, 12, 23, 10, 44, 47, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))
            )
        },
        id="negative-time-zone",
    ),
    pytest.param(
        # Nepal, +05:45 = 23 quarter hours.
        f"{SMSC}040B918496445078F7000071213201447432 04D4F29C0E",
        {
            "scts": datetime.datetime(
                2017, 12, 23, 10, 44, 47, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=45))
            )
        },
        id="quarter-hour-time-zone",
    ),
    pytest.param(
        # Concatenation IE with sequence 0: 9.2.3.24.1 says ignore it.
        f"{SMSC}440B918496445078F70008{SCTS}080500034C02000041",
        {"concat": None, "extra_ies": (InformationElement(0, bytes.fromhex("4C0200")),), "text": "A"},
        id="concat-seq-zero-ignored",
    ),
    pytest.param(
        # Trailing octets after the user data, as some modems print them.
        f"{SMSC}040B918496445078F70000{SCTS}04D4F29C0EFFFF00",
        {"text": "Test"},
        id="trailing-octets-ignored",
    ),
    pytest.param(
        # Lower-case hex with whitespace, as copied from a terminal.
        f" {SMSC.lower()}\n040b918496445078f70000 {SCTS}04d4f29c0e\r\n",
        {"text": "Test"},
        id="lower-case-and-whitespace",
    ),
    pytest.param(
        # Flash SMS (class 0, DCS 0x10) and DCS group 1111 8-bit (0xF4).
        f"{SMSC}040B918496445078F70010{SCTS}04D4F29C0E",
        {"text": "Test", "dcs": 0x10, "encoding": Encoding.GSM7},
        id="dcs-class-0",
    ),
    pytest.param(
        f"{SMSC}040B918496445078F700F4{SCTS}03C0FFEE",
        {"user_data": b"\xc0\xff\xee", "encoding": Encoding.EIGHT_BIT, "dcs": 0xF4},
        id="dcs-8bit-data",
    ),
]


@pytest.mark.parametrize(("pdu", "expected"), CRAFTED)
def test_crafted_deliver(pdu: str, expected: dict[str, Any]) -> None:
    message = decode_pdu(pdu)
    assert isinstance(message, Deliver)
    for field, value in expected.items():
        assert getattr(message, field) == value, field
        if field == "scts":
            assert message.scts is not None
            assert message.scts.utcoffset() == value.utcoffset()


NOT_CANONICAL = {"concat-seq-zero-ignored", "trailing-octets-ignored", "lower-case-and-whitespace"}


@pytest.mark.parametrize(
    "pdu", [pytest.param(p.values[0], id=p.id) for p in CRAFTED if p.id not in NOT_CANONICAL]
)
def test_crafted_deliver_reencodes(pdu: str) -> None:
    hexed = "".join(pdu.split()).upper()
    assert decode_pdu(hexed).hex() == hexed


def test_submit_with_16bit_ref_and_7_octet_udh_encodes_known_octets() -> None:
    submit = Submit(
        destination=Address.parse("+4915112345678"),
        text="Welkom, bel om",
        concat=Concat(16, 2, 1, ref_bits=16),
        status_report_request=False,
    )
    assert submit.hex() == "0041000D91945111325476F800001606080400100201D7327BFD6EB340E2321BF46E03"
    assert submit.tpdu_length == 34
    assert decode_pdu(submit.hex()) == submit


STATUS_REPORTS = [
    # (TPDU without SMSC, status, final, success, category)
    ("0006D60B911326880736F41110117195514011101171957140" + "30", 0x30, False, False, StatusCategory.TRYING),
    ("0006D60B911326880736F41110117195514011101171957140" + "20", 0x20, False, False, StatusCategory.TRYING),
    (
        "0006D60B911326880736F41110117195514011101171957140" + "46",
        0x46,
        True,
        False,
        StatusCategory.PERMANENT,
    ),
    ("0006D60B911326880736F41110117195514011101171957140" + "62", 0x62, True, False, StatusCategory.GAVE_UP),
    ("0006D60B911326880736F41110117195514011101171957140" + "01", 0x01, True, True, StatusCategory.COMPLETED),
    ("0006D60B911326880736F41110117195514011101171957140" + "1F", 0x1F, True, True, StatusCategory.COMPLETED),
    ("0006D60B911326880736F41110117195514011101171957140" + "80", 0x80, True, False, StatusCategory.RESERVED),
]


@pytest.mark.parametrize(("pdu", "status", "final", "success", "category"), STATUS_REPORTS)
def test_status_report_classes(
    pdu: str, status: int, final: bool, success: bool, category: StatusCategory
) -> None:
    report = decode_pdu(pdu)
    assert isinstance(report, StatusReport)
    assert report.status == status
    assert (report.is_final, report.is_success) == (final, success)
    assert report.tp_status.category is category
    assert TpStatus(status).is_final is final


def test_status_meanings() -> None:
    assert TpStatus(0x46).meaning == "SM validity period expired"
    assert TpStatus(0x30).meaning == "temporary error, SC still trying (SC-specific)"
    assert TpStatus(0x4A).meaning == "permanent error (reserved)"
    assert repr(TpStatus(0x46)) == "TpStatus(0x46)"


def test_status_report_with_tail_user_data() -> None:
    # TP-PI 06 (DCS + UDL), DCS 00, UDL 4, "Test".
    pdu = "0006D60B911326880736F411101171955140111011719571400006" + "00" + "04D4F29C0E"
    report = decode_pdu(pdu)
    assert isinstance(report, StatusReport)
    assert (report.parameter_indicator, report.dcs, report.text) == (0x06, 0, "Test")
    assert report.hex() == pdu


@pytest.mark.parametrize(
    "tail",
    ["07", "0700", "04FF", "8180"],  # PI announces fields that are not there
)
def test_status_report_truncated_tail_is_tolerated(tail: str) -> None:
    pdu = "0006D60B911326880736F4111011719551401110117195714000" + tail
    report = decode_pdu(pdu)
    assert isinstance(report, StatusReport)
    assert (report.mr, report.status, report.parameter_indicator) == (0xD6, 0, None)


MALFORMED = [
    pytest.param("", id="empty"),
    pytest.param("0", id="odd-hex"),
    pytest.param("07918497483252F0040B91849644507", id="odd-hex-long"),
    pytest.param("ZZ", id="not-hex"),
    pytest.param("00", id="smsc-only"),
    pytest.param("0791849748", id="smsc-past-end"),
    # DWM-156 style: the TOA where the SMSC length belongs, so the length runs past the end.
    pytest.param("91849748325206B70AA18092020000317071518590803170715185418000", id="malformed-smsc"),
    pytest.param("0003", id="mti-reserved"),
    pytest.param("0004", id="deliver-no-address"),
    pytest.param("00040B9184", id="address-past-end"),
    pytest.param(f"00040B918496445078F70000{SCTS[:8]}", id="scts-truncated"),
    pytest.param(f"00040B918496445078F70000{SCTS}", id="no-udl"),
    pytest.param(f"00040B918496445078F70000{SCTS}05D4F29C0E", id="udl-past-end"),
    # Unreadable SCTS digits are no longer fatal: see test_pdu_tolerant.py.
    pytest.param("00040B918496F45078F70000" + SCTS + "04D4F29C0E", id="address-filler-inside"),
    pytest.param(f"00440B918496445078F70008{SCTS}0408050000", id="udhl-past-ud"),
    pytest.param(f"00440B918496445078F70008{SCTS}0403000900", id="ie-past-udh"),
    pytest.param(f"00440B918496445078F70000{SCTS}020600", id="gsm7-udh-longer-than-udl"),
    pytest.param("0001000B917228001011F10000", id="submit-no-udl"),
    pytest.param("0011000B917228001011F1000001", id="submit-no-vp"),
    pytest.param("0006D60B911326880736F41110117195514011101171957140", id="report-no-status"),
]


@pytest.mark.parametrize("pdu", MALFORMED)
def test_malformed_pdu_raises_pdu_error(pdu: str) -> None:
    with pytest.raises(PduError):
        decode_pdu(pdu)


@pytest.mark.parametrize(("pdu", "source", "expected"), ROWS, ids=ROW_IDS)
def test_every_truncation_of_a_vector_raises_pdu_error(
    pdu: str, source: str, expected: dict[str, Any]
) -> None:
    octets = bytes.fromhex(pdu)
    # A status report is complete once TP-ST is read; a DELIVER/SUBMIT at the end of its UD.
    complete = len(octets)
    if expected["type"] == "SMS-STATUS-REPORT":
        complete = len(octets) - len(expected.get("trailing_octets(PI...)", "")) // 2
    for cut in range(complete):
        with pytest.raises(PduError):
            decode_pdu(octets[:cut])


def test_bytes_are_raw_octets_and_smsc_flag() -> None:
    tpdu = "0001000B917228001011F100000CC8329BFD065DDF72363904"
    submit = decode_pdu(bytes.fromhex(tpdu))
    assert isinstance(submit, Submit)
    assert submit.text == "Hello World!"
    # Without the SMSC field (as some modems print +CMGR in PDU mode).
    same = decode_pdu(tpdu[2:], smsc=False)
    assert same == submit
    assert Submit.decode(tpdu[2:], smsc=False).encode_tpdu().hex().upper() == tpdu[2:]


@pytest.mark.parametrize(
    ("wrong", "pdu"),
    [
        (Deliver, "0001000B917228001011F100000CC8329BFD065DDF72363904"),
        (Submit, "07918497483252F0040B918496445078F700007121320144744004D4F29C0E"),
        (StatusReport, "07918497483252F0040B918496445078F700007121320144744004D4F29C0E"),
    ],
)
def test_decode_of_the_wrong_type_raises(wrong: type[Deliver | Submit | StatusReport], pdu: str) -> None:
    with pytest.raises(PduError, match="TP-MTI"):
        wrong.decode(pdu)


@pytest.mark.parametrize("text", ["abcdefg@", "@@@@@@@@", "x" * 15 + "@", "Hi there, see you @"])
def test_text_ending_in_at_sign_on_a_septet_boundary_round_trips(text: str) -> None:
    # 8n septets fill 7n octets exactly; a last septet of 0 ('@') is not padding (the library
    # drops it as such, and decoding an SMS of 8, 16, ... characters ending in '@' failed).
    septets = gsm7.encode(text)
    assert gsm7.decode(gsm7.unpack(gsm7.pack(septets), len(septets))) == text
