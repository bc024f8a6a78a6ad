"""Tolerant decoding: odd fields that matter for nothing are read as unknown, never fatal.

Every vector is hand-built octet by octet from TS 23.040 (clause numbers next to each field) in
the shapes real modems produce (sources named per vector), or copied from a public dump where
one exists. What matching a report needs (TP-MR, TP-RA, TP-ST) and what reading a text needs
(TP-OA, UDH, user data) must still raise PduError when broken.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modem.errors import PduError
from modem.pdu import Deliver, Encoding, StatusReport, Submit, decode_pdu, tolerance

UTC1 = datetime.timezone(datetime.timedelta(hours=1))
UTC2 = datetime.timezone(datetime.timedelta(hours=2))


def _naive(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime.datetime:
    """The SC's local time with its zone unknown, as the decoder gives it."""
    return datetime.datetime(year, month, day, hour, minute, second)  # noqa: DTZ001 - naive on purpose


# SMSC fields (TS 24.011 8.2.5.2: length in octets incl. TOA, TOA, semi-octets, F filler)
SMSC_OK = "07" + "91" + "947101670000"  # +491710760000
# D-Link DWM-156 / Qualcomm shape (gammu #156: "06 93 050056F9F6"): 6 octets, and an F
# nibble inside the number rather than only as the final filler.
SMSC_FILLER = "06" + "91" + "94712F70F6"  # 4 9 1 7 F 2 0 7 6 (F filler) -> +4917?2076

# SMS-STATUS-REPORT body (9.2.2.3): fo 06 (MTI 10, MMS 1), TP-MR 0x2A,
# TP-RA 9.1.2.5: 11 digits, TOA 91, 4 9 1 5 1 1 2 3 4 5 6 + F
REPORT_HEAD = "06" + "2A" + "0B91" + "945111325 4F6".replace(" ", "")
# 9.2.3.11 timestamps: YY MM DD hh mm ss TZ, digits swapped; TZ 40 = +4 quarter hours
SCTS = "52110341509040"  # 2025-11-30 14:05:09 +01:00
DT = "52110341502140"  # 2025-11-30 14:05:12 +01:00
DELIVERED = "00"  # 9.2.3.15: received by the SME


def _report(smsc: str = SMSC_OK, scts: str = SCTS, dt: str = DT, tail: str = "") -> str:
    return smsc + REPORT_HEAD + scts + dt + DELIVERED + tail


def _matching_fields(report: StatusReport) -> tuple[int, str, int]:
    return report.mr, report.recipient.number, report.status


TOLERATED_REPORTS = [
    pytest.param(
        _report(smsc=SMSC_FILLER),
        {"smsc": "+4917?2076", "scts": datetime.datetime(2025, 11, 30, 14, 5, 9, tzinfo=UTC1)},
        "SMSC address",
        id="smsc-filler-inside-dwm156-shape",
    ),
    pytest.param(
        # TZ octet FF: both nibbles are fillers, not digits (the zone is unknown).
        _report(scts=SCTS[:12] + "FF"),
        {"scts": _naive(2025, 11, 30, 14, 5, 9), "dt_zone": UTC1},  # naive: zone unknown
        "time zone",
        id="scts-zone-not-decimal",
    ),
    pytest.param(
        # Units nibble A in the DT zone octet (0xA4): not a decimal digit.
        _report(dt=DT[:12] + "A4"),
        {"discharge_time": _naive(2025, 11, 30, 14, 5, 12)},
        "time zone",
        id="dt-zone-units-nibble-a",
    ),
    pytest.param(
        # Both clocks all-F (a modem filling unknown fields with fillers).
        _report(scts="FF" * 7, dt="FF" * 7),
        {"scts": None, "discharge_time": None},
        "not a date and time",
        id="timestamps-all-filler",
    ),
    pytest.param(
        # SCTS says month 13, DT day 32: valid BCD, invalid dates.
        _report(scts="52310341509040", dt="52112341502140"),
        {"scts": None, "discharge_time": None},
        "not a date and time",
        id="timestamps-impossible-dates",
    ),
    pytest.param(
        # Both oddities of the field report at once, on the same report.
        _report(smsc=SMSC_FILLER, scts=SCTS[:12] + "FF"),
        {"smsc": "+4917?2076", "scts": _naive(2025, 11, 30, 14, 5, 9)},
        "SMSC address",
        id="smsc-filler-and-zone-together",
    ),
    pytest.param(
        # Real: gammu tests/at-sms/32.dump, a report read from SIM storage padded with FF to the
        # record length (TS 31.102 EF_SMS); FF as TP-PI announces an extension that never ends.
        "079124602009999002AB098106845688F8907080517375809070805183018000" + "FF" * 120,
        {
            "mr": 0xAB,
            "recipient": "604865888",
            "scts": datetime.datetime(2009, 7, 8, 15, 37, 57, tzinfo=UTC2),
        },
        "FF padding",
        id="gammu-32-sim-record-padding",
    ),
    pytest.param(
        # TP-PI (9.2.3.27) with reserved bits 3..6 set and nothing else: ignored.
        _report(tail="78"),
        {"parameter_indicator": 0x78},
        "reserved bits",
        id="tp-pi-reserved-bits",
    ),
    pytest.param(
        # TP-PI announces a TP-DCS (bit 1) from reserved coding group 1000 (TS 23.038 clause 4).
        _report(tail="02" + "84"),
        {"dcs": 0x84},
        "reserved coding group",
        id="tail-dcs-reserved-group",
    ),
]


@pytest.mark.parametrize(("pdu", "expected", "warning"), TOLERATED_REPORTS)
def test_odd_report_still_matches(pdu: str, expected: dict[str, Any], warning: str) -> None:
    report = decode_pdu(pdu)
    assert isinstance(report, StatusReport)
    if "mr" not in expected:
        assert _matching_fields(report) == (0x2A, "+49151123456", 0)
    assert report.is_final
    assert report.is_success
    for name, value in expected.items():
        if name == "smsc":
            assert report.smsc is not None
            assert report.smsc.number == value
        elif name == "recipient":
            assert report.recipient.number == value
        elif name == "dt_zone":
            assert report.discharge_time is not None
            assert report.discharge_time.tzinfo == value
        else:
            got = getattr(report, name)
            assert got == value, name
            if isinstance(value, datetime.datetime):
                assert got.tzinfo == value.tzinfo, name  # naive stays naive: the zone is unknown
    assert any(warning in w for w in report.warnings), report.warnings


TOLERATED_DELIVERS = [
    pytest.param(
        # Real: gammu tests/at-sms/07.dump with its zone octet 80 (+2 h) turned into F8.
        "0791534850020200040C915348650789550000609060816413F804D4F29C0E",
        {"text": "Test", "sender": "+358456709855", "scts": _naive(2006, 9, 6, 18, 46, 31)},
        "time zone",
        id="zone-not-decimal",
    ),
    pytest.param(
        # SCTS hours "AA": not BCD (9.1.2.3); the text is what matters.
        SMSC_OK + "040B918496445078F70000" + "7121AA01447440" + "04D4F29C0E",
        {"text": "Test", "scts": None},
        "not a date and time",
        id="scts-not-bcd",
    ),
    pytest.param(
        SMSC_OK + "040B918496445078F70000" + "71313201447440" + "04D4F29C0E",
        {"text": "Test", "scts": None},
        "not a date and time",
        id="scts-month-13",
    ),
    pytest.param(
        SMSC_FILLER + "040B918496445078F70000" + "71213201447440" + "04D4F29C0E",
        {"text": "Test", "sender": "+48694405877"},
        "SMSC address",
        id="smsc-filler-inside",
    ),
    pytest.param(
        # TP-DCS 0x84: coding group 1000 is reserved; TS 23.038 clause 4 says read it as GSM 7-bit.
        SMSC_OK + "040B918496445078F70084" + "71213201447440" + "04D4F29C0E",
        {"text": "Test", "encoding": Encoding.GSM7, "dcs": 0x84},
        "reserved coding group",
        id="dcs-reserved-group",
    ),
    pytest.param(
        # TP-DCS 0x0C: general group, alphabet bits 11 "reserved" -> GSM 7-bit (TS 23.038 4).
        SMSC_OK + "040B918496445078F7000C" + "71213201447440" + "04D4F29C0E",
        {"text": "Test", "encoding": Encoding.GSM7},
        "reserved alphabet",
        id="dcs-reserved-alphabet",
    ),
    pytest.param(
        # fo 07: TP-MTI 11 is reserved; 9.2.3.1: "process the message as if it were an SMS-DELIVER".
        SMSC_OK + "070B918496445078F70000" + "71213201447440" + "04D4F29C0E",
        {"text": "Test", "sender": "+48694405877"},
        "TP-MTI 3",
        id="mti-reserved",
    ),
    pytest.param(
        # Read from SIM storage: FF padding to the 176-octet record after the user data.
        SMSC_OK + "040B918496445078F70000" + "71213201447440" + "04D4F29C0E" + "FF" * 10,
        {"text": "Test"},
        "FF padding",
        id="sim-record-padding",
    ),
]


@pytest.mark.parametrize(("pdu", "expected", "warning"), TOLERATED_DELIVERS)
def test_odd_deliver_is_still_readable(pdu: str, expected: dict[str, Any], warning: str) -> None:
    message = decode_pdu(pdu)
    assert isinstance(message, Deliver)
    for name, value in expected.items():
        got = getattr(message, name)
        if name == "sender":
            got = got.number
        assert got == value, name
        if isinstance(value, datetime.datetime):
            assert got.tzinfo is None
    assert any(warning in w for w in message.warnings), message.warnings


def test_real_submit_with_trailing_octets_is_read() -> None:
    # gammu tests/at-sms/14.dump: two octets after the UCS-2 user data.
    pdu = "07919761989901F031000B919761084218F200F9FF12042204350441044200200054006500730074"
    message = decode_pdu(pdu)
    assert isinstance(message, Submit)
    assert message.destination.number == "+79168024812"
    assert message.warnings == ("2 octet(s) 0074 after the TPDU ignored",)


def test_submit_with_unreadable_absolute_validity_is_read() -> None:
    # fo 19: SUBMIT with TP-VPF 11 (absolute, 9.2.3.12.2) whose seven octets are all F.
    pdu = "00" + "19" + "00" + "0B918496445078F7" + "0000" + "FF" * 7 + "04D4F29C0E"
    message = decode_pdu(pdu)
    assert isinstance(message, Submit)
    assert (message.text, message.validity_absolute) == ("Test", None)
    assert any("TP-VP" in w for w in message.warnings)


def test_clean_pdus_carry_no_warnings() -> None:
    assert decode_pdu(_report()).warnings == ()
    assert decode_pdu(SMSC_OK + "040B918496445078F70000" + "71213201447440" + "04D4F29C0E").warnings == ()


def test_warnings_do_not_change_equality() -> None:
    # Warnings describe how a PDU was read, not the message: a clean re-encode compares equal.
    odd = decode_pdu(_report(tail="78"))
    clean = decode_pdu(odd.hex())
    assert odd == clean
    assert clean.warnings == ("TP-PI 0x78 sets reserved bits: ignored (9.2.3.27)",)


STILL_FATAL = [
    # Matching needs TP-MR, TP-RA and TP-ST; reading needs TP-OA, the UDH and the user data.
    pytest.param(SMSC_FILLER + "062A" + "0B91945111F254F6" + SCTS + DT + "00", id="report-ra-filler-inside"),
    pytest.param(SMSC_FILLER + REPORT_HEAD + SCTS + DT, id="report-no-status"),
    pytest.param(SMSC_FILLER + REPORT_HEAD + SCTS + DT[:8], id="report-dt-truncated"),
    pytest.param(SMSC_FILLER + "06", id="report-no-mr"),
    pytest.param(SMSC_FILLER + "062A0B91", id="report-ra-truncated"),
    pytest.param("0691947", id="smsc-odd-hex"),
    pytest.param("0C91947120", id="smsc-length-past-end"),
    pytest.param(SMSC_FILLER + "040B918496F45078F70000" + SCTS + "04D4F29C0E", id="deliver-oa-filler-inside"),
    pytest.param(SMSC_FILLER + "040B918496445078F70000" + SCTS + "05D4F29C0E", id="deliver-udl-past-end"),
    pytest.param(SMSC_FILLER + "440B918496445078F70008" + SCTS + "0408050000", id="deliver-udhl-past-ud"),
    pytest.param(SMSC_FILLER + "440B918496445078F70008" + SCTS + "0403000900", id="deliver-ie-past-udh"),
    pytest.param(SMSC_FILLER + "040B918496445078F70000" + SCTS[:10], id="deliver-scts-truncated"),
]


@pytest.mark.parametrize("pdu", STILL_FATAL)
def test_what_matching_or_reading_needs_still_raises(pdu: str) -> None:
    with pytest.raises(PduError):
        decode_pdu(pdu)


def test_the_same_oddity_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="modem.pdu")
    # Ten reports from the same D-Link stick, each with its own timestamps and MR.
    for n in range(10):
        pdu = SMSC_FILLER + f"06{n:02X}0B91945111325 4F6".replace(" ", "") + SCTS + DT + "00"
        assert isinstance(decode_pdu(pdu), StatusReport)
    assert [r.getMessage() for r in caplog.records] == [
        "StatusReport decoded with a field read as unknown: SMSC address semi-octets 94712F70F6 "
        "have a filler inside the number: read as +4917?2076"
    ]
    # Another kind of oddity is news, and is logged; the first kind stays quiet.
    decode_pdu(_report(scts=SCTS[:12] + "FF"))
    decode_pdu(_report(smsc=SMSC_FILLER, dt=DT[:12] + "FF"))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "TP-SCTS time zone octet 0xFF" in messages[1]
    assert "TP-DT time zone octet 0xFF" in messages[2]


def test_a_repeat_is_logged_again_after_the_quiet_period(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="modem.pdu")
    clock = [1000.0]
    monkeypatch.setattr(tolerance, "clock", lambda: clock[0])
    for _ in range(3):
        decode_pdu(_report(smsc=SMSC_FILLER))
    clock[0] += tolerance.REPEAT_S + 1
    decode_pdu(_report(smsc=SMSC_FILLER))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[1].endswith("(2 more like it since last logged)")


@pytest.mark.slow
@given(
    smsc_value=st.binary(min_size=1, max_size=10),
    toa=st.integers(0x80, 0xFF),
    scts=st.binary(min_size=7, max_size=7),
    dt=st.binary(min_size=7, max_size=7),
    tail=st.binary(max_size=12),
)
@settings(max_examples=300)
def test_any_smsc_clock_or_tail_leaves_the_match_intact(
    smsc_value: bytes, toa: int, scts: bytes, dt: bytes, tail: bytes
) -> None:
    """Whatever sits in the fields matching ignores, the report decodes with its MR, RA and ST."""
    pdu = (
        bytes((len(smsc_value) + 1, toa))
        + smsc_value
        + bytes.fromhex(REPORT_HEAD)
        + scts
        + dt
        + bytes.fromhex(DELIVERED)
        + tail
    )
    report = decode_pdu(pdu)
    assert isinstance(report, StatusReport)
    assert _matching_fields(report) == (0x2A, "+49151123456", 0)


def test_reserved_pid_is_read_with_a_warning() -> None:
    # TP-PID 0x80: bits 7..6 = 10 are reserved (9.2.3.9); the text is still the text.
    message = decode_pdu(SMSC_OK + "040B918496445078F78000" + "71213201447440" + "04D4F29C0E")
    assert isinstance(message, Deliver)
    assert (message.text, message.pid) == ("Test", 0x80)
    assert message.warnings == ("TP-PID 0x80 is reserved (bits 7..6 = 10): ignored",)
