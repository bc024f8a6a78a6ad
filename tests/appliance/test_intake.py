"""One intake behind every front door: the same checks, counts and refusals through the API,
Twilio, Alertmanager and the page's test SMS (real HTTP on the app, a real ledger)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import httpx
from prometheus_client.parser import text_string_to_metric_families

from appliance.api import create_app
from appliance.ledger import Store
from appliance.segments import plan
from tests.support.api_fakes import TEST_CONFIG, ClientFactory, FakeGateway, as_view
from tests.support.user_data import join_units, units
from tests.support.web_page import csrf_of

TO = "+4915112345678"
TWILIO = "/2010-04-01/Accounts/AC0123/Messages.json"
AM = "/api/v1/alertmanager"
ALERT = {"status": "firing", "groupKey": "g", "alerts": [{"labels": {"alertname": "DiskFull"}}]}


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"AC0123:{key}".encode()).decode()}


async def page_token(client: httpx.AsyncClient, key: str) -> str:
    """Log in to the page with an admin key; the CSRF token of the admin session."""
    token = csrf_of((await client.get("/login")).text)
    r = await client.post("/login", data={"password": key, "csrf": token})
    assert r.status_code == 303, r.text
    return csrf_of((await client.get("/")).text)


async def through_every_door(client: httpx.AsyncClient, key: str, to: str) -> dict[str, httpx.Response]:
    bearer = {"Authorization": f"Bearer {key}"}
    token = await page_token(client, key)
    return {
        "api": await client.post("/api/v1/messages", json={"to": to, "body": "hello"}, headers=bearer),
        "twilio": await client.post(TWILIO, data={"To": to, "Body": "hello"}, headers=basic(key)),
        "alertmanager": await client.post(AM, params={"to": to}, json=ALERT, headers=bearer),
        "page": await client.post("/actions/test-sms", data={"csrf": token, "to": to, "body": "hello"}),
    }


def accepted(text: str) -> dict[str, float]:
    return {
        s.labels["source"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "smsgw_messages_accepted_total"
    }


async def test_each_door_counts_what_it_accepted_and_wakes_the_dispatcher(
    store: Store, client_for: ClientFactory
) -> None:
    _, key = await store.create_key("ops", ["send", "read", "admin"])
    gateway = FakeGateway()
    client = await client_for(create_app(store=store, config=TEST_CONFIG, gateway=as_view(gateway)))
    replies = await through_every_door(client, key, TO)
    codes = {door: r.status_code for door, r in replies.items()}
    assert codes == {"api": 202, "twilio": 201, "alertmanager": 202, "page": 303}
    metrics = accepted((await client.get("/metrics")).text)
    assert metrics == {"api": 1.0, "twilio": 1.0, "alertmanager": 1.0, "page": 1.0, "escalation": 0.0}
    assert gateway.wakes == 4
    listed = (await client.get("/api/v1/messages", headers={"Authorization": f"Bearer {key}"})).json()
    assert len(listed["messages"]) == 4


async def test_a_full_disk_is_refused_at_every_door_the_page_included(
    file_store: Store, client_for: ClientFactory
) -> None:
    store = file_store
    _, key = await store.create_key("ops", ["send", "read", "admin"])
    gateway = FakeGateway()
    app = create_app(store=store, config=TEST_CONFIG, gateway=as_view(gateway), min_free_bytes=1 << 62)
    client = await client_for(app)
    replies = await through_every_door(client, key, TO)
    api = replies["api"].json()["error"]
    assert (replies["api"].status_code, api["code"]) == (507, "storage_full")
    assert "free on the ledger's disk" in api["message"]
    # The page's test SMS checked the disk too (it used to skip the check): the same status and code.
    assert replies["page"].status_code == 507, replies["page"].text
    assert "(storage_full)" in replies["page"].text
    assert "free on the ledger&#39;s disk" in replies["page"].text
    # Twilio and Alertmanager clients retry a 503: the refusal is shaped for them.
    assert (replies["twilio"].status_code, replies["twilio"].json()["code"]) == (503, 20503)
    assert replies["twilio"].headers["retry-after"] == "30"
    am = replies["alertmanager"]
    assert (am.status_code, am.json()["error"]["code"]) == (503, "storage_full")
    assert gateway.wakes == 0
    assert accepted((await client.get("/metrics")).text) == dict.fromkeys(
        ("api", "twilio", "alertmanager", "page", "escalation"), 0.0
    )
    assert await store.list_messages(status=None, to=None, limit=10, before_seq=None, key_id=None) == []


async def test_an_opted_out_number_is_refused_in_each_doors_own_words(
    store: Store, client_for: ClientFactory
) -> None:
    _, key = await store.create_key("ops", ["send", "read", "admin"])
    await store.add_inbound_part(
        sender=TO, encoding="gsm7", user_data=units("stop"), ref=None, total=1, seq=1,
        sent_at=None, join=join_units, keyword_of=lambda text: "stop",
    )  # fmt: skip
    client = await client_for(create_app(store=store, config=TEST_CONFIG, gateway=as_view(FakeGateway())))
    replies = await through_every_door(client, key, TO)
    assert (replies["api"].status_code, replies["api"].json()["error"]["code"]) == (422, "opted_out")
    assert (replies["twilio"].status_code, replies["twilio"].json()["code"]) == (400, 21610)
    am: dict[str, Any] = replies["alertmanager"].json()
    assert (replies["alertmanager"].status_code, am["messages"]) == (
        200,
        [{"to": TO, "id": None, "opted_out": True}],
    )
    assert replies["page"].status_code == 422
    assert "opted out (sent STOP)" in replies["page"].text


async def test_basic_and_bearer_are_one_check_where_a_door_takes_both(
    store: Store, client_for: ClientFactory
) -> None:
    _, key = await store.create_key("ops", ["send", "read"])
    _, reader = await store.create_key("reader", ["read"])
    client = await client_for(create_app(store=store, config=TEST_CONFIG, gateway=as_view(FakeGateway())))
    url = f"{AM}?to={quote(TO)}"
    assert (await client.post(url, json=ALERT, headers=basic(key))).status_code == 202
    wrong = await client.post(url, json=ALERT, headers=basic("sgw_not-a-key"))
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "unauthorized")
    assert wrong.headers["www-authenticate"].startswith("Basic")
    scope = await client.post(url, json=ALERT, headers=basic(reader))
    assert (scope.status_code, scope.json()["error"]["code"]) == (403, "forbidden")
    # Twilio takes Basic only: the same wrong password is its own 20003, Bearer is not Twilio's.
    r = await client.post(TWILIO, data={"To": TO, "Body": "x"}, headers=basic("sgw_not-a-key"))
    assert (r.status_code, r.json()["code"]) == (401, 20003)
    r = await client.post(TWILIO, data={"To": TO, "Body": "x"}, headers={"Authorization": f"Bearer {key}"})
    assert (r.status_code, r.json()["code"]) == (401, 20003)
    # The native API takes Bearer only.
    r = await client.post("/api/v1/messages", json={"to": TO, "body": "x"}, headers=basic(key))
    assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")


async def test_a_body_over_its_cap_is_refused_by_every_reader_even_with_a_lying_length(
    store: Store, client_for: ClientFactory
) -> None:
    _, key = await store.create_key("ops", ["send", "read", "admin"])
    client = await client_for(create_app(store=store, config=TEST_CONFIG, gateway=as_view(FakeGateway())))

    async def chunks(size: int) -> Any:  # no Content-Length: the size shows only while reading
        for _ in range(size // 4096 + 1):
            yield b"x" * 4096

    bearer = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    r = await client.post("/api/v1/messages", content=chunks(20000), headers=bearer)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "payload_too_large")
    r = await client.post("/api/v1/alertmanager?to=" + TO, content=chunks((1 << 20) + 1), headers=bearer)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "payload_too_large")
    form = {**basic(key), "Content-Type": "application/x-www-form-urlencoded"}
    r = await client.post(TWILIO, content=chunks(70000), headers=form)
    assert (r.status_code, r.json()["code"]) == (413, 20001)
    assert await store.list_messages(status=None, to=None, limit=10, before_seq=None, key_id=None) == []


def test_the_send_side_plans_with_the_encoding_chosen_at_intake() -> None:
    # The ledger keeps the intake's encoding; the dispatcher passes it back, so the alphabet
    # cannot change between accept and send.
    assert plan("hello").encoding.value == "gsm7"
    forced = plan("hello", "ucs2")
    assert (forced.encoding.value, forced.parts) == ("ucs2", ("hello",))
    assert plan("ł" * 71).encoding.value == "ucs2"
    assert len(plan("ł" * 71, "ucs2").parts) == 2 == len(plan("ł" * 71).parts)
