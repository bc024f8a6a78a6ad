"""The watchdog's escalation chain against real processes: `smsgw serve` and `smsgw watchdog` on the
simulated modem (aux port for the watchdog), on-call phones in the simulated network, and a real
SMTP server (aiosmtpd) for the e-mail at the end of the chain."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.smtp_server import Server, smtp_server
from tests.support.waiting import eventually
from tests.support.watchdog_box import ONCALL, PIN, BoxFactory

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

ONCALL2 = "+4915198765432"
MAILTO = "mailto:oncall@example.test"


def alert(text: str) -> bool:
    return text.startswith("box7: ")


def chain(server: Server, after_s: float) -> dict[str, Any]:
    return {
        "oncall": [ONCALL, ONCALL2],
        "escalate_after_s": after_s,
        "escalate_email": [MAILTO],
        "smtp": {"host": server.host, "port": server.port, "starttls": False, "from": "watchdog@box7.lan"},
    }


async def test_no_ack_texts_the_next_number_then_mails_and_resolved_reaches_everyone_told(
    box_factory: BoxFactory, tmp_path: Path
) -> None:
    with smtp_server(tmp_path) as server:
        async with box_factory(**chain(server, 2.0)) as box:
            await box.daemon.kill9()
            first = await box.wait_text(alert)
            assert box.texts(ONCALL2) == []  # the second number waits escalate_after_s for an ACK
            second = await box.wait_text(alert, number=ONCALL2)
            # The same alert passed on, as the incident reads now (more checks may have joined it).
            assert first.split(" since ")[0].removeprefix("box7: ") in second
            [(rcpt, mail)] = await eventually(server.inbox.messages, 20, 0.05)
            assert rcpt == ("oncall@example.test",)
            assert mail["From"] == "watchdog@box7.lan"
            assert mail["Subject"].startswith("box7: ")
            body = mail.get_payload(decode=True).decode()
            assert "No on-call phone acknowledged within 2s" in body
            assert "+4915•••678, +4915•••432" in body  # who was texted, masked
            assert PIN not in body

            # The server has the mail before the watchdog records that it was sent.
            def three_steps() -> list[tuple[Any, ...]] | None:
                rows = box.state_rows("SELECT kind, recipient, outcome FROM alerts ORDER BY id")
                return rows if len(rows) >= 3 else None

            steps = await eventually(three_steps, 20, 0.05)
            assert steps == [
                ("open", ONCALL, "sent"),
                ("escalate", ONCALL2, "sent"),
                ("escalate", MAILTO, "sent"),
            ]
            # One log line per step.
            log = box.watchdog.log.read_text()
            assert log.count("escalating to +4915•••432") == 1
            assert log.count(f"escalating to {MAILTO}") == 1
            # Cleared: everyone who was told hears it, the mailbox too; one text each, no more.
            await box.daemon.start()
            await box.daemon_ready()
            for number in (ONCALL, ONCALL2):
                await box.wait_text(lambda t: t.startswith("RESOLVED box7: "), number=number)
            await eventually(lambda: len(server.inbox.messages()) == 2, 20, 0.05)
            assert server.inbox.messages()[1][1]["Subject"].startswith("RESOLVED box7: ")
            assert [len([t for t in box.texts(n) if alert(t)]) for n in (ONCALL, ONCALL2)] == [1, 1]


async def test_an_ack_from_the_first_number_stops_the_chain(box_factory: BoxFactory, tmp_path: Path) -> None:
    after_s = 5.0
    with smtp_server(tmp_path) as server:
        async with box_factory(**chain(server, after_s)) as box:
            await box.daemon.kill9()
            await box.wait_text(alert)
            # The daemon is down: the watchdog takes the ACK off the SIM over its own port.
            await box.sim.inject(ONCALL, f"ACK {PIN}")
            await box.wait_text(lambda t: t.startswith("box7 ACK: 1 incident"))
            acked_at = time.monotonic()
            # Past the moment the second number would have been texted, and the e-mail sent after it.
            await eventually(lambda: time.monotonic() - acked_at > 2 * after_s + 1, 20, 0.1)
            await box.sim.inject(ONCALL, f"STATUS {PIN}")  # answered: the watchdog cycled meanwhile
            status = await box.wait_text(lambda t: t.startswith("box7 STATUS:"))
            assert "(acked)" in status
            assert box.texts(ONCALL2) == []
            assert server.inbox.messages() == []
            kinds = [k for (k,) in box.state_rows("SELECT kind FROM alerts")]
            assert "escalate" not in kinds
            assert "escalating" not in box.watchdog.log.read_text()


async def test_a_watchdog_killed_mid_chain_continues_it_after_restart(
    box_factory: BoxFactory, tmp_path: Path
) -> None:
    with smtp_server(tmp_path) as server:
        async with box_factory(**chain(server, 3.0)) as box:
            killed_at = time.monotonic()
            await box.daemon.kill9()
            await box.wait_text(alert)
            # Killed once that text is on its record: killed between the SMS and the record, it
            # texts the first number again after the restart (at least once is the alert path's
            # promise), which a loaded machine made this test see.
            await eventually(lambda: box.state_rows("SELECT id FROM alerts"), 20, 0.05)
            await box.watchdog.kill9()
            assert box.texts(ONCALL2) == []
            assert box.state_rows("SELECT step FROM escalations") == [(0,)]
            # Restarted once the daemon's heartbeat is past stale (the incident is still open then).
            await eventually(lambda: time.monotonic() - killed_at > 4.5, 20, 0.1)
            await box.watchdog.start()
            await box.wait_text(alert, number=ONCALL2)
            await eventually(server.inbox.messages, 20, 0.05)
            # Continued, not started over: the first number is not texted again, nobody twice.
            assert [len([t for t in box.texts(n) if alert(t)]) for n in (ONCALL, ONCALL2)] == [1, 1]
            assert len(server.inbox.messages()) == 1
            assert box.state_rows("SELECT COUNT(*) FROM incidents") == [(1,)]
