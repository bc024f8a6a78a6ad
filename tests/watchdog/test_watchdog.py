"""`smsgw watchdog` against real processes: the simulator (primary + aux on ptys), `smsgw serve`."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.support.waiting import eventually
from tests.support.watchdog_box import ONCALL, PIN, STRANGER, BoxFactory

pytestmark = pytest.mark.timeout(120)


def alert(text: str) -> bool:
    return text.startswith("box7: ")


def resolved(text: str) -> bool:
    return text.startswith("RESOLVED box7: ")


@pytest.mark.slow
async def test_killed_daemon_alerts_and_restart_resolves(box_factory: BoxFactory) -> None:
    async with box_factory() as box:
        assert box.texts() == []
        await box.daemon.kill9()
        text = await box.wait_text(alert)
        assert "/healthz not answering (refused)" in text or "heartbeat" in text
        assert "RESTART" in text or "systemctl" in text  # one hint
        await box.daemon.start()
        await box.daemon_ready()
        done = await box.wait_text(resolved)
        assert "lasted" in done
        assert len([t for t in box.texts() if alert(t)]) == 1  # one SMS per incident
        # Recorded in the state file and visible in /api/v1/status.
        assert ("open", "sent") in box.state_rows("SELECT kind, outcome FROM alerts")
        assert ("resolved", "sent") in box.state_rows("SELECT kind, outcome FROM alerts")
        key = await box.create_key("read")
        async with httpx.AsyncClient(base_url=box.base, headers={"Authorization": f"Bearer {key}"}) as client:
            doc = (await client.get("/api/v1/status")).json()["watchdog"]
        assert doc["incidents"][0]["subject"] == "daemon"
        assert doc["incidents"][0]["open"] is False
        assert [a["kind"] for a in doc["alerts"]][:2] == ["resolved", "open"]


@pytest.mark.slow
async def test_frozen_daemon_alerts(box_factory: BoxFactory) -> None:
    async with box_factory() as box:
        box.daemon.signal(signal.SIGSTOP)
        try:
            text = await box.wait_text(alert)
            assert "timeout" in text or "heartbeat" in text
        finally:
            box.daemon.signal(signal.SIGCONT)
        await box.wait_text(resolved)


@pytest.mark.slow
async def test_hung_primary_port_alerts_over_aux(box_factory: BoxFactory) -> None:
    async with box_factory() as box:
        box.sim.hang("primary")
        try:
            text = await box.wait_text(lambda t: alert(t) and "modem" in t, timeout_s=45)
        finally:
            box.sim.unhang("primary")
        assert "box7: modem " in text
        # The primary answered nothing meanwhile: the SMS went out over the aux port.
        await box.wait_text(lambda t: resolved(t) and "modem" in t, timeout_s=45)


@pytest.mark.slow
async def test_single_port_takes_over_and_gives_back(box_factory: BoxFactory) -> None:
    async with box_factory(own_port=False) as box:
        await box.daemon.kill9()
        text = await box.wait_text(alert)
        assert "box7" in text
        await box.watchdog_log("taking the modem port")
        await box.daemon.start()
        await box.watchdog_log("giving the modem port back")
        await box.daemon_ready()  # the daemon has its port again and is ready
        async with httpx.AsyncClient(timeout=5) as client:
            doc = (await client.get(f"{box.base}/healthz")).json()
        assert doc["status"] == "ok"
        assert "waiting for it" in box.daemon.log.read_text(errors="replace")


@pytest.mark.slow
async def test_flapping_daemon_stays_under_the_cap(box_factory: BoxFactory) -> None:
    async with box_factory(cap_per_hour=2) as box:
        for _ in range(3):
            await box.daemon.kill9()
            opened = len(box.state_rows("SELECT id FROM incidents"))

            def incident_opened(n: int = opened) -> bool:
                return len(box.state_rows("SELECT id FROM incidents")) > n

            await eventually(incident_opened, 20, 0.05)
            await box.daemon.start()
            await box.daemon_ready()
            await eventually(
                lambda: box.state_rows("SELECT COUNT(*) FROM incidents WHERE resolved_at IS NULL") == [(0,)],
                20,
            )
        assert len(box.texts()) == 2
        capped = box.state_rows("SELECT COUNT(*) FROM alerts WHERE outcome = 'capped'")[0][0]
        assert capped >= 1


@pytest.mark.slow
async def test_replies_ack_status_and_ignored(box_factory: BoxFactory) -> None:
    async with box_factory(repeat_s=1.5) as box:
        await box.daemon.kill9()
        await box.wait_text(alert)
        # Repeats while it lasts.
        await eventually(lambda: len([t for t in box.texts() if alert(t)]) >= 2, 20, 0.05)
        # The daemon is down: the ACK waits on the SIM and the watchdog takes it from there (aux port).
        await box.sim.inject(ONCALL, f"ACK {PIN}")
        await box.wait_text(lambda t: t.startswith("box7 ACK: 1 incident"))
        acked_at = time.monotonic()
        repeats = len([t for t in box.texts() if alert(t)])
        # Wrong PIN, unknown number, junk: all ignored (and recorded); the valid STATUS after them answers.
        await box.sim.inject(ONCALL, "STATUS 000000")
        await box.sim.inject(STRANGER, f"STATUS {PIN}")
        await box.sim.inject(ONCALL, "hello?")
        await box.sim.inject(ONCALL, f"status {PIN}")
        status = await box.wait_text(lambda t: t.startswith("box7 STATUS:"))
        assert "(acked)" in status
        assert "not running" in status
        # Observe at least two repeat periods after the ACK: no repeat came.
        await eventually(lambda: time.monotonic() - acked_at > 3.5, 10, 0.1)
        assert len([t for t in box.texts() if alert(t)]) == repeats
        # The daemon back: replies now come through the ledger's inbound table.
        await box.daemon.start()
        await box.daemon_ready()
        await box.wait_text(resolved)
        await box.sim.inject(STRANGER, f"STATUS {PIN}")
        await box.sim.inject(ONCALL, f"STATUS {PIN}x")
        await box.sim.inject(ONCALL, f"STATUS {PIN}")
        await eventually(lambda: len([t for t in box.texts() if t.startswith("box7 STATUS:")]) == 2, 20, 0.05)
        last = [t for t in box.texts() if t.startswith("box7 STATUS:")][-1]
        assert "all clear" in last
        assert "daemon running" in last
        assert box.texts(STRANGER) == []
        # RESTART runs the configured command (here `true`; on a box `systemctl restart smsgw.service`).
        await box.sim.inject(ONCALL, f"RESTART {PIN}")
        await box.wait_text(lambda t: t == "box7 RESTART: done")
        # Audited without their text; the stranger's SMS left on the SIM reached the ledger later.
        facts = sorted(box.state_rows("SELECT verb, outcome, detail FROM commands"))
        assert facts == [
            ("ACK", "accepted", ""),
            ("RESTART", "accepted", "done"),
            *[("STATUS", "accepted", "")] * 2,
            *[("STATUS", "refused", "not_oncall")] * 2,
            *[("STATUS", "refused", "wrong_pin")] * 2,
        ]
