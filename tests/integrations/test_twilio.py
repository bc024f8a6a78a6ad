"""The official twilio client, pointed at the box by its base URL, sends and fetches; callbacks arrive."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from appliance.ledger import KeyLimits
from modem.simulator import Simulator
from tests.integrations.receiver import Receiver, receiver
from tests.support.gateway import Running, gateway_config, run_gateway
from tests.support.waiting import eventually

ACCOUNT = "AC" + "0" * 32
TOKEN = "callback-signing-secret"  # noqa: S105  (a test secret)


@pytest.fixture
async def box(tmp_path: Path, sim: Simulator) -> AsyncIterator[Running]:
    raw = gateway_config(
        tmp_path,
        str(sim.primary_path),
        api={"callback_secret": TOKEN},
        webhooks={"allow": ["127.0.0.1/32"]},  # the test's receiver runs on this box's loopback
    )
    async with run_gateway(raw, sim) as running:
        await running.gateway.modem_list[0][2].wait_ready(10)
        yield running


def client_for(box: Running, key: str | None = None) -> Client:
    client = Client(ACCOUNT, key or box.key)
    client.api.base_url = f"http://{box.config.api.listen}"  # twilio/base/domain.py joins base_url + uri
    return client


async def test_send_fetch_and_status_callback(box: Running, sim: Simulator) -> None:
    client = client_for(box)
    async with receiver() as hook:
        msg = await asyncio.to_thread(
            client.messages.create,
            to="+4915112345678",
            from_="+15005550006",
            body="hello via twilio",
            status_callback=hook.url,
        )
        assert msg.sid.startswith("SM")
        assert len(msg.sid) == 34
        assert msg.status == "queued"
        assert msg.num_segments == "1"
        assert msg.direction == "outbound-api"
        assert msg.account_sid == ACCOUNT
        assert msg.date_created is not None  # the client parsed our RFC 2822 date

        await eventually(lambda: "hello via twilio" in sim.network.phone("+4915112345678").texts(), 15)

        async def delivered() -> bool:
            fetched = await asyncio.to_thread(client.messages(msg.sid).fetch)
            return bool(fetched.status == "delivered")

        await eventually(delivered, 15, 0.1)
        await eventually(lambda: _statuses(hook).count("delivered") == 1, 15)
    validator = RequestValidator(TOKEN)
    for request in hook.requests:
        form = dict(urllib.parse.parse_qsl(request.body.decode(), keep_blank_values=True))
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert form["MessageSid"] == msg.sid
        assert form["AccountSid"] == ACCOUNT
        assert form["To"] == "+4915112345678"
        assert form["ApiVersion"] == "2010-04-01"
        assert "From" in form
        assert validator.validate(hook.url, form, request.headers["x-twilio-signature"])
    assert "sent" in _statuses(hook)


async def test_invalid_number_and_bad_credentials(box: Running) -> None:
    client = client_for(box)
    with pytest.raises(TwilioRestException) as info:
        await asyncio.to_thread(client.messages.create, to="12", from_="+15005550006", body="x")
    assert info.value.code == 21211
    assert info.value.status == 400
    wrong = Client(ACCOUNT, "not-a-key")
    wrong.api.base_url = f"http://{box.config.api.listen}"
    with pytest.raises(TwilioRestException) as info:
        await asyncio.to_thread(wrong.messages.create, to="+4915112345678", from_="+1", body="x")
    assert info.value.code == 20003
    assert info.value.status == 401


async def test_opted_out_recipient(box: Running, sim: Simulator) -> None:
    number = "+4915112340000"
    await sim.inject(number, "STOP")
    await eventually(lambda: box.gateway.store.is_opted_out(number), 15)
    client = client_for(box)
    with pytest.raises(TwilioRestException) as info:
        await asyncio.to_thread(client.messages.create, to=number, from_="+1", body="x")
    assert info.value.code == 21610
    assert info.value.status == 400


async def test_a_send_key_fetches_its_own_messages_and_no_other_keys(box: Running) -> None:
    """The fetch route used to hand any key any message: now another key's message is 404."""
    _, alice_key = await box.gateway.store.create_key("alice", ["send"])
    _, mallory_key = await box.gateway.store.create_key("mallory", ["send"])
    alice, mallory = client_for(box, alice_key), client_for(box, mallory_key)
    msg = await asyncio.to_thread(
        alice.messages.create, to="+4915112345678", from_="+1", body="alice's secret"
    )
    own = await asyncio.to_thread(alice.messages(msg.sid).fetch)
    assert own.body == "alice's secret"
    with pytest.raises(TwilioRestException) as info:
        await asyncio.to_thread(mallory.messages(msg.sid).fetch)
    assert (info.value.status, info.value.code) == (404, 20404)
    assert "secret" not in str(info.value.msg)
    admin_view = await asyncio.to_thread(client_for(box).messages(msg.sid).fetch)
    assert admin_view.body == "alice's secret"  # admin (and read_all) see every message


async def test_a_key_over_its_quota_gets_429_through_the_twilio_client(box: Running) -> None:
    _, key = await box.gateway.store.create_key("limited", ["send"], limits=KeyLimits(per_hour=1))
    client = client_for(box, key)
    await asyncio.to_thread(client.messages.create, to="+4915112345678", from_="+1", body="first")
    with pytest.raises(TwilioRestException) as info:
        await asyncio.to_thread(client.messages.create, to="+4915112345678", from_="+1", body="second")
    assert (info.value.status, info.value.code) == (429, 20429)
    assert "1 messages per hour" in str(info.value.msg)


def _statuses(hook: Receiver) -> list[str]:
    return [
        dict(urllib.parse.parse_qsl(r.body.decode(), keep_blank_values=True))["MessageStatus"]
        for r in hook.requests
    ]
