"""sd_notify WATCHDOG=1: withheld when the dispatcher is stuck, kept while a silent modem holds it up; said once."""

from __future__ import annotations

import logging

import pytest

from appliance.health import Progress


def test_a_stalled_modem_keeps_the_watchdog_fed_and_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    progress = Progress(stale_s=30.0)
    assert progress.check(1.0, [])
    # The dispatcher waits on a modem that stopped answering: a restart would not help.
    for idle in (31.0, 33.0, 35.0, 37.0):
        assert progress.check(idle, [("modem", idle - 20)])
    assert progress.check(0.5, [])
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2, said  # once when it starts, once when it ends, not every heartbeat
    assert "modem" in said[0]
    assert "moving again" in said[1]


def test_a_stuck_dispatcher_loses_the_watchdog_with_one_error(caplog: pytest.LogCaptureFixture) -> None:
    progress = Progress(stale_s=30.0)
    assert [progress.check(idle, []) for idle in (31.0, 33.0, 35.0)] == [False, False, False]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "withholding WATCHDOG=1" in errors[0].getMessage()
