"""Message templates over HTTP: /api/v1/templates, sending with `template` + `vars`, the version a
message keeps, who may use which template, and hostile templates refused before they can run."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from modem.simulator import Simulator
from tests.support.api_fakes import Keys
from tests.support.gateway import Running
from tests.support.waiting import eventually
from tests.support.web_page import csrf_of, page_client

TO = "+4915112345678"


async def put_template(client: httpx.AsyncClient, keys: Keys, name: str, **doc: Any) -> httpx.Response:
    return await client.put(f"/api/v1/templates/{name}", json=doc, headers=keys.auth("admin"))


async def send(client: httpx.AsyncClient, keys: Keys, key: str = "send_read", **doc: Any) -> httpx.Response:
    return await client.post("/api/v1/messages", json={"to": TO, **doc}, headers=keys.auth(key))


async def test_missing_variable_is_422_naming_it_and_a_full_one_reaches_the_phone(
    gw: Running, sim: Simulator
) -> None:
    """The issue's Show case, over real HTTP to the running gateway and the simulated network."""
    created = await gw.client.post(
        "/api/v1/templates",
        json={"name": "welcome", "body": "Hi {{ name }}, your code is {{ code }}."},
    )
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/api/v1/templates/welcome"
    missing = await gw.send(to=TO, template="welcome", vars={"name": "Ann"})
    assert missing.status_code == 422, missing.text
    error = missing.json()["error"]
    assert error["code"] == "template_error"
    assert "'code'" in error["message"]
    sent = await gw.send(to=TO, template="welcome", vars={"name": "Ann", "code": 4711})
    assert sent.status_code == 202, sent.text
    assert sent.json()["body"] == "Hi Ann, your code is 4711."
    assert sent.json()["template"] == {"name": "welcome", "version": 1}
    final = await gw.final(sent.json()["id"])
    assert final["status"] == "delivered"
    assert await eventually(sim.network.phone(TO).texts, 10) == ["Hi Ann, your code is 4711."]


async def test_a_message_keeps_the_version_it_was_rendered_from(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    assert (await put_template(client, keys, "reminder", body="See you at {{ time }}")).status_code == 201
    first = await send(client, keys, template="reminder", vars={"time": "9:00"})
    assert first.status_code == 202, first.text
    changed = await put_template(client, keys, "reminder", body="Reminder: {{ time }} sharp", version=1)
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2
    second = await send(client, keys, template="reminder", vars={"time": "10:00"})
    old = await client.get(f"/api/v1/messages/{first.json()['id']}", headers=keys.auth("send_read"))
    assert old.json()["template"] == {"name": "reminder", "version": 1}
    assert old.json()["body"] == "See you at 9:00"
    assert second.json()["template"] == {"name": "reminder", "version": 2}
    assert second.json()["body"] == "Reminder: 10:00 sharp"
    plain = await send(client, keys, body="no template")
    assert plain.json()["template"] is None
    listed = await client.get("/api/v1/messages", headers=keys.auth("send_read"))
    assert [m["template"] for m in listed.json()["messages"]] == [
        None,
        {"name": "reminder", "version": 2},
        {"name": "reminder", "version": 1},
    ]


async def test_a_stale_version_or_an_existing_name_is_a_409(client: httpx.AsyncClient, keys: Keys) -> None:
    assert (await put_template(client, keys, "otp", body="{{ code }}")).status_code == 201
    assert (await put_template(client, keys, "otp", body="Code: {{ code }}")).status_code == 200
    stale = await put_template(client, keys, "otp", body="Your code: {{ code }}", version=1)
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "version_conflict"
    again = await client.post(
        "/api/v1/templates", json={"name": "otp", "body": "x"}, headers=keys.auth("admin")
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "template_exists"
    shown = await client.get("/api/v1/templates/otp", headers=keys.auth("send"))
    assert shown.json()["body"] == "Code: {{ code }}"
    assert shown.json()["version"] == 2


async def test_allowed_keys_limit_who_sees_and_sends(client: httpx.AsyncClient, keys: Keys) -> None:
    """ "app" may use "billing"; "sender" neither sees it nor sends with it; admin does both."""
    made = await put_template(client, keys, "billing", body="Invoice {{ n }}", allowed_keys=["app"])
    assert made.json()["allowed_keys"] == ["app"]
    assert (await put_template(client, keys, "open", body="Hello")).status_code == 201
    refused = await send(client, keys, key="send", template="billing", vars={"n": 1})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "template_not_allowed"
    assert (await client.get("/api/v1/templates/billing", headers=keys.auth("send"))).status_code == 403
    seen = await client.get("/api/v1/templates", headers=keys.auth("send"))
    assert [t["name"] for t in seen.json()["templates"]] == ["open"]
    ok = await send(client, keys, key="send_read", template="billing", vars={"n": 1})
    assert ok.status_code == 202, ok.text
    everything = await client.get("/api/v1/templates", headers=keys.auth("admin"))
    assert [t["name"] for t in everything.json()["templates"]] == ["billing", "open"]
    reader = await client.get("/api/v1/templates", headers=keys.auth("read"))
    assert reader.status_code == 403  # a key that cannot send has no use for templates


async def test_unknown_template_writes_and_audit(client: httpx.AsyncClient, keys: Keys) -> None:
    unknown = await send(client, keys, template="nope", vars={})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_template"
    assert (await client.get("/api/v1/templates/nope", headers=keys.auth("admin"))).status_code == 404
    both = await send(client, keys, template="nope", body="hi")
    assert both.status_code == 422
    assert both.json()["error"]["code"] == "invalid_field"
    by_sender = await client.post(
        "/api/v1/templates", json={"name": "x", "body": "x"}, headers=keys.auth("send")
    )
    assert by_sender.status_code == 403
    assert (await put_template(client, keys, "x", body="one")).status_code == 201
    assert (await put_template(client, keys, "x", body="two", allowed_keys=[])).status_code == 200
    assert (await client.delete("/api/v1/templates/x", headers=keys.auth("admin"))).status_code == 204
    assert (await client.delete("/api/v1/templates/x", headers=keys.auth("admin"))).status_code == 404
    gone = await send(client, keys, template="x", vars={})
    assert gone.json()["error"]["code"] == "unknown_template"
    # The name again: its versions continue (a message's name + version stays unique).
    again = await put_template(client, keys, "x", body="three")
    assert again.status_code == 201
    assert again.json()["version"] == 3
    audit = await client.get("/api/v1/audit", headers=keys.auth("admin"))
    rows = [
        (e["action"], e["target"], e["actor"]) for e in audit.json()["events"] if e["target"] == "template x"
    ]
    assert rows == [
        ("template_create", "template x", "operator"),
        ("template_delete", "template x", "operator"),
        ("template_update", "template x", "operator"),
        ("template_create", "template x", "operator"),
    ]
    update = next(e for e in audit.json()["events"] if e["action"] == "template_update")
    assert update["detail"] == "v2, 3 characters; allowed: admin only"  # never the text itself


async def test_preview_warns_when_one_character_makes_it_ucs2(client: httpx.AsyncClient, keys: Keys) -> None:
    """150 GSM-7 characters and one "ë": 1 segment as GSM-7, 3 as UCS-2, and the preview says so."""
    body = "{{ greeting }} " + "x" * 140
    assert (await put_template(client, keys, "promo", body=body)).status_code == 201
    plain = await client.post(
        "/api/v1/templates/promo/preview", json={"vars": {"greeting": "Hello"}}, headers=keys.auth("send")
    )
    assert plain.json() == {"body": "Hello " + "x" * 140, "encoding": "gsm7", "segments": 1}
    accented = await client.post(
        "/api/v1/templates/promo/preview", json={"vars": {"greeting": "Zoë"}}, headers=keys.auth("send")
    )
    shown = accented.json()
    assert (shown["encoding"], shown["segments"]) == ("ucs2", 3)
    assert "U+00EB" in shown["warning"]
    assert "1 segment → 3" in shown["warning"]
    missing = await client.post("/api/v1/templates/promo/preview", json={}, headers=keys.auth("send"))
    assert missing.status_code == 422
    assert "'greeting'" in missing.json()["error"]["message"]
    draft = await client.post(
        "/api/v1/templates/promo/preview",
        json={"body": "Hi {{ greeting }}", "vars": {"greeting": "A"}},
        headers=keys.auth("send"),
    )
    assert draft.status_code == 403  # previewing an edit is for those who may save it
    by_admin = await client.post(
        "/api/v1/templates/promo/preview",
        json={"body": "Hi {{ greeting }}", "vars": {"greeting": "A"}},
        headers=keys.auth("admin"),
    )
    assert by_admin.json()["body"] == "Hi A"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("{{ 'x' * 1000000000 }}", "'*' is not available"),
        ("{% for a in range(100) %}{% for b in range(100) %}.{% endfor %}{% endfor %}", "one level of loops"),
        ("{% set s = 'x' %}{{ s }}", "{% set %} is not available"),
        ("{% include 'other' %}", "{% include %} is not available"),
        ("{{ name.upper() }}", "calls are not available"),
        ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "macros are not available"),
    ],
)
async def test_a_hostile_template_is_refused_at_save(
    client: httpx.AsyncClient, keys: Keys, body: str, why: str
) -> None:
    """Templates that could hold the event loop (work without bound) never get saved: a render
    only ever runs a template checked against the bounded subset."""
    r = await put_template(client, keys, "evil", body=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_template"
    assert why in r.json()["error"]["message"]
    assert (await client.get("/api/v1/templates/evil", headers=keys.auth("admin"))).status_code == 404


async def test_work_a_saved_template_would_do_past_its_budget_is_refused_at_send(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    """What can only be known with the vars (a long range, a filter over a long text in a loop) is
    cut off by the render's budget and answered 422, while the loop keeps serving requests."""
    assert (
        await put_template(client, keys, "loop", body="{% for i in range(n) %}.{% endfor %}")
    ).status_code == 201
    huge = await send(client, keys, template="loop", vars={"n": 10**9})
    assert huge.status_code == 422
    assert huge.json()["error"]["code"] == "template_error"
    assert "range()" in huge.json()["error"]["message"]
    body = "{% for i in range(100) %}{{ big | upper | lower | title | length }}{% endfor %}"
    assert (await put_template(client, keys, "heavy", body=body)).status_code == 201
    heavy = await send(client, keys, template="heavy", vars={"big": "a" * 1600})
    assert heavy.status_code == 422
    assert "too much work" in heavy.json()["error"]["message"]
    assert (await put_template(client, keys, "peek", body="{{ ''.__class__.__mro__ }}")).status_code == 201
    peek = await send(client, keys, template="peek", vars={})
    assert peek.status_code == 422  # the sandbox still guards attributes
    assert peek.json()["error"]["code"] == "template_error"
    assert (await client.get("/healthz")).status_code == 200


async def test_the_page_lists_templates_for_a_logged_in_admin(gw: Running) -> None:
    made = await gw.client.put(
        "/api/v1/templates/notice",
        json={"body": "<b>{{ who }}</b> is on call", "allowed_keys": ["test"]},
    )
    assert made.status_code == 201, made.text
    async with await page_client(f"http://{gw.config.api.listen}") as c:
        anonymous = await c.get("/templates")
        assert (anonymous.status_code, anonymous.headers["location"]) == (303, "/login")
        token = csrf_of((await c.get("/login")).text)
        assert (await c.post("/login", data={"password": gw.key, "csrf": token})).status_code == 303
        page = await c.get("/templates")
    assert page.status_code == 200
    assert page.text.count('class="template-row"') == 1
    assert "&lt;b&gt;{{ who }}&lt;/b&gt; is on call" in page.text  # shown as text, never run
    assert "<td>test</td>" in page.text
    assert 'href="/templates"' in page.text


async def test_two_edits_of_the_same_version_at_once_one_wins(client: httpx.AsyncClient, keys: Keys) -> None:
    """Both based on v1: one becomes v2, the other is told it is stale (never two v2s)."""
    assert (await put_template(client, keys, "race", body="v1")).status_code == 201
    first, second = await asyncio.gather(
        put_template(client, keys, "race", body="edit A", version=1),
        put_template(client, keys, "race", body="edit B", version=1),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    winner = first if first.status_code == 200 else second
    assert winner.json()["version"] == 2
    shown = await client.get("/api/v1/templates/race", headers=keys.auth("admin"))
    assert (shown.json()["version"], shown.json()["body"]) == (2, winner.json()["body"])
