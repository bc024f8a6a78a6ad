"""Escalation over HTTP against the simulator: a message nobody confirms goes to the next number,
then to e-mail (a real aiosmtpd server); a delivery, a reply or a cancel stops the chain."""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from appliance import escalation
from appliance.ledger import MASK, Conflict, EscalationSpec, Retention, Store
from appliance.ledger.retention import PURGE_BATCH
from appliance.segments import new_message
from modem.simulator import Simulator
from tests.integrations.receiver import Receiver, receiver
from tests.support.gateway import Running, gateway_config, run_gateway
from tests.support.smtp_server import Server, smtp_server
from tests.support.waiting import eventually

FIRST = "+4915111111111"
SECOND = "+4915122222222"
THIRD = "+4915133333333"
ONCALL_MAIL = "oncall@example.com"


@pytest.fixture
def mail(tmp_path: Path) -> Any:
    with smtp_server(tmp_path) as server:
        yield server


@pytest.fixture
async def hooks() -> AsyncIterator[Receiver]:
    async with receiver() as target:
        yield target


@pytest.fixture
async def egw(tmp_path: Path, sim: Simulator, mail: Server, hooks: Receiver) -> AsyncIterator[Running]:
    """The gateway with an [smtp] server, a webhook target, and a 1 s floor for after_s (tests wait
    seconds, not minutes)."""
    raw = gateway_config(
        tmp_path,
        str(sim.primary_path),
        escalation={"min_after_s": 1},
        smtp={"host": mail.host, "port": mail.port, "starttls": False, "from": "smsgw@box.lan"},
    )
    raw["webhooks"] = [{"url": hooks.url}]
    async with run_gateway(raw, sim) as running:
        await running.gateway.modem_list[0][2].wait_ready(10)
        yield running


async def _chain(gw: Running, msg_id: str, outcome: str, timeout_s: float = 15.0) -> dict[str, Any]:
    """The message once its escalation ended with `outcome`."""

    async def ended() -> dict[str, Any] | None:
        doc = await gw.message(msg_id)
        esc = doc["escalation"]
        return doc if esc["done"] and esc["outcome"] == outcome else None

    result: dict[str, Any] = await eventually(ended, timeout_s, 0.05)
    return result


def _escalated_hooks(hooks: Receiver) -> list[dict[str, Any]]:
    docs = [json.loads(r.body) for r in hooks.requests]
    return [d["data"] for d in docs if d["type"] == "message.escalated"]


@pytest.mark.slow
async def test_an_unconfirmed_message_goes_to_the_next_number_then_to_e_mail(
    egw: Running, sim: Simulator, mail: Server, hooks: Receiver
) -> None:
    sim.network.set_policy(FIRST, outcome="lost")  # no status report ever comes
    sim.network.set_policy(SECOND, outcome="lost")
    r = await egw.send(
        to=FIRST,
        body="Pump 3 pressure low",
        escalation={"after_s": 1, "then": [SECOND, f"mailto:{ONCALL_MAIL}"]},
    )
    assert r.status_code == 202, r.text
    original = r.json()
    assert original["escalation"] == {
        "after_s": 1,
        "until": "delivered",
        "then": [SECOND, f"mailto:{ONCALL_MAIL}"],
        "step": 0,
        "next_at": original["escalation"]["next_at"],
        "done": False,
        "outcome": None,
        "ended_at": None,
    }
    assert original["escalation"]["next_at"] is not None
    await sim.network.wait_for(lambda: "Pump 3 pressure low" in sim.network.phone(SECOND).texts(), 10)
    await eventually(mail.inbox.messages, 10, 0.05)
    await _chain(egw, original["id"], "emailed")

    ((rcpts, email_msg),) = mail.inbox.messages()
    assert rcpts == (ONCALL_MAIL,)
    assert FIRST in email_msg["Subject"]
    assert "not delivered within 1 s" in email_msg["Subject"]
    assert "Pump 3 pressure low" in str(email_msg.get_payload())

    async def mailed() -> dict[str, Any] | None:
        doc = await egw.message(original["id"])
        return doc if any(e["type"] == "escalation_mail" for e in doc["events"]) else None

    doc = await eventually(mailed, 10, 0.05)
    assert doc["escalation"]["step"] == 2
    steps = [e["detail"] for e in doc["events"] if e["type"] == "escalated"]
    assert len(steps) == 2, steps
    assert SECOND in steps[0]
    assert ONCALL_MAIL in steps[1]
    assert [e["detail"] for e in doc["events"] if e["type"] == "escalation_mail"] == [
        f"e-mail to {ONCALL_MAIL} sent (step 2)"
    ]
    escalated_id = steps[0].rsplit(" ", 1)[1]
    second = await egw.message(escalated_id)
    assert (second["to"], second["escalated_from"], second["body"]) == (
        SECOND,
        original["id"],
        "Pump 3 pressure low",
    )
    assert sim.network.phone(FIRST).texts() == ["Pump 3 pressure low"]  # the first number got it once
    # Each step reached the configured webhook target as message.escalated.
    await eventually(lambda: len(_escalated_hooks(hooks)) >= 2, 10, 0.05)
    assert [(h["id"], h["step"], h["channel"], h["message_id"]) for h in _escalated_hooks(hooks)] == [
        (original["id"], 1, "sms", escalated_id),
        (original["id"], 2, "email", None),
    ]


async def test_only_a_message_with_an_escalation_wakes_an_idle_escalator(
    egw: Running, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each pass of the escalator is four ledger queries: it ran after every accept, hundreds a
    second under load. Idle (no chain), it now looks again only when a chain may have begun."""
    escalator = egw.gateway.escalator
    assert escalator is not None
    passes: list[float | None] = []
    tick = escalator.tick

    async def counted(now: float | None = None) -> None:
        passes.append(now)
        await tick(now)

    monkeypatch.setattr(escalator, "tick", counted)
    plain = [(await egw.send(to=FIRST, body=f"plain {i}")).json()["id"] for i in range(3)]
    r = await egw.client.post(
        "/api/v1/messages/batch", json={"messages": [{"to": SECOND, "body": f"b{i}"} for i in range(3)]}
    )
    assert r.status_code == 200, r.text
    for msg_id in plain:  # sent, and their reports in: the escalator had every chance to run
        await eventually(functools.partial(_status, egw, msg_id, "delivered"), 15, 0.05)
    assert passes == []
    r = await egw.send(to=FIRST, body="Door open", escalation={"after_s": 30, "then": [SECOND]})
    assert r.status_code == 202, r.text
    await eventually(lambda: passes, 10, 0.02)


async def _status(gw: Running, msg_id: str, status: str) -> bool:
    doc = await gw.message(msg_id)
    return bool(doc["status"] == status)


async def test_a_delivery_report_stops_the_chain(egw: Running, sim: Simulator, hooks: Receiver) -> None:
    r = await egw.send(to=FIRST, body="Door open", escalation={"after_s": 30, "then": [SECOND]})
    assert r.status_code == 202, r.text
    doc = await _chain(egw, r.json()["id"], "delivered")
    assert doc["status"] == "delivered"
    assert doc["escalation"]["step"] == 0
    assert doc["escalation"]["next_at"] is None
    ended = [e["detail"] for e in doc["events"] if e["type"] == "escalation_ended"]
    assert ended == [f"delivered: {doc['id']} was delivered"]
    assert sim.network.phone(SECOND).texts() == []
    await eventually(lambda: _escalated_hooks(hooks), 10, 0.05)
    assert [(h["step"], h["ended"]) for h in _escalated_hooks(hooks)] == [(0, "delivered")]


async def test_a_reply_from_the_recipient_stops_a_chain_until_replied(egw: Running, sim: Simulator) -> None:
    r = await egw.send(
        to=FIRST,
        body="Can you take the night shift?",
        escalation={"after_s": 30, "until": "replied", "then": [SECOND]},
    )
    assert r.status_code == 202, r.text
    msg_id = r.json()["id"]
    await egw.final(msg_id)  # delivered: not enough for until=replied
    assert not (await egw.message(msg_id))["escalation"]["done"]
    await sim.inject(FIRST, "yes, on it")
    doc = await _chain(egw, msg_id, "replied")
    assert [e["detail"] for e in doc["events"] if e["type"] == "escalation_ended"] == [
        f"replied: {FIRST} answered"
    ]
    assert sim.network.phone(SECOND).texts() == []


async def test_a_reply_ends_a_chain_waiting_for_a_delivery_report_too(egw: Running, sim: Simulator) -> None:
    """The report may never come (lost), but an answer proves the text was read."""
    sim.network.set_policy(FIRST, outcome="lost")
    r = await egw.send(to=FIRST, body="Valve 2 stuck", escalation={"after_s": 30, "then": [SECOND]})
    assert r.status_code == 202, r.text
    await sim.network.wait_for(lambda: "Valve 2 stuck" in sim.network.phone(FIRST).texts(), 10)
    await sim.inject(FIRST, "seen")
    doc = await _chain(egw, r.json()["id"], "replied")
    assert doc["status"] == "sent"
    assert sim.network.phone(SECOND).texts() == []


async def test_canceling_the_original_stops_its_chain(egw: Running, sim: Simulator) -> None:
    when = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)).replace(microsecond=0)
    tomorrow = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    r = await egw.send(
        to=FIRST, body="Reminder", send_at=tomorrow, escalation={"after_s": 1, "then": [SECOND]}
    )
    assert r.status_code == 202, r.text
    msg_id = r.json()["id"]
    # The wait runs from when the message is due, not from when it was accepted.
    due = when + datetime.timedelta(seconds=1)
    assert r.json()["escalation"]["next_at"] == due.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert (await egw.client.post(f"/api/v1/messages/{msg_id}/cancel")).status_code == 200
    doc = await _chain(egw, msg_id, "canceled")
    assert doc["escalation"]["step"] == 0
    assert sim.network.phone(SECOND).texts() == []


@pytest.mark.parametrize(
    ("escalation", "code", "names"),
    [
        ({"after_s": 5, "then": [SECOND]}, "invalid_escalation", "escalation.after_s"),
        ({"after_s": 8 * 86400, "then": [SECOND]}, "invalid_escalation", "escalation.after_s"),
        ({"after_s": 60, "until": "read", "then": [SECOND]}, "invalid_escalation", "escalation.until"),
        ({"after_s": 60, "then": []}, "invalid_escalation", "escalation.then"),
        ({"after_s": 60, "then": [SECOND] * 11}, "invalid_escalation", "escalation.then"),
        ({"after_s": 60, "then": [SECOND, "12"]}, "invalid_number", "escalation.then[1]"),
        ({"after_s": 60, "then": [SECOND, 42]}, "invalid_escalation", "escalation.then[1]"),
        ({"after_s": 60, "then": ["mailto:oncall@example.com"]}, "invalid_escalation", "escalation.then[0]"),
        ({"after_s": 60, "then": ["mailto:a@b.lan?cc=x@y.lan"]}, "invalid_escalation", "escalation.then[0]"),
        ({"after_s": 60, "then": [SECOND], "to": THIRD}, "invalid_escalation", "escalation.to"),
        ("soon", "invalid_escalation", "escalation"),
    ],
)
async def test_a_bad_escalation_is_refused_naming_the_field(
    gw: Running, escalation: Any, code: str, names: str
) -> None:
    """`gw` has no [smtp] (mailto: refused) and the default floor of 30 s."""
    r = await gw.send(to=FIRST, body="x", escalation=escalation)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == code, error
    assert error["message"].startswith(f"{names}:"), error
    assert (await gw.client.get("/api/v1/messages")).json()["messages"] == []


async def test_an_escalation_to_a_number_that_sent_stop_is_refused(gw: Running, sim: Simulator) -> None:
    await sim.inject(THIRD, "STOP")
    await eventually(lambda: gw.gateway.store.is_opted_out(THIRD), 10, 0.05)
    r = await gw.send(to=FIRST, body="x", escalation={"after_s": 60, "then": [SECOND, THIRD]})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "opted_out"
    assert r.json()["error"]["message"].startswith("escalation.then[1]:")


async def test_a_step_is_committed_with_its_message_so_it_is_never_sent_twice(tmp_path: Path) -> None:
    """What a restart (or a second loop) taking the same step again meets: the ledger refuses it,
    and the message it would have sent is not kept."""
    store = Store(tmp_path / "ledger.sqlite3")
    await store.open()
    try:
        spec = EscalationSpec(60, "delivered", (SECOND, THIRD))
        original, _ = await store.accept(
            new_message(FIRST, "hello", escalation=spec), key_id=None, queue_max=100
        )
        step = new_message(SECOND, "hello", escalation_of=(original.id, 1))
        first, created = await store.accept(step, key_id=None, queue_max=100)
        assert created
        assert first.escalated_from == original.id
        with pytest.raises(Conflict):
            await store.accept(step, key_id=None, queue_max=100)
        listed = await store.list_messages(to=SECOND)
        assert [m.id for m in listed] == [first.id]
        chain = await store.get(original.id)
        assert chain is not None
        assert chain.escalation is not None
        assert chain.escalation.step == 1
        assert chain.escalation.next_at is not None
        assert chain.escalation.next_at >= first.created_at + 60
    finally:
        await store.close()


async def _mail_events(gw: Running, msg_id: str, count: int) -> list[str]:
    async def seen() -> list[str] | None:
        doc = await gw.message(msg_id)
        details = [e["detail"] for e in doc["events"] if e["type"] == "escalation_mail"]
        return details if len(details) >= count else None

    result: list[str] = await eventually(seen, 15, 0.05)
    return result


@pytest.mark.slow
async def test_an_e_mail_the_server_defers_is_sent_on_a_later_try_and_one_it_refuses_is_given_up(
    egw: Running, sim: Simulator, mail: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(escalation, "MAIL_BACKOFF_BASE_S", 0.05)
    sim.network.set_policy(FIRST, outcome="lost")
    later, never = "later@example.com", "nobody@example.com"
    mail.inbox.refuse[later] = "451 4.3.0 mailbox busy, try again later"
    mail.inbox.refuse[never] = "550 5.1.1 no such user"
    r = await egw.send(to=FIRST, body="Freezer warm", escalation={"after_s": 1, "then": [f"mailto:{later}"]})
    s = await egw.send(to=FIRST, body="Freezer warm!", escalation={"after_s": 1, "then": [f"mailto:{never}"]})
    assert (r.status_code, s.status_code) == (202, 202)
    first_try = await _mail_events(egw, r.json()["id"], 1)
    assert first_try[0].startswith(f"e-mail to {later} not sent yet (step 1): recipient refused: 451")
    del mail.inbox.refuse[later]
    assert (await _mail_events(egw, r.json()["id"], 2))[1] == f"e-mail to {later} sent (step 1)"
    assert [rcpts for rcpts, _m in mail.inbox.messages()] == [(later,)]
    refused = await _mail_events(egw, s.json()["id"], 1)
    assert refused[0].startswith(f"e-mail to {never} given up (step 1): recipient refused: 550")


@pytest.mark.slow
async def test_a_chain_of_numbers_only_ends_exhausted_when_the_last_one_stays_silent(
    egw: Running, sim: Simulator
) -> None:
    sim.network.set_policy(outcome="lost")  # no number ever reports delivery
    r = await egw.send(to=FIRST, body="Gate stuck", escalation={"after_s": 1, "then": [SECOND, THIRD]})
    assert r.status_code == 202, r.text
    doc = await _chain(egw, r.json()["id"], "exhausted")
    assert doc["escalation"]["step"] == 2
    assert sim.network.phone(SECOND).texts() == ["Gate stuck"]
    assert sim.network.phone(THIRD).texts() == ["Gate stuck"]


@pytest.mark.slow
async def test_a_restarted_gateway_goes_on_with_the_chain_without_texting_a_step_twice(
    tmp_path: Path, sim: Simulator
) -> None:
    sim.network.set_policy(outcome="lost")
    raw = gateway_config(tmp_path, str(sim.primary_path), escalation={"min_after_s": 1})
    async with run_gateway(raw, sim) as first:
        await first.gateway.modem_list[0][2].wait_ready(10)
        r = await first.send(to=FIRST, body="Boiler off", escalation={"after_s": 2, "then": [SECOND, THIRD]})
        assert r.status_code == 202, r.text
        msg_id = r.json()["id"]
        await sim.network.wait_for(lambda: "Boiler off" in sim.network.phone(SECOND).texts(), 10)

        async def step_recorded_as_sent() -> bool:
            # Stopped before the modem's answer is committed, any gateway resends that SMS
            # ([dispatcher] unknown_outcome = "resend"): that is not a step taken twice.
            doc = await first.message(msg_id)
            steps = [e["detail"] for e in doc["events"] if e["type"] == "escalated"]
            return bool(steps) and (await first.message(steps[0].rsplit(" ", 1)[1]))["status"] == "sent"

        await eventually(step_recorded_as_sent, 10, 0.05)
    async with run_gateway(raw, sim) as second:
        await second.gateway.modem_list[0][2].wait_ready(10)
        doc = await _chain(second, msg_id, "exhausted")
    assert sim.network.phone(SECOND).texts() == ["Boiler off"]
    assert sim.network.phone(THIRD).texts() == ["Boiler off"]
    assert [e["detail"][:11] for e in doc["events"] if e["type"] == "escalated"] == [
        "step 1 of 2",
        "step 2 of 2",
    ]


async def test_retention_masks_the_numbers_of_an_ended_chain(tmp_path: Path) -> None:
    store = Store(tmp_path / "ledger.sqlite3")
    await store.open()
    try:
        spec = EscalationSpec(60, "delivered", (SECOND, "mailto:oncall@example.com"))
        original, _ = await store.accept(
            new_message(FIRST, "hello", escalation=spec), key_id=None, queue_max=100
        )
        assert await store.end_escalation(original.id, "canceled", "the message was canceled")
        await store.purge(Retention(numbers_days=1), now=time.time() + 2 * 86400)
        msg = await store.get(original.id)
        assert msg is not None
        assert msg.escalation is not None
        assert msg.escalation.spec.then == (f"{SECOND[:3]}{MASK}", "mailto:oncall@example.com")
    finally:
        await store.close()


async def test_retention_ends_with_chains_of_e_mail_targets_only(tmp_path: Path) -> None:
    """More ended chains than one purge batch, with no number to mask: the purge finishes and
    counts none of them (it once rewrote them batch after batch, for ever)."""
    store = Store(tmp_path / "ledger.sqlite3")
    await store.open()
    try:
        spec = EscalationSpec(60, "delivered", ("mailto:oncall@example.com",))
        news = [new_message(f"+49151{i:08d}", "hello", escalation=spec) for i in range(PURGE_BATCH + 1)]
        accepted = await store.accept_many(news, key_id=None, queue_max=10_000)
        for outcome in accepted:
            assert isinstance(outcome, tuple)
            assert await store.end_escalation(outcome[0].id, "canceled", "the message was canceled")
        done = await asyncio.wait_for(
            store.purge(Retention(numbers_days=1), now=time.time() + 2 * 86400), timeout=20
        )
        assert done["numbers"] == 0  # the originals are not final: nothing of theirs is masked yet
        first = accepted[0]
        assert isinstance(first, tuple)
        msg = await store.get(first[0].id)
        assert msg is not None
        assert msg.escalation is not None
        assert msg.escalation.spec.then == ("mailto:oncall@example.com",)
    finally:
        await store.close()
