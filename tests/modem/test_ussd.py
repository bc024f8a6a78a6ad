"""USSD over a real pseudo-terminal against the simulator's operator (modem.ussd, modem.simulator.ussd)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from modem.errors import CmeError
from modem.modem import Modem
from modem.simulator import Simulator
from modem.simulator.control import create_app
from modem.ussd import (
    InvalidUssdCode,
    Ussd,
    UssdError,
    UssdTimeout,
    check_code,
    decode_text,
    parse_cusd,
)
from tests.support.simulators import SimFactory
from tests.support.ussd_channel import Channel, open_channel


@pytest.fixture
async def channel(simulator: Simulator) -> AsyncIterator[Channel]:
    ch = await open_channel(simulator)
    yield ch
    await ch.port.close()


def sent(sim: Simulator, prefix: str) -> list[str]:
    return [line for _t, _role, line in sim.commands if line.upper().startswith(prefix)]


async def test_balance_code_answers_the_operators_text(simulator: Simulator, channel: Channel) -> None:
    reply = await channel.ussd.send("*100#")
    assert reply.status == 0
    assert reply.text.startswith("Your balance is 12.34 EUR. Valid until ")
    assert sent(simulator, "AT+CUSD=1") == ['AT+CUSD=1,"*100#",15']


async def test_balance_goes_down_with_each_sms_sent(simulator: Simulator, channel: Channel) -> None:
    simulator.ussd.update({"balance": 1.0, "price": 0.25})
    await channel.engine.command("AT+CMGF=1")
    for _ in range(2):
        await channel.engine.command_with_data('AT+CMGS="+4915112345678"', "hi")
    reply = await channel.ussd.send("*100#")
    assert "Your balance is 0.50 EUR." in reply.text


async def test_ucs2_operator_answer_is_decoded(sim_factory: SimFactory) -> None:
    sim = await sim_factory()
    sim.ussd.update({"ucs2": True, "balance": 7.5})
    ch = await open_channel(sim)
    try:
        reply = await ch.ussd.send("*100#")
    finally:
        await ch.port.close()
    assert reply.dcs == 72
    assert reply.text.startswith("Ваш баланс 7,50 EUR.")


async def test_request_and_answer_follow_cscs_ucs2(simulator: Simulator, channel: Channel) -> None:
    await channel.engine.command('AT+CSCS="UCS2"')
    reply = await channel.ussd.send("*100#")
    assert reply.text.startswith("Your balance is 12.34 EUR.")
    assert sent(simulator, "AT+CUSD=1") == ['AT+CUSD=1,"002A0031003000300023",15']


async def test_huawei_packed_gsm7_hex_answer_is_decoded(sim_factory: SimFactory) -> None:
    sim = await sim_factory(model="huawei-e3372")
    ch = await open_channel(sim)
    try:
        reply = await ch.ussd.send("*100#")
    finally:
        await ch.port.close()
    assert reply.text.startswith("Your balance is 12.34 EUR. Valid until ")


async def test_menu_spanning_lines_is_joined_and_the_session_closed(
    simulator: Simulator, channel: Channel
) -> None:
    reply = await channel.ussd.send("*123#")
    assert reply.further_action
    assert reply.text == "Main menu\n1. Balance\n2. Offers\n0. Exit"
    # We never continue a menu: the session is closed so the next request starts afresh.
    assert sent(simulator, "AT+CUSD=2") == ["AT+CUSD=2"]
    again = await channel.ussd.send("*100#")
    assert again.text.startswith("Your balance is")


async def test_unknown_code_gets_the_operators_error_text(channel: Channel) -> None:
    reply = await channel.ussd.send("*999#")
    assert (reply.status, reply.text) == (2, "UNKNOWN APPLICATION")


async def test_unsupported_answer_is_an_error_naming_it(simulator: Simulator, channel: Channel) -> None:
    simulator.ussd.update({"unknown": "unsupported"})
    with pytest.raises(UssdError, match=r"\+CUSD: 4 \(not supported\)"):
        await channel.ussd.send("*999#")


async def test_no_answer_times_out_cancels_and_the_next_request_works(
    simulator: Simulator, channel: Channel
) -> None:
    simulator.ussd.update({"silent": True})
    channel.ussd.answer_timeout_s = 0.3
    with pytest.raises(UssdTimeout):
        await channel.ussd.send("*100#")
    assert sent(simulator, "AT+CUSD=2") == ["AT+CUSD=2"]
    simulator.ussd.update({"silent": False})
    reply = await channel.ussd.send("*100#")
    assert reply.text.startswith("Your balance is")


async def test_no_network_is_a_cme_error(simulator: Simulator, channel: Channel) -> None:
    await channel.engine.command("AT+CMEE=1")
    simulator.set_registration(False)
    with pytest.raises(CmeError) as caught:
        await channel.ussd.send("*100#")
    assert caught.value.code == 30


@pytest.mark.parametrize(
    "code",
    [
        "",
        "100",
        '*100#",15\r\nAT+CMGS=1',
        "*100#;+CFUN=0",
        "*10 0#",
        "*" * 40 + "#",
        "*100",
        "\u0661\u0660\u0660#",
    ],
)
async def test_hostile_codes_are_refused_before_the_modem(
    simulator: Simulator, channel: Channel, code: str
) -> None:
    with pytest.raises(InvalidUssdCode):
        await channel.ussd.send(code)
    assert sent(simulator, "AT+CUSD") == []


def test_service_codes_a_user_dials_are_accepted() -> None:
    for code in ("*100#", "#100#", "*123*1#", "*#06#", "*101*1*2#"):
        assert check_code(code) == code


@pytest.mark.parametrize(
    ("payload", "charset", "text"),
    [
        ('0,"Balance 5.00",15', "GSM", "Balance 5.00"),
        ('0,"Balance 5.00"', "IRA", "Balance 5.00"),
        ('0,"1234",15', "GSM", "1234"),  # digits that happen to be hex stay text
        ('0,"0042006100FF",72', "GSM", "Baÿ"),
        ('0,"00420061",15', "UCS2", "Ba"),
        ('2,"C2303BEC1E9701",15', "GSM", "Balance"),  # Huawei packed septets
        ('0,"42616C616E6365",15', "GSM", "Balance"),  # one septet per octet
        ('0,"42616C",68', "GSM", "Bal"),  # 8-bit data
        ("4", "GSM", ""),
    ],
)
def test_cusd_forms_decode(payload: str, charset: str, text: str) -> None:
    assert parse_cusd(payload, charset).text == text


def test_malformed_cusd_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        parse_cusd('x,"hi",15')
    assert decode_text("zz", 15) == "zz"


async def test_control_sets_the_balance_and_refuses_bad_values(
    simulator: Simulator, channel: Channel
) -> None:
    transport = httpx.ASGITransport(app=create_app(simulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        ok = await http.post("/ussd", json={"balance": 0.42})
        bad = await http.post("/ussd", json={"balance": -1})
        unknown = await http.post("/ussd", json={"balanse": 1})
    assert ok.status_code == 200
    assert ok.json()["balance"] == 0.42
    assert bad.status_code == 400
    assert "balance" in bad.json()["error"]
    assert unknown.status_code == 400
    assert "'balanse'" in unknown.json()["error"]
    reply = await channel.ussd.send("*100#")
    assert "Your balance is 0.42 EUR." in reply.text


async def test_ussd_beside_a_running_modem_sending_sms(simulator: Simulator) -> None:
    simulator.ussd.update({"delay_s": 0.2, "balance": 2.0, "price": 0.5})
    modem = Modem(str(simulator.primary_path))
    await modem.start()
    try:
        await modem.wait_ready(10)
        ussd = Ussd(modem)  # the Modem is an AT channel: command() and on_urc()
        # The SMS goes out while the USSD answer is on its way: neither disturbs the other.
        reply, sent_parts = await asyncio.gather(ussd.send("*123#"), modem.send_text("+4915112345678", "hi"))
        after = await ussd.send("*100#")
    finally:
        await modem.stop()
    assert reply.text.startswith("Main menu\n1. Balance")
    assert len(sent_parts) == 1
    assert "Your balance is 1.50 EUR." in after.text
