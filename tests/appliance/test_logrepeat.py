"""Repeated log lines under attack: a few pass, the rest are counted, the count is written once."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from appliance.logrepeat import RepeatFilter


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup() -> Iterator[tuple[logging.Logger, Lines, RepeatFilter, Clock]]:
    clock = Clock()
    lines = Lines()
    repeat = RepeatFilter(window_s=60, burst=3, clock=clock)
    lines.addFilter(repeat)
    logger = logging.getLogger("test.logrepeat")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(lines)
    yield logger, lines, repeat, clock
    logger.removeHandler(lines)
    logger.propagate = True


def test_a_flood_writes_the_burst_then_one_count(
    setup: tuple[logging.Logger, Lines, RepeatFilter, Clock],
) -> None:
    logger, lines, _repeat, clock = setup
    for i in range(1000):
        logger.warning("rejected API key from %s", f"10.0.0.{i % 250}")
    assert lines.lines == [f"rejected API key from 10.0.0.{i}" for i in range(3)]
    clock.now += 61
    logger.warning("rejected API key from %s", "10.0.0.9")
    assert lines.lines[-1] == "rejected API key from 10.0.0.9 (997 similar suppressed)"


def test_flush_writes_the_count_when_the_flood_stops(
    setup: tuple[logging.Logger, Lines, RepeatFilter, Clock],
) -> None:
    logger, lines, repeat, clock = setup
    for _ in range(10):
        logger.warning("connection from %s refused", "10.0.0.1")
    repeat.flush()
    assert len(lines.lines) == 3  # the window is still open: nothing to say yet
    clock.now += 61
    repeat.flush()
    assert lines.lines[-1] == "connection from %s refused (7 similar suppressed)"
    repeat.flush()
    assert len(lines.lines) == 4  # said once


def test_other_messages_are_not_held_back(setup: tuple[logging.Logger, Lines, RepeatFilter, Clock]) -> None:
    logger, lines, _repeat, _clock = setup
    for _ in range(50):
        logger.warning("flood %d", 1)
    logger.error("modem %s gone", "gsm0")
    logger.info("flood %d", 2)  # same text, other level: its own kind
    assert lines.lines[-2:] == ["modem gsm0 gone", "flood 2"]
