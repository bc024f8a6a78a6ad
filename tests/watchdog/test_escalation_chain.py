"""The escalation chain as tables (watchdog/escalation.py), and the watchdog's e-mail outbox
(watchdog/mailout.py) against a real SMTP server: retried while transient, given up when permanent."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from tests.support.smtp_server import smtp_server
from tests.support.waiting import eventually
from watchdog.alert import Alert, Incident
from watchdog.escalation import Chain, ChainLog
from watchdog.mail import SmtpSettings
from watchdog.mailout import MailOutbox

A, B, C = "+4915112345678", "+4915198765432", "+4917611111111"
MAIL = "mailto:ops@example.test"


def incident(id_: int = 1, *, acked_at: float | None = None) -> Incident:
    return Incident(id_, "daemon", "down", "", since=0.0, opened_at=0.0, acked_at=acked_at)


def test_without_after_s_everyone_is_told_at_once_as_before() -> None:
    chain = Chain((A, B), (MAIL,), after_s=0)
    first = chain.start(1, 0.0)
    assert (first.recipients, first.last) == ((A, B, MAIL), True)
    assert chain.due([incident()], 10_000.0) == []
    assert chain.told(1) == (A, B, MAIL)
    assert chain.told(1, email=False) == (A, B)


def test_one_number_per_after_s_then_every_mail_target_and_an_ack_stops_it() -> None:
    chain = Chain((A, B, C), (MAIL, "mailto:boss@example.test"), after_s=60)
    assert chain.start(1, 0.0).recipients == (A,)
    assert chain.due([incident()], 59.9) == []
    [second] = chain.due([incident()], 60.0)
    assert (second.index, second.recipients, second.last) == (1, (B,), False)
    assert chain.due([incident()], 60.0) == []  # each step once
    assert chain.told(1) == (A, B)
    [third] = chain.due([incident()], 120.0)
    assert third.recipients == (C,)
    assert chain.due([incident(acked_at=150.0)], 500.0) == []  # acknowledged: no further step
    [mail] = chain.due([incident()], 180.0)
    assert (mail.recipients, mail.last) == ((MAIL, "mailto:boss@example.test"), True)
    assert chain.due([incident()], 10_000.0) == []  # the chain has ended
    assert chain.told(1, email=False) == (A, B, C)
    chain.forget(1)
    assert chain.due([incident()], 20_000.0) == []


def test_an_incident_from_before_chains_is_everyone_told() -> None:
    chain = Chain((A, B), (MAIL,), after_s=60)
    assert chain.told(7, email=False) == (A, B)  # repeats keep reaching every number, as before
    assert chain.due([incident(7)], 10_000.0) == []  # and it does not escalate from nowhere


def test_progress_survives_in_the_state_file(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "watchdog.sqlite3", isolation_level=None)
    log = ChainLog(db)
    chain = Chain((A, B), (MAIL,), after_s=60)
    log.save(chain.start(1, 0.0), 0.0)
    log.save(chain.start(2, 5.0), 5.0)
    for step in chain.due([incident(2)], 65.0):
        log.save(step, 65.0)
    again = Chain((A, B), (MAIL,), after_s=60)
    ChainLog(db).restore(again, [1, 2])
    assert again.progress == {1: (0, 0.0), 2: (1, 65.0)}
    shorter = Chain((A,), (), after_s=60)  # the config lost a number meanwhile: clamped, not past the end
    ChainLog(db).restore(shorter, [2])
    assert shorter.progress == {2: (0, 65.0)}
    log.forget(1)
    fresh = Chain((A, B), (), after_s=60)
    ChainLog(db).restore(fresh, [1, 2])
    assert list(fresh.progress) == [2]


async def test_a_transient_refusal_is_retried_and_a_permanent_one_given_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records: list[tuple[str, str]] = []
    alert = Alert("escalate", "daemon", "box7: down", 1)
    with smtp_server(tmp_path) as server:
        server.inbox.refuse["later@example.test"] = "451 4.7.1 greylisted"
        server.inbox.refuse["gone@example.test"] = "550 5.1.1 no such user"
        smtp = SmtpSettings(host=server.host, port=server.port, starttls=False, from_="w@box.lan")
        outbox = MailOutbox(smtp, lambda a, t, o, _at: records.append((t, o)), expire_s=60, retry_s=0.05)
        with caplog.at_level(logging.WARNING, logger="watchdog"):
            outbox.submit(alert, "mailto:later@example.test", "box7: down", "body")
            outbox.submit(alert, "mailto:gone@example.test", "box7: down", "body")
            # Both e-mails are tried concurrently: wait for both answers, in whichever order.
            await eventually(lambda: caplog.text.count("deferred") == 1 and bool(records), 10, 0.02)
            assert records == [("mailto:gone@example.test", "failed")]
            del server.inbox.refuse["later@example.test"]  # the greylisting passes
            await eventually(lambda: len(records) == 2, 10, 0.02)
        await outbox.close()
        assert records[1] == ("mailto:later@example.test", "sent")
        assert [rcpt for rcpt, _ in server.inbox.messages()] == [("later@example.test",)]
    assert caplog.text.count("deferred") == 1  # one line while it waits, not one per try
    assert "e-mail to mailto:gone@example.test failed: recipient refused: 550" in caplog.text
