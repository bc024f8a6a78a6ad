"""The SIM balance: [ussd] config, reading the amount, and the scheduled check against the simulator."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from appliance.balance import NOT_FOUND, BalanceChecker, BalanceReading, parse_amount, reading_from
from appliance.config import ConfigError, UssdConfig, from_dict
from modem.simulator import Simulator
from tests.support.ussd_channel import Channel, simulated_channel

DEFAULT = re.compile(UssdConfig().balance_regex)


def test_ussd_defaults_are_the_design_contract() -> None:
    ussd = from_dict({}).ussd
    assert (ussd.balance_code, ussd.balance_regex, ussd.check_every_s, ussd.alert_below) == (
        "*100#",
        "([0-9]+[.,][0-9]{2})",
        86400,
        5.0,
    )
    assert from_dict({"ussd": {"check_every_s": 0}}).ussd.check_every_s == 0


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"balance_code": "*100#;+CFUN=0"}, r"ussd\.balance_code: .*digits"),
        ({"balance_code": ""}, r"ussd\.balance_code: USSD code is empty"),
        ({"balance_regex": "([0-9]+"}, r"ussd\.balance_regex: not a valid regular expression"),
        ({"balance_regex": "[0-9]+"}, r"ussd\.balance_regex: needs a group"),
        ({"balance_regex": "(" * 300}, r"ussd\.balance_regex: longer than 200"),
        ({"check_every_s": 59}, r"ussd\.check_every_s: must be 0 \(off\) or 60"),
        ({"check_every_s": "daily"}, r"ussd\.check_every_s: expected an integer"),
        ({"alert_below": -1}, r"ussd\.alert_below: must be 0"),
        ({"alert_below": float("nan")}, r"ussd\.alert_below: must be 0"),
        ({"alert_belo": 1}, r"ussd\.alert_belo: unknown key.*alert_below"),
        ({"first_check_after_s": -1}, r"ussd\.first_check_after_s: must be 0 to 86400"),
        ({"first_check_after_s": float("inf")}, r"ussd\.first_check_after_s: must be 0 to 86400"),
    ],
)
def test_bad_ussd_values_name_the_key(section: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        from_dict({"ussd": section})


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Your balance is 12.34 EUR. Valid until 01.01.2027.", 12.34),
        ("Ваш баланс 12,34 EUR.", 12.34),
        ("Balance: 0.05 GBP", 0.05),
    ],
)
def test_amount_is_read_with_either_decimal_mark(text: str, value: float) -> None:
    assert parse_amount(text, DEFAULT) == value


def test_thousands_separators_and_the_last_decimal_mark() -> None:
    pattern = re.compile(r"balance ([0-9.,]+)")
    assert parse_amount("balance 1.234,56", pattern) == 1234.56
    assert parse_amount("balance 1,234.56", pattern) == 1234.56


def test_no_amount_is_a_reading_saying_so_with_numbers_masked() -> None:
    reading = reading_from("Dear 4915112345678, the service is unavailable", DEFAULT)
    assert (reading.ok, reading.value, reading.error) == (False, None, NOT_FOUND)
    assert reading.text == "Dear 49***********, the service is unavailable"
    optional = re.compile(r"EUR( [0-9]+)?")
    assert reading_from("EUR only", optional).error == NOT_FOUND


@pytest.fixture
async def simulated(tmp_path: Path) -> AsyncIterator[tuple[Simulator, Channel]]:
    async with simulated_channel(tmp_path / "sim", answer_timeout_s=0.5) as pair:
        yield pair


async def ask(channel: Channel, code: str) -> str:
    return (await channel.ussd.send(code)).text


async def test_checker_reads_the_simulators_balance_and_sees_it_fall_below_the_floor(
    simulated: tuple[Simulator, Channel],
) -> None:
    sim, channel = simulated
    sim.ussd.update({"balance": 5.2, "price": 0.25})
    checker = BalanceChecker(lambda code: ask(channel, code), UssdConfig(alert_below=5.0))
    first = await checker.check()
    assert (first.ok, first.value, checker.below_floor) == (True, 5.2, False)
    await channel.engine.command("AT+CMGF=1")
    await channel.engine.command_with_data('AT+CMGS="+4915112345678"', "one part, 0.25 EUR")
    second = await checker.check()
    assert (second.value, checker.below_floor) == (4.95, True)


async def test_schedule_retries_a_silent_network_then_recovers_logging_once(
    simulated: tuple[Simulator, Channel], caplog: pytest.LogCaptureFixture
) -> None:
    sim, channel = simulated
    sim.ussd.update({"silent": True})
    readings: asyncio.Queue[BalanceReading] = asyncio.Queue()

    async def keep(reading: BalanceReading) -> None:
        await readings.put(reading)

    checker = BalanceChecker(
        lambda code: ask(channel, code),
        UssdConfig(check_every_s=60),
        on_reading=keep,
        first_after_s=0,
        retry_min_s=0.01,
    )
    caplog.set_level(logging.INFO, logger="appliance.balance")
    task = asyncio.create_task(checker.run())
    try:
        async with asyncio.timeout(10):
            failures = [await readings.get() for _ in range(2)]
            sim.ussd.update({"silent": False})
            reading = await readings.get()
            while not reading.ok:  # a check already under way when the network came back
                reading = await readings.get()
    finally:
        task.cancel()
    assert all(not r.ok and r.error.startswith("UssdTimeout") for r in failures)
    assert reading.value == 12.34
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "balance check failed (UssdTimeout" in warnings[0].getMessage()
    assert any("works again: 12.34" in r.getMessage() for r in caplog.records)


async def test_amount_missing_from_the_answer_is_a_failed_reading(
    simulated: tuple[Simulator, Channel],
) -> None:
    channel = simulated[1]
    checker = BalanceChecker(
        lambda code: ask(channel, code), UssdConfig(balance_code="#100#", balance_regex=r"credit ([0-9]+)")
    )
    reading = await checker.check()
    assert (reading.ok, reading.error, checker.below_floor) == (False, NOT_FOUND, False)
    assert reading.text.startswith("Your balance is 12.34 EUR.")


async def test_check_off_returns_at_once() -> None:
    async def never(code: str) -> str:
        raise AssertionError(code)

    await BalanceChecker(never, UssdConfig(check_every_s=0)).run()
