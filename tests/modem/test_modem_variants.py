"""The real modem stack against the simulator's other models and answer wordings, over ptys.

Fibocom (a stray byte aborts a send: the engine never writes one, and recovers when line noise
does), ZTE and Telit profiles end to end, every +CMGR/+CMGL head, +CMGS with a timestamp or an
ack PDU after the MR, and status reports from a D-Link/Qualcomm stick with odd fields.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import pytest

from modem import CmsError, ModemState
from modem.answers import parse_cmgl_header, parse_cmgr_header
from modem.pdu import StatusReport
from modem.simulator import Stored
from modem.simulator.variants import CmgrHeader
from tests.support.simulators import SimFactory

from .test_modem import Collected, eventually, running

PHONE = "+4915112345678"
FRIEND = "+4917612345678"


@pytest.mark.parametrize(
    ("model", "profile"),
    [("fibocom-g510", "fibocom"), ("zte-k3565", "zte"), ("telit-le910", "telit")],
)
async def test_model_sends_receives_and_matches_reports(
    sim_factory: SimFactory, model: str, profile: str
) -> None:
    sim = await sim_factory(model, noise_interval_s=0.01)
    collected = Collected()
    async with running(sim, collected) as modem:
        assert modem.profile.name == profile
        sent = await modem.send_text(PHONE, "hello from " + model)
        await sim.inject(sender=FRIEND, text="and back")
        await eventually(lambda: bool(collected.delivers and collected.reports))
        assert [m.text for m in sim.network.phone(PHONE).inbox] == ["hello from " + model]
        assert [m.text for m in collected.delivers] == ["and back"]
        assert [(r.mr, r.is_success) for r in collected.reports] == [(sent[0].mr, True)]
        await eventually(lambda: not sim.state.storage["SM"].slots)  # read, handed over, deleted
        if model == "zte-k3565":
            assert modem.info.cnmi == "2,1,0,2,0"  # straight to stored reports, no refused ds=1
            assert not sim.state.noise  # the profile's AT+CPMS? stopped the +ZUSIMR flood
        assert sim.cmgs_aborts == 0


async def test_fibocom_engine_never_writes_while_a_send_is_pending(sim_factory: SimFactory) -> None:
    # Reports and inbound SMS arrive while parts are being submitted (URCs mid-send); any byte
    # the engine wrote before +CMGS (a poll, a CMGR for the +CMTI, a CR) would abort that part.
    sim = await sim_factory("fibocom-g510", submit_latency_s=0.02)
    collected = Collected()
    text = "".join(f"{i:03d} long message part " for i in range(20))  # 3 parts
    async with running(sim, collected) as modem:
        for n in range(4):
            send = asyncio.ensure_future(modem.send_text(PHONE, f"{n}: {text}"))
            await sim.inject(sender=FRIEND, text=f"reply {n}")
            await send
        await eventually(lambda: len(collected.delivers) == 4 and len(collected.reports) == 12)
    assert sim.cmgs_aborts == 0
    assert [m.text for m in sim.network.phone(PHONE).inbox] == [f"{n}: {text}" for n in range(4)]


async def test_fibocom_stray_byte_aborts_the_send_and_the_engine_recovers(sim_factory: SimFactory) -> None:
    sim = await sim_factory("fibocom-g510", submit_latency_s=30)  # the network is slow today
    async with running(sim) as modem:
        send = asyncio.ensure_future(modem.send_text(PHONE, "first try"))
        session = sim.sessions["primary"]
        await eventually(lambda: any(d.endswith(b"\x1a") for way, d in session.log if way == "rx"))
        sim.stray_input(b"\r")  # a glitch on the host's TX line while the network works
        with pytest.raises(CmsError) as caught:
            await send
        assert caught.value.code == 500
        assert sim.cmgs_aborts == 1
        assert sim.network.phone(PHONE).inbox == []
        # Nothing left half-open: the very next send goes through on the same port.
        sim.submit_latency_s = 0
        sent = await modem.send_text(PHONE, "second try")
        assert modem.state is ModemState.READY
        assert modem.info.reopens == 0
    assert len(sent) == 1
    assert [m.text for m in sim.network.phone(PHONE).inbox] == ["second try"]


@pytest.mark.parametrize(
    ("model", "extra"),
    [("telit-le910", "scts"), ("generic", "ackpdu"), ("generic", "scts")],
)
async def test_mr_is_read_from_cmgs_with_a_timestamp_or_ack_pdu(
    sim_factory: SimFactory, model: str, extra: Literal["", "scts", "ackpdu"]
) -> None:
    sim = await sim_factory(model, first_mr=200)
    sim.variants.cmgs_extra = extra
    collected = Collected()
    async with running(sim, collected) as modem:
        await modem.command("AT+CSMS=1")  # the phase 2+ service under which modems add the field
        text = "".join(f"{i:03d} part " for i in range(30))  # 2 parts
        sent = await modem.send_text(PHONE, text)
        assert [s.mr for s in sent] == [200, 201]
        await eventually(lambda: len(collected.reports) == 2)
    assert sorted(r.mr for r in collected.reports) == [200, 201]


HEADS = [
    ("empty_alpha", ""),
    ("quoted_alpha", ""),
    ("empty_alpha", "Smith, J"),
    ("quoted_alpha", 'Meier, "Hans", Jr'),
    ("no_alpha", ""),
    ("no_stat", ""),
    ("length_only", ""),
]


@pytest.mark.parametrize(("style", "alpha"), HEADS)
async def test_every_head_wording_is_read_swept_and_deleted(
    sim_factory: SimFactory, style: CmgrHeader, alpha: str
) -> None:
    sim = await sim_factory("generic")
    sim.variants.cmgr_header = style
    sim.variants.alpha = alpha
    await sim.inject(sender=FRIEND, text="stored before start")  # found by the sweep (AT+CMGL)
    collected = Collected()
    async with running(sim, collected):
        await sim.inject(sender=FRIEND, text="announced by +CMTI, read by AT+CMGR")
        await eventually(lambda: len(collected.delivers) == 2)
        await eventually(lambda: not sim.state.storage["SM"].slots)
    assert [m.text for m in collected.delivers] == [
        "stored before start",
        "announced by +CMTI, read by AT+CMGR",
    ]


async def test_a_slot_read_as_bare_ok_is_not_an_error(sim_factory: SimFactory) -> None:
    sim = await sim_factory("generic")
    sim.variants.empty_read = "ok"
    async with running(sim) as modem:
        assert await modem.read_stored(7) is None
        assert modem.state is ModemState.READY


class _NoSmscField(Stored):
    """A slot the modem prints as a bare TPDU: its hex is exactly <length> octets."""

    @property
    def tpdu_length(self) -> int:
        return len(self.pdu)


async def test_stored_pdus_printed_without_the_smsc_field_are_read(sim_factory: SimFactory) -> None:
    sim = await sim_factory("generic")
    first = sim.network.build_delivers(FRIEND, "swept, no SMSC field")[0]
    sim.state.storage["SM"].put(_NoSmscField(0, first.encode_tpdu()))
    collected = Collected()
    async with running(sim, collected):
        second = sim.network.build_delivers(FRIEND, "announced, no SMSC field")[0]
        index = sim.state.storage["SM"].put(_NoSmscField(0, second.encode_tpdu()))
        sim.sessions["primary"].urc(f'+CMTI: "SM",{index}', sms=True)
        await eventually(lambda: len(collected.delivers) == 2)
        await eventually(lambda: not sim.state.storage["SM"].slots)
    assert [m.text for m in collected.delivers] == ["swept, no SMSC field", "announced, no SMSC field"]


# -- status reports with odd fields (tolerant decoding end to end) -----------------------

# A DWM-156-shaped report (gammu #156): SMSC with an F inside the number, zone octet FF.
SMSC_FILLER = "06" + "91" + "94712F70F6"


async def test_reports_with_odd_fields_are_matched_routed_and_stored(
    sim_factory: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="modem.pdu")
    sim = await sim_factory("quectel-ec25")
    collected = Collected()
    async with running(sim, collected) as modem:
        sent = await modem.send_text(PHONE, "to a D-Link stick's friend")
        mr = sent[0].mr
        await eventually(lambda: len(collected.reports) == 1)  # the simulator's own, clean report
        recipient = "0C91" + "945111325476"  # +49151123456 7 (12 digits)
        tz_ff = "521103415090FF"  # 2025-11-30 14:05:09, zone octet FF
        dt = "52110341502140"
        routed = SMSC_FILLER + f"06{mr:02X}" + recipient + tz_ff + dt + "00"
        sim.sessions["primary"].urc(f"+CDS: {len(routed) // 2 - 7}", routed, sms=True)
        stored = SMSC_FILLER + f"06{mr:02X}" + recipient + tz_ff + dt + "00" + "FF" * 20
        index = sim.state.storage["SR"].put(Stored(0, bytes.fromhex(stored)))
        sim.sessions["primary"].urc(f'+CDSI: "SR",{index}', sms=True)
        await eventually(lambda: len(collected.reports) == 3)
        await eventually(lambda: not sim.state.storage["SR"].slots)  # handed over, then deleted
        assert modem.state is ModemState.READY
    odd = collected.reports[1:]
    assert all(isinstance(r, StatusReport) for r in odd)
    assert [(r.mr, r.recipient.number, r.status) for r in odd] == [(mr, "+491511234567", 0)] * 2
    assert all(r.smsc is not None and r.smsc.number == "+4917?2076" for r in odd)
    assert all(r.scts is not None and r.scts.tzinfo is None for r in odd)
    # Two reports with the same two oddities (and FF padding on the stored one): three lines.
    tolerated = [r.getMessage() for r in caplog.records if r.name == "modem.pdu"]
    assert len(tolerated) == 3, tolerated
    assert any("SMSC address" in t for t in tolerated)
    assert any("time zone octet 0xFF" in t for t in tolerated)
    assert any("FF padding" in t for t in tolerated)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("1,,24", (1, 24)),
        (' 1,"",24', (1, 24)),
        ('1,"Smith, J",24', (1, 24)),
        ("0,23", (0, 23)),  # gammu at-sms/07.dump
        (",,92", (None, 92)),  # gammu at-sms/39.dump
        ("24", (None, 24)),  # gammu at-sms/38.dump
        ("4,1,,151", (4, 151)),  # gammu at-sms/26.dump
        ('"REC READ","+31625044454",,"07/07/05,09:56:03+08"', (None, None)),  # text mode: no length
        ("", (None, None)),
    ],
)
def test_cmgr_heads_as_real_modems_print_them(payload: str, expected: tuple[int | None, int | None]) -> None:
    assert parse_cmgr_header(payload) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("3,1,,24", (3, 1, 24)),
        ('3,1,"",24', (3, 1, 24)),
        ('3,1,"Smith, J",24', (3, 1, 24)),
        ("17,3,35", (17, 3, 35)),  # Pantech (ModemManager tests)
        ("3,,,24", (3, None, 24)),
        ("x,1,,24", None),
    ],
)
def test_cmgl_heads_as_real_modems_print_them(
    payload: str, expected: tuple[int, int | None, int] | None
) -> None:
    assert parse_cmgl_header(payload) == expected
