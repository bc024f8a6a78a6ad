"""A restarted watchdog keeps an open incident open until its condition is seen cleared (real processes)."""

from __future__ import annotations

import signal

import pytest

from tests.support.watchdog_box import BoxFactory

pytestmark = pytest.mark.timeout(90)


@pytest.mark.slow
async def test_restart_does_not_resolve_an_incident_still_open(box_factory: BoxFactory) -> None:
    # Only /healthz tells: the heartbeat stays fresh-looking far longer than the test runs.
    async with box_factory(heartbeat_stale_s=600.0) as box:
        box.daemon.signal(signal.SIGSTOP)  # frozen: /healthz times out
        try:
            opened = await box.wait_text(lambda t: t.startswith("box7: /healthz not answering"))
            assert "timeout" in opened
            await box.watchdog.stop()
            await box.watchdog.start()
            await box.watchdog_log("watchdog of box7", times=2)
            await box.cycles(3)  # restarted, and whole cycles done with /healthz still failing
            assert not [t for t in box.texts() if t.startswith("RESOLVED")]
            assert box.state_rows("SELECT subject FROM incidents WHERE resolved_at IS NULL") == [("daemon",)]
        finally:
            box.daemon.signal(signal.SIGCONT)
        done = await box.wait_text(lambda t: t.startswith("RESOLVED box7: "))
        assert "/healthz not answering" in done
