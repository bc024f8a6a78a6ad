"""The HTTP API through a real httpx client on the ASGI interface, against a real ledger."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from html import escape
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from appliance import status as status_mod
from appliance import validation
from appliance.api import create_app
from appliance.config import ApiConfig, Config
from appliance.keywords import keyword_of
from appliance.ledger import NewMessage, StorageFull, Store
from tests.support.api_fakes import TEST_CONFIG, ClientFactory, FakeGateway, Keys, as_view, ready_modem
from tests.support.user_data import join_units, units
from tests.support.web_page import csrf_of

TO = "+4915112345678"
MESSAGE_FIELDS = {
    "id",
    "to",
    "body",
    "status",
    "segments",
    "encoding",
    "priority",
    "attempts",
    "error",
    "created_at",
    "updated_at",
    "sent_at",
    "delivered_at",
    "metadata",
    "parts",
    "events",
}
PART_FIELDS = {"seq", "total", "status", "mr", "submitted_at", "report_status", "report_at"}
EVENT_FIELDS = {"at", "type", "from", "to", "detail"}


def ok(**fields: Any) -> dict[str, Any]:
    return {"to": TO, "body": "hello", **fields}


async def post(
    client: httpx.AsyncClient, keys: Keys, doc: Any, *, key: str = "send_read", **kw: Any
) -> httpx.Response:
    headers = {**keys.auth(key), **kw.pop("headers", {})}
    return await client.post("/api/v1/messages", json=doc, headers=headers, **kw)


async def count_messages(client: httpx.AsyncClient, keys: Keys) -> int:
    r = await client.get("/api/v1/messages", params={"limit": 200}, headers=keys.auth("read"))
    assert r.status_code == 200
    return len(r.json()["messages"])


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    doc: dict[str, Any] = r.json()
    assert set(doc) >= {"error"}
    assert set(doc["error"]) == {"code", "message"}
    assert doc["error"]["code"] == code
    assert isinstance(doc["error"]["message"], str)
    assert len(doc["error"]["message"]) > 10
    return doc


# ------------------------------------------------------------------ bad input
JSON_HEADERS = {"Content-Type": "application/json"}
BAD_REQUESTS: list[tuple[str, dict[str, Any], int, str, str | None]] = [
    # (id, request kwargs, status, code, a word the message must name)
    ("malformed-json", {"content": b'{"to": ', "headers": JSON_HEADERS}, 400, "invalid_json", None),
    ("not-utf8", {"content": b'{"to": "\xff"}', "headers": JSON_HEADERS}, 400, "invalid_json", None),
    (
        "nan",
        {"content": b'{"to": "+4915112345678", "body": NaN}', "headers": JSON_HEADERS},
        400,
        "invalid_json",
        None,
    ),
    (
        "lone-surrogate",
        {"content": b'{"to": "+4915112345678", "body": "\\ud800"}', "headers": JSON_HEADERS},
        400,
        "invalid_json",
        None,
    ),
    (
        "lone-low-surrogate-in-capitals",
        {"content": b'{"to": "+4915112345678", "body": "ok \\uDFFF"}', "headers": JSON_HEADERS},
        400,
        "invalid_json",
        None,
    ),
    ("deep-nesting", {"content": b"[" * 5000, "headers": JSON_HEADERS}, 400, "invalid_json", None),
    ("array", {"json": [ok()]}, 400, "invalid_request", None),
    ("string", {"json": "hello"}, 400, "invalid_request", None),
    ("null", {"content": b"null", "headers": JSON_HEADERS}, 400, "invalid_request", None),
    ("unknown-field", {"json": ok(sender="me")}, 422, "unknown_field", "sender"),
    ("missing-to", {"json": {"body": "x"}}, 422, "missing_field", "to"),
    ("missing-body", {"json": {"to": TO}}, 422, "missing_field", "body"),
    ("to-number-type", {"json": ok(to=4915112345678)}, 422, "invalid_field", "to"),
    ("to-null", {"json": ok(to=None)}, 422, "invalid_field", "to"),
    ("body-type", {"json": ok(body=42)}, 422, "invalid_field", "body"),
    ("body-null", {"json": ok(body=None)}, 422, "invalid_field", "body"),
    ("to-letters", {"json": ok(to="call me")}, 422, "invalid_number", "to"),
    ("to-empty", {"json": ok(to="")}, 422, "invalid_number", "to"),
    ("to-too-short", {"json": ok(to="+49")}, 422, "invalid_number", "to"),
    ("to-too-long", {"json": ok(to="+49151123456789012345")}, 422, "invalid_number", "to"),
    ("to-bad-country", {"json": ok(to="+999123456789")}, 422, "invalid_number", "to"),
    ("to-huge", {"json": ok(to="1" * 1000)}, 422, "invalid_number", "to"),
    ("empty-body", {"json": ok(body="")}, 422, "empty_body", "body"),
    ("blank-body", {"json": ok(body="  \n ")}, 422, "empty_body", "body"),
    ("body-too-long", {"json": ok(body="x" * 501)}, 422, "body_too_long", "500"),
    ("body-too-long-emoji", {"json": ok(body="😀" * 501)}, 422, "body_too_long", "500"),
    ("send-at-words", {"json": ok(send_at="tomorrow")}, 422, "invalid_send_at", "send_at"),
    ("send-at-no-zone", {"json": ok(send_at="2030-01-01T08:00:00")}, 422, "invalid_send_at", "send_at"),
    ("send-at-number", {"json": ok(send_at=1893456000)}, 422, "invalid_send_at", "send_at"),
    ("send-at-bad-date", {"json": ok(send_at="2030-02-30T08:00:00Z")}, 422, "invalid_send_at", "send_at"),
    ("send-at-far", {"json": ok(send_at="2999-01-01T00:00:00Z")}, 422, "invalid_send_at", "days"),
    ("validity-string", {"json": ok(validity_s="3600")}, 422, "invalid_field", "validity_s"),
    ("validity-bool", {"json": ok(validity_s=True)}, 422, "invalid_field", "validity_s"),
    ("validity-short", {"json": ok(validity_s=59)}, 422, "invalid_field", "validity_s"),
    ("validity-long", {"json": ok(validity_s=604801)}, 422, "invalid_field", "validity_s"),
    ("validity-fraction", {"json": ok(validity_s=60.5)}, 422, "invalid_field", "validity_s"),
    ("priority-word", {"json": ok(priority="urgent")}, 422, "invalid_field", "priority"),
    ("priority-number", {"json": ok(priority=1)}, 422, "invalid_field", "priority"),
    (
        "callback-ftp",
        {"json": ok(status_callback="ftp://example.com/x")},
        422,
        "invalid_field",
        "status_callback",
    ),
    ("callback-no-host", {"json": ok(status_callback="http://")}, 422, "invalid_field", "status_callback"),
    ("callback-words", {"json": ok(status_callback="not a url")}, 422, "invalid_field", "status_callback"),
    (
        "callback-bad-port",
        {"json": ok(status_callback="http://h:99999/")},
        422,
        "invalid_field",
        "status_callback",
    ),
    ("callback-type", {"json": ok(status_callback=["http://h/"])}, 422, "invalid_field", "status_callback"),
    ("metadata-list", {"json": ok(metadata=[1, 2])}, 422, "invalid_field", "metadata"),
    ("metadata-string", {"json": ok(metadata="x")}, 422, "invalid_field", "metadata"),
    ("metadata-big", {"json": ok(metadata={"k": "x" * 5000})}, 422, "invalid_field", "metadata"),
    ("idem-type", {"json": ok(idempotency_key=5)}, 422, "invalid_field", "idempotency_key"),
    ("idem-empty", {"json": ok(idempotency_key="")}, 422, "invalid_field", "idempotency_key"),
    ("idem-long", {"json": ok(idempotency_key="k" * 256)}, 422, "invalid_field", "idempotency_key"),
    ("idem-control", {"json": ok(idempotency_key="a\nb")}, 422, "invalid_field", "idempotency_key"),
    (
        "idem-header-open",
        {"json": ok(), "headers": {"Idempotency-Key": '"abc'}},
        422,
        "invalid_field",
        "Idempotency-Key",
    ),
    (
        "idem-header-escape",
        {"json": ok(), "headers": {"Idempotency-Key": '"a\\b"'}},
        422,
        "invalid_field",
        "Idempotency-Key",
    ),
    (
        "idem-header-trailing",
        {"json": ok(), "headers": {"Idempotency-Key": '"a"b'}},
        422,
        "invalid_field",
        "Idempotency-Key",
    ),
    (
        "idem-header-body-differ",
        {"json": ok(idempotency_key="a"), "headers": {"Idempotency-Key": "b"}},
        422,
        "invalid_field",
        "idempotency_key",
    ),
    (
        "content-type-text",
        {"content": json.dumps(ok()).encode(), "headers": {"Content-Type": "text/plain"}},
        415,
        "unsupported_media_type",
        "JSON",
    ),
    ("content-type-form", {"data": {"to": TO, "body": "x"}}, 415, "unsupported_media_type", "JSON"),
    ("content-type-missing", {"content": json.dumps(ok()).encode()}, 415, "unsupported_media_type", "JSON"),
    ("too-large", {"json": ok(body="x" * 20000)}, 413, "payload_too_large", "16384"),
    (
        "bad-content-length",
        {"content": b"{}", "headers": {**JSON_HEADERS, "Content-Length": "abc"}},
        400,
        "invalid_request",
        "Content-Length",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "names"), [p[1:] for p in BAD_REQUESTS], ids=[p[0] for p in BAD_REQUESTS]
)
async def test_bad_send_requests_get_their_4xx_code(
    client: httpx.AsyncClient, keys: Keys, kwargs: dict[str, Any], status: int, code: str, names: str | None
) -> None:
    kwargs = dict(kwargs)  # the parameter is shared by both backends' runs: pop from a copy
    headers = {**keys.auth("send_read"), **kwargs.pop("headers", {})}
    r = await client.post("/api/v1/messages", headers=headers, **kwargs)
    doc = assert_error(r, status, code)
    if names is not None:
        assert names in doc["error"]["message"]
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert await count_messages(client, keys) == 0


async def test_oversize_body_without_content_length_is_refused_on_the_bytes_read(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"to": "+4915112345678", "body": "'
        for _ in range(20):
            yield b"x" * 1000
        yield b'"}'

    r = await client.post("/api/v1/messages", content=chunks(), headers={**keys.auth("send"), **JSON_HEADERS})
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "payload_too_large")


BAD_QUERIES = [
    ("/api/v1/messages?status=lost", 422, "invalid_parameter"),
    ("/api/v1/messages?limit=0", 422, "invalid_parameter"),
    ("/api/v1/messages?limit=201", 422, "invalid_parameter"),
    ("/api/v1/messages?limit=ten", 422, "invalid_parameter"),
    ("/api/v1/messages?cursor=garbage", 422, "invalid_cursor"),
    ("/api/v1/messages?cursor=djE6LTE", 422, "invalid_cursor"),  # "v1:-1"
    ("/api/v1/messages?to=nobody", 422, "invalid_number"),
    ("/api/v1/messages?stauts=queued", 422, "unknown_parameter"),
    ("/api/v1/inbound?since=yesterday", 422, "invalid_parameter"),
    ("/api/v1/inbound?limit=-1", 422, "invalid_parameter"),
    ("/api/v1/inbound?cursor=%00", 422, "invalid_cursor"),
    ("/api/v1/messages/msg_00000000000000000000000", 404, "not_found"),
    ("/api/v1/nothing", 404, "not_found"),
    ("/nothing", 404, "not_found"),
]


@pytest.mark.parametrize(("url", "status", "code"), BAD_QUERIES, ids=[q[0] for q in BAD_QUERIES])
async def test_bad_reads_get_their_4xx_code(
    client: httpx.AsyncClient, keys: Keys, url: str, status: int, code: str
) -> None:
    assert_error(await client.get(url, headers=keys.auth("admin")), status, code)


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("DELETE", "/api/v1/messages"),
        ("PUT", "/healthz"),
        ("GET", "/api/v1/messages/x/cancel"),
        ("POST", "/api/v1/status"),
    ],
)
async def test_wrong_method_is_a_json_405(
    client: httpx.AsyncClient, keys: Keys, method: str, url: str
) -> None:
    r = await client.request(method, url, headers=keys.auth("admin"))
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"]


async def test_unknown_message_cancel_is_404(client: httpx.AsyncClient, keys: Keys) -> None:
    assert_error(
        await client.post("/api/v1/messages/msg_nope/cancel", headers=keys.auth("send")), 404, "not_found"
    )
    assert_error(
        await client.post("/api/v1/messages/msg_nope/resend", headers=keys.auth("admin")), 404, "not_found"
    )


# --------------------------------------------------------------------- accept
async def test_accept_returns_202_with_the_full_message_and_wakes_the_dispatcher(
    client: httpx.AsyncClient, keys: Keys, gateway: FakeGateway
) -> None:
    r = await post(client, keys, ok(body="Grüße 😀", metadata={"order": 17}, priority="high"))
    assert r.status_code == 202, r.text
    msg = r.json()
    assert set(msg) >= MESSAGE_FIELDS
    assert msg["status"] == "queued"
    assert msg["to"] == TO
    assert msg["body"] == "Grüße 😀"
    assert (msg["encoding"], msg["segments"]) == ("ucs2", 1)
    assert msg["priority"] == "high"
    assert msg["attempts"] == 0
    assert msg["error"] is None
    assert msg["metadata"] == {"order": 17}
    assert msg["sent_at"] is None
    assert msg["delivered_at"] is None
    assert msg["created_at"].endswith("Z")
    assert msg["delivery_report"] == "none"
    assert msg["possible_duplicate"] is False
    assert [set(p) for p in msg["parts"]] == [PART_FIELDS]
    assert msg["parts"][0]["status"] == "pending"
    assert [set(e) for e in msg["events"]] == [EVENT_FIELDS]
    assert msg["events"][0]["type"] == "accepted"
    assert (msg["events"][0]["from"], msg["events"][0]["to"]) == (None, "queued")
    assert r.headers["location"] == f"/api/v1/messages/{msg['id']}"
    assert r.headers["cache-control"] == "no-store"
    assert gateway.wakes == 1


@pytest.mark.parametrize(
    ("typed", "e164"),
    [
        ("0151 12345678", "+4915112345678"),
        ("+49 (151) 123-456 78", "+4915112345678"),
        ("0044 20 7946 0958", "+442079460958"),
    ],
)
async def test_national_and_formatted_numbers_become_e164(
    client: httpx.AsyncClient, keys: Keys, typed: str, e164: str
) -> None:
    r = await post(client, keys, ok(to=typed))
    assert r.status_code == 202, r.text
    assert r.json()["to"] == e164


async def test_long_gsm7_text_is_counted_in_segments(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await post(client, keys, ok(body="a" * 161))
    assert (r.json()["encoding"], r.json()["segments"], len(r.json()["parts"])) == ("gsm7", 2, 2)


async def test_send_at_in_the_future_is_scheduled_and_in_the_past_is_queued(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    future = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 3600))
    r = await post(client, keys, ok(send_at=future, validity_s=600))
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "scheduled"
    assert r.json()["send_at"] is not None
    r = await post(client, keys, ok(send_at="2020-01-01T00:00:00.5+02:00"))
    assert r.json()["status"] == "queued"


async def test_get_by_id_shows_the_timeline_as_the_dispatcher_works(
    client: httpx.AsyncClient, keys: Keys, store: Store
) -> None:
    msg_id = (await post(client, keys, ok())).json()["id"]
    claimed = await store.claim_next("gsm0")
    assert claimed is not None
    assert claimed.id == msg_id
    await store.part_sending(msg_id, 1)
    await store.part_submitted(msg_id, 1, 42, "gsm0")
    r = await client.get(f"/api/v1/messages/{msg_id}", headers=keys.auth("read"))
    assert r.status_code == 200
    msg = r.json()
    assert msg["status"] == "sent"
    assert msg["attempts"] == 1
    assert msg["sent_at"] is not None
    assert msg["delivery_report"] == "pending"
    assert msg["parts"][0]["mr"] == 42
    assert [e["type"] for e in msg["events"]] == ["accepted", "attempt", "part_submitted", "sent"]
    transitions = [(e["from"], e["to"]) for e in msg["events"] if e["to"] is not None]
    assert transitions == [(None, "queued"), ("queued", "sending"), ("sending", "sent")]
    await store.apply_report(42, "015112345678", 0x00)
    msg = (await client.get(f"/api/v1/messages/{msg_id}", headers=keys.auth("read"))).json()
    assert msg["status"] == "delivered"
    assert msg["delivered_at"] is not None
    assert msg["delivery_report"] == "received"
    assert msg["parts"][0]["report_status"] == 0


async def test_list_pages_newest_first_with_an_opaque_cursor(client: httpx.AsyncClient, keys: Keys) -> None:
    sent = [(await post(client, keys, ok(body=f"m{i}"))).json()["id"] for i in range(7)]
    seen: list[str] = []
    pages = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        r = await client.get("/api/v1/messages", params=params, headers=keys.auth("read"))
        assert r.status_code == 200
        page = r.json()
        assert set(page) == {"messages", "next_cursor"}
        pages.append(len(page["messages"]))
        for m in page["messages"]:
            assert set(m) >= MESSAGE_FIELDS
        seen += [m["id"] for m in page["messages"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [3, 3, 1]
    assert seen == list(reversed(sent))


async def test_list_filters_by_status_and_number(client: httpx.AsyncClient, keys: Keys, store: Store) -> None:
    a = (await post(client, keys, ok(to="+4915111111111"))).json()["id"]
    b = (await post(client, keys, ok(to="015122222222"))).json()["id"]
    await client.post(f"/api/v1/messages/{a}/cancel", headers=keys.auth("send_read"))
    r = await client.get("/api/v1/messages", params={"status": "canceled"}, headers=keys.auth("read"))
    assert [m["id"] for m in r.json()["messages"]] == [a]
    r = await client.get("/api/v1/messages", params={"to": "0151 22222222"}, headers=keys.auth("read"))
    assert [m["id"] for m in r.json()["messages"]] == [b]
    r = await client.get("/api/v1/messages", params={"status": "sent"}, headers=keys.auth("read"))
    assert r.json() == {"messages": [], "next_cursor": None}


# ----------------------------------------------------------------- idempotency
@pytest.mark.parametrize(
    ("first", "again"),
    [
        ({"json": ok(idempotency_key="order-17")}, {"json": ok(idempotency_key="order-17")}),
        (
            {"json": ok(), "headers": {"Idempotency-Key": "order-17"}},
            {"json": ok(), "headers": {"Idempotency-Key": "order-17"}},
        ),
        (
            {"json": ok(), "headers": {"Idempotency-Key": '"order-17"'}},
            {"json": ok(idempotency_key="order-17")},
        ),
        (
            {"json": ok(), "headers": {"Idempotency-Key": '"a \\"quoted\\" key"'}},
            {"json": ok(idempotency_key='a "quoted" key')},
        ),
    ],
    ids=["body", "header", "sf-string-then-body", "sf-string-escapes"],
)
async def test_repeated_idempotency_key_returns_the_original(
    client: httpx.AsyncClient, keys: Keys, gateway: FakeGateway, first: dict[str, Any], again: dict[str, Any]
) -> None:
    r1 = await post(client, keys, first["json"], headers=first.get("headers", {}))
    r2 = await post(client, keys, again["json"], headers=again.get("headers", {}))
    assert (r1.status_code, r2.status_code) == (202, 200)
    assert r2.json()["id"] == r1.json()["id"]
    assert r2.json()["status"] == "queued"
    assert await count_messages(client, keys) == 1
    assert gateway.wakes == 1


async def test_idempotency_key_with_a_different_payload_is_refused(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    assert (await post(client, keys, ok(idempotency_key="k1"))).status_code == 202
    assert_error(
        await post(client, keys, ok(idempotency_key="k1", body="other")), 422, "idempotency_mismatch"
    )
    assert await count_messages(client, keys) == 1


async def test_idempotency_keys_are_scoped_per_api_key(client: httpx.AsyncClient, keys: Keys) -> None:
    r1 = await post(client, keys, ok(idempotency_key="k1"), key="send")
    r2 = await post(client, keys, ok(idempotency_key="k1"), key="admin")
    assert (r1.status_code, r2.status_code) == (202, 202)
    assert r1.json()["id"] != r2.json()["id"]


# --------------------------------------------------------------------- opt-out
async def test_stop_opts_out_and_start_opts_back_in(
    client: httpx.AsyncClient, keys: Keys, store: Store
) -> None:
    stop, start = TEST_CONFIG.inbound.stop_keywords, TEST_CONFIG.inbound.start_keywords

    def keyword(text: str) -> str | None:
        return keyword_of(text, stop, start)

    async def receive(text: str) -> None:
        await store.add_inbound_part(
            sender=TO, encoding="gsm7", user_data=units(text), ref=None, total=1, seq=1,
            sent_at=None, join=join_units, keyword_of=keyword,
        )  # fmt: skip

    await receive("Stop")
    assert_error(await post(client, keys, ok(to="0151 12345678")), 422, "opted_out")
    assert await count_messages(client, keys) == 0
    await receive("START")
    assert (await post(client, keys, ok())).status_code == 202
    r = await client.get("/api/v1/inbound", headers=keys.auth("read"))
    assert [(m["body"], m["keyword"], m["from"]) for m in r.json()["messages"]] == [
        ("START", "start", TO),
        ("Stop", "stop", TO),
    ]


# ---------------------------------------------------------------------- cancel
async def test_cancel_then_conflict_once_the_dispatcher_took_it(
    client: httpx.AsyncClient, keys: Keys, store: Store
) -> None:
    first = (await post(client, keys, ok(body="one"))).json()["id"]
    r = await client.post(f"/api/v1/messages/{first}/cancel", headers=keys.auth("send_read"))
    assert r.status_code == 200
    assert r.json()["status"] == "canceled"
    assert [e["type"] for e in r.json()["events"]] == ["accepted", "canceled"]
    again = await client.post(f"/api/v1/messages/{first}/cancel", headers=keys.auth("send_read"))
    assert (again.status_code, again.json()["status"]) == (200, "canceled")
    second = (await post(client, keys, ok(body="two"))).json()["id"]
    claimed = await store.claim_next("gsm0")
    assert claimed is not None
    assert claimed.id == second
    r = await client.post(f"/api/v1/messages/{second}/cancel", headers=keys.auth("send_read"))
    doc = assert_error(r, 409, "already_sent")
    assert "sending" in doc["error"]["message"]


async def test_held_message_is_resent_or_abandoned_by_an_admin(
    client: httpx.AsyncClient, keys: Keys, store: Store, gateway: FakeGateway
) -> None:
    ids = [(await post(client, keys, ok(body=f"held {i}"))).json()["id"] for i in range(2)]
    for _ in ids:
        claimed = await store.claim_next("gsm0")
        assert claimed is not None
        await store.part_sending(claimed.id, 1)
    assert sorted(await store.recover_inflight("hold")) == sorted(ids)
    a, b = ids
    msg = (await client.get(f"/api/v1/messages/{a}", headers=keys.auth("read"))).json()
    assert (msg["status"], msg["held"], msg["possible_duplicate"]) == ("sending", True, True)
    doc = assert_error(
        await client.post(f"/api/v1/messages/{a}/cancel", headers=keys.auth("send_read")), 409, "already_sent"
    )
    assert "abandon" in doc["error"]["message"]
    assert_error(
        await client.post(f"/api/v1/messages/{a}/resend", headers=keys.auth("send")), 403, "forbidden"
    )
    wakes = gateway.wakes
    r = await client.post(f"/api/v1/messages/{a}/resend", headers=keys.auth("admin"))
    assert (r.status_code, r.json()["status"], r.json()["held"]) == (200, "queued", False)
    assert gateway.wakes == wakes + 1
    assert_error(
        await client.post(f"/api/v1/messages/{a}/resend", headers=keys.auth("admin")), 409, "not_held"
    )
    r = await client.post(f"/api/v1/messages/{b}/abandon", headers=keys.auth("admin"))
    assert (r.status_code, r.json()["status"], r.json()["error"]["code"]) == (
        200,
        "failed",
        "outcome_unknown",
    )
    assert_error(
        await client.post(f"/api/v1/messages/{b}/abandon", headers=keys.auth("admin")), 409, "not_held"
    )


# ------------------------------------------------------------------------ auth
ENDPOINTS = [
    ("POST", "/api/v1/messages", "send"),
    ("GET", "/api/v1/messages", "read"),
    ("GET", "/api/v1/messages/msg_x", "read"),
    ("POST", "/api/v1/messages/msg_x/cancel", "send"),
    ("POST", "/api/v1/messages/msg_x/resend", "admin"),
    ("POST", "/api/v1/messages/msg_x/abandon", "admin"),
    ("GET", "/api/v1/inbound", "read"),
    ("GET", "/api/v1/status", "read"),
]


@pytest.mark.parametrize(("method", "url", "scope"), ENDPOINTS, ids=[f"{m} {u}" for m, u, _ in ENDPOINTS])
@pytest.mark.parametrize(
    "auth",
    ["none", "basic", "empty-bearer", "unknown", "revoked", "send", "read", "send_read", "admin"],
)
async def test_auth_matrix(
    client: httpx.AsyncClient, keys: Keys, method: str, url: str, scope: str, auth: str
) -> None:
    anonymous: dict[str, dict[str, str]] = {
        "none": {},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        "empty-bearer": {"Authorization": "Bearer "},
        "unknown": {"Authorization": "Bearer sgw_not-a-key"},
    }
    headers = anonymous[auth] if auth in anonymous else keys.auth(auth)
    r = await client.request(method, url, headers=headers, json=ok())
    if auth in ("none", "basic", "empty-bearer", "unknown", "revoked"):
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        return
    granted = scope in auth.split("_") or auth == "admin"
    if not granted:
        assert_error(r, 403, "forbidden")
        assert scope in r.json()["error"]["message"]
        return
    assert r.status_code in (200, 202, 404), r.text


async def test_probes_and_metrics_need_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200


# ---------------------------------------------------------------- probes, status
async def test_readyz_reports_the_gateways_reason(client: httpx.AsyncClient, gateway: FakeGateway) -> None:
    r = await client.get("/readyz")
    assert (r.status_code, r.json()["status"]) == (200, "ready")
    gateway.is_ready = (False, "no modem is registered")
    r = await client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["status"] == "not_ready"
    assert r.json()["reason"] == "no modem is registered"
    assert r.json()["error"]["code"] == "not_ready"


async def test_readyz_and_status_report_a_ledger_that_cannot_take_writes(
    file_store: Store, file_keys: Keys, gateway: FakeGateway, client_for: ClientFactory
) -> None:
    store, keys = file_store, file_keys
    app = create_app(store=store, config=TEST_CONFIG, gateway=as_view(gateway), min_free_bytes=1 << 62)
    client = await client_for(app)
    r = await client.get("/readyz")
    assert r.status_code == 503
    assert "free" in r.json()["reason"]
    doc = (await client.get("/api/v1/status", headers=keys.auth("read"))).json()
    assert doc["verdict"]["state"] == "down"
    assert any("free" in reason for reason in doc["verdict"]["reasons"])
    assert_error(await post(client, keys, ok()), 507, "storage_full")


async def test_status_document_shape(
    client: httpx.AsyncClient, keys: Keys, store: Store, gateway: FakeGateway
) -> None:
    await post(client, keys, ok())
    await post(client, keys, ok(body="two"))
    r = await client.get("/api/v1/status", headers=keys.auth("read"))
    assert r.status_code == 200
    doc = r.json()
    assert set(doc) == {
        "gateway",
        "verdict",
        "modems",
        "queue",
        "throughput",
        "webhooks",
        "watchdog",
        "disk",
        "history",
        "fleet",
        "spool",
    }
    assert set(doc["fleet"]) == {"box", "boxes"}  # boxes sharing the ledger: none registered here
    assert doc["fleet"]["boxes"] == []
    assert doc["spool"] is None  # only `smsgw serve` on PostgreSQL has a spool (test_postgres_outage.py)
    assert set(doc["gateway"]) == {"name", "version", "uptime_s", "started_at"}
    assert doc["gateway"]["name"] == "test-gw"
    assert 119 <= doc["gateway"]["uptime_s"] < 3600
    assert doc["verdict"] == {"state": "healthy", "reasons": []}
    # balance: no check yet; traffic: nothing sent yet (the ledger's per-modem figures)
    nothing_sent = {
        "window_s": 3600,
        "sent": 0,
        "parts": 0,
        "failed": 0,
        "in_flight": 0,
        "last_sent_at": None,
        "last_sent_age_s": None,
    }
    assert doc["modems"] == [{**m, "balance": None, "traffic": nothing_sent} for m in gateway.modem_list]
    assert doc["queue"]["depth"] == 2
    assert doc["queue"]["by_status"]["queued"] == 2
    assert set(doc["queue"]["by_status"]) == {
        "scheduled",
        "queued",
        "sending",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "canceled",
    }
    assert doc["queue"]["oldest_age_s"] >= 0
    assert doc["queue"]["ambiguous_total"] == 0
    assert doc["throughput"]["last_sent_at"] is None
    assert doc["webhooks"] == {"backlog": 0}
    assert doc["watchdog"] == {"incidents": [], "alerts": []}
    assert doc["disk"]["free_bytes"] > 0
    assert doc["disk"]["total_bytes"] >= doc["disk"]["free_bytes"]


VERDICTS: list[tuple[str, dict[str, Any], str, list[str]]] = [
    ("all-well", {}, "healthy", []),
    ("no-modem", {"modems": []}, "down", ["No modem"]),
    (
        "none-ready",
        {"modems": [ready_modem(state="disconnected")]},
        "down",
        ["No modem is ready", "gsm0 is disconnected"],
    ),
    (
        "ready-but-unregistered",
        {"modems": [ready_modem(registration={"status": 2, "text": "searching", "technology": ""})]},
        "down",
        ["No modem is ready", "not registered on a network (searching)"],
    ),
    (
        "one-unregistered-of-two",
        {"modems": [ready_modem(), ready_modem("gsm1", registration=None)]},
        "degraded",
        ["gsm1 is not registered"],
    ),
    ("ledger", {"ledger_problem": "The ledger is not open."}, "down", ["ledger is not open"]),
    (
        "one-of-two",
        {"modems": [ready_modem(), ready_modem("gsm1", state="sim_locked")]},
        "degraded",
        ["gsm1 is sim_locked"],
    ),
    ("weak-signal", {"modems": [ready_modem(signal={"dbm": -109, "bars": 0})]}, "degraded", ["-109 dBm"]),
    ("signal-at-threshold", {"modems": [ready_modem(signal={"dbm": -105, "bars": 1})]}, "healthy", []),
    (
        "sms-storage-full",
        {"modems": [ready_modem(storage={"memory": "SM", "used": 30, "total": 30})]},
        "degraded",
        ["storage is full"],
    ),
    ("webhook-backlog", {"webhook_backlog": 1001}, "degraded", ["1001 webhook"]),
    ("stalled-queue", {"oldest_queued_age_s": 601.0}, "degraded", ["10 minutes"]),
    (
        "down-wins",
        {"modems": [ready_modem(state="disconnected")], "webhook_backlog": 5000},
        "down",
        ["No modem is ready", "gsm0 is disconnected", "5000 webhook"],
    ),
]


@pytest.mark.parametrize(("facts", "state", "says"), [v[1:] for v in VERDICTS], ids=[v[0] for v in VERDICTS])
def test_verdict_rules(facts: dict[str, Any], state: str, says: list[str]) -> None:
    args: dict[str, Any] = {
        "modems": [ready_modem()],
        "ledger_problem": None,
        "webhook_backlog": 0,
        "oldest_queued_age_s": 5.0,
    }
    verdict = status_mod.judge(**{**args, **facts})
    assert verdict["state"] == state
    assert len(verdict["reasons"]) == len(says)
    for reason, expected in zip(verdict["reasons"], says, strict=True):
        assert expected in reason
        assert reason.endswith(".")


async def test_status_verdict_follows_the_modems(
    client: httpx.AsyncClient, keys: Keys, gateway: FakeGateway
) -> None:
    gateway.modem_list = [ready_modem(state="disconnected")]
    doc = (await client.get("/api/v1/status", headers=keys.auth("read"))).json()
    assert doc["verdict"]["state"] == "down"


# --------------------------------------------------------------------- metrics
async def test_metrics_parse_and_carry_the_names(
    client: httpx.AsyncClient, keys: Keys, store: Store, gateway: FakeGateway
) -> None:
    gateway.modem_list = [
        ready_modem(),
        ready_modem("gsm1", state="disconnected", signal={"dbm": None, "bars": 0}),
    ]
    await post(client, keys, ok())
    second = (await post(client, keys, ok(body="two"))).json()["id"]
    await client.post(f"/api/v1/messages/{second}/cancel", headers=keys.auth("send_read"))
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert TO not in r.text
    assert "4915112345678" not in r.text
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(r.text):
        assert family.name.startswith("smsgw_")
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    names = {name for name, _ in samples}
    assert names >= {
        "smsgw_messages_accepted_total",
        "smsgw_messages_total",
        "smsgw_ledger_messages",
        "smsgw_queue_depth",
        "smsgw_queue_oldest_age_seconds",
        "smsgw_modem_up",
        "smsgw_modem_signal_dbm",
        "smsgw_modem_registered",
        "smsgw_webhook_backlog",
        "smsgw_ambiguous_sends_total",
        "smsgw_build_info",
        "smsgw_sends_total",
        "smsgw_webhook_deliveries_total",
    }
    assert samples["smsgw_messages_accepted_total", (("source", "api"),)] == 2
    assert samples["smsgw_queue_depth", ()] == 1
    assert samples["smsgw_messages_total", (("status", "canceled"),)] == 1
    assert samples["smsgw_ledger_messages", (("status", "queued"),)] == 1
    assert samples["smsgw_modem_up", (("modem", "gsm0"),)] == 1
    assert samples["smsgw_modem_up", (("modem", "gsm1"),)] == 0
    assert samples["smsgw_modem_signal_dbm", (("modem", "gsm0"),)] == -71
    assert ("smsgw_modem_signal_dbm", (("modem", "gsm1"),)) not in samples
    assert samples["smsgw_modem_registered", (("modem", "gsm0"),)] == 1


async def test_each_app_has_its_own_registry(
    store: Store, gateway: FakeGateway, client_for: ClientFactory, keys: Keys
) -> None:
    first = await client_for(create_app(store=store, config=TEST_CONFIG, gateway=as_view(gateway)))
    second = await client_for(create_app(store=store, config=TEST_CONFIG, gateway=as_view(gateway)))
    assert (await post(first, keys, ok())).status_code == 202
    text = (await second.get("/metrics")).text
    assert 'smsgw_messages_accepted_total{source="api"} 0.0' in text


# ------------------------------------------------------------------ full disk
class FullDiskStore(Store):
    """A ledger whose disk fills up: `accept` fails as SQLite does on SQLITE_FULL."""

    full = False

    async def accept(self, new: NewMessage, *, key_id: int | None, queue_max: int, **kw: Any) -> Any:
        if self.full:
            raise StorageFull("the ledger's disk is full")
        return await super().accept(new, key_id=key_id, queue_max=queue_max, **kw)


async def test_storage_full_is_507_and_loses_nothing_accepted(
    tmp_path: Any, gateway: FakeGateway, client_for: ClientFactory
) -> None:
    ledger = FullDiskStore(tmp_path / "full.sqlite3")
    await ledger.open()
    try:
        _, key = await ledger.create_key("app", ["send", "read"])
        client = await client_for(create_app(store=ledger, config=TEST_CONFIG, gateway=as_view(gateway)))
        auth = {"Authorization": f"Bearer {key}"}
        first = await client.post("/api/v1/messages", json=ok(), headers=auth)
        assert first.status_code == 202
        ledger.full = True
        assert_error(
            await client.post("/api/v1/messages", json=ok(body="two"), headers=auth), 507, "storage_full"
        )
        r = await client.get(f"/api/v1/messages/{first.json()['id']}", headers=auth)
        assert (r.status_code, r.json()["status"]) == (200, "queued")
        assert len((await client.get("/api/v1/messages", headers=auth)).json()["messages"]) == 1
        assert gateway.wakes == 1
    finally:
        await ledger.close()


class ResettableGateway(FakeGateway):
    def reset_modem(self, name: str) -> bool:
        return True


@pytest.mark.slow
async def test_a_write_refused_for_a_full_disk_is_507_with_the_reason_on_the_api_and_the_page(
    tmp_path: Any, client_for: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = Store(path)
    await ledger.open()
    _, key = await ledger.create_key("ops", ["send", "read", "admin"])
    auth = {"Authorization": f"Bearer {key}"}
    client = await client_for(create_app(store=ledger, config=TEST_CONFIG, gateway=as_view(FakeGateway())))
    msg_id = (await client.post("/api/v1/messages", json=ok(), headers=auth)).json()["id"]
    await ledger.close()
    # The same ledger reopened wanting a reserve no disk holds: the real full-disk state, in which
    # only critical writes run.
    full = Store(path, reserve_bytes=1 << 50)
    await full.open()
    try:
        assert full.storage_problem is not None
        client = await client_for(create_app(store=full, config=TEST_CONFIG, gateway=ResettableGateway()))
        r = await client.post(f"/api/v1/messages/{msg_id}/cancel", headers=auth)
        assert assert_error(r, 507, "storage_full")["error"]["message"] == full.storage_problem
        r = await client.get(f"/api/v1/messages/{msg_id}", headers=auth)
        assert r.json()["status"] == "queued"
        # The admin logs in all the same (session and audit rows are critical) ...
        token = csrf_of((await client.get("/login")).text)
        r = await client.post("/login", data={"password": "wrong", "csrf": token})
        assert r.status_code == 403, r.text
        token = csrf_of((await client.get("/login")).text)
        r = await client.post("/login", data={"password": key, "csrf": token})
        assert r.status_code == 303, r.text
        # ... and an action whose audit row finds no room gets a page saying why, not a 500.
        token = csrf_of((await client.get("/login")).text)
        r = await client.post("/actions/reset-modem", data={"csrf": token, "modem": "gsm0"})
        assert r.status_code == 507, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert escape(full.storage_problem) in r.text
        audit = (await client.get("/api/v1/audit", headers=auth)).json()
        assert [e["action"] for e in audit["events"]][:2] == ["login", "login_failed"]
    finally:
        await full.close()
    assert not [rec for rec in caplog.records if rec.exc_info], "no traceback logged"


async def test_queue_full_is_503_with_retry_after(
    store: Store, gateway: FakeGateway, client_for: ClientFactory, keys: Keys
) -> None:
    config = Config(
        gateway=TEST_CONFIG.gateway,
        api=ApiConfig(max_body_bytes=16384, max_text_chars=500, queue_max=2),
        store=TEST_CONFIG.store,
    )
    client = await client_for(create_app(store=store, config=config, gateway=as_view(gateway)))
    for i in range(2):
        assert (await post(client, keys, ok(body=f"m{i}"))).status_code == 202
    r = await post(client, keys, ok(body="one too many"))
    assert_error(r, 503, "queue_full")
    assert r.headers["retry-after"].isdigit()


async def test_an_unexpected_error_is_a_logged_json_500(
    client: httpx.AsyncClient, keys: Keys, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.fail_with = RuntimeError("modem table corrupted")
    with caplog.at_level(logging.ERROR, logger="appliance.api"):
        r = await client.get("/api/v1/status", headers=keys.auth("read"))
    assert_error(r, 500, "internal_error")
    assert "modem table corrupted" not in r.text
    assert r.headers["cache-control"] == "no-store"
    assert any("unexpected error" in rec.message for rec in caplog.records)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STOP", "stop"),
        (" stop. ", "stop"),
        ("Unsubscribe", "stop"),
        ("start", "start"),
        ("stop it", None),
        ("", None),
    ],
)
def test_keyword_of(text: str, expected: str | None) -> None:
    assert keyword_of(text, TEST_CONFIG.inbound.stop_keywords, TEST_CONFIG.inbound.start_keywords) == expected


# ---------------------------------------------------------- no input is a 500
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELD_VALUES = st.one_of(
    JSON_VALUES,
    st.sampled_from(
        ["+4915112345678", "0151 1234567", "+", "(((", "0", "2030-01-01T00:00:00Z", "high", "http://h/"]
    ),
)
SEND_DOCS = (
    st.dictionaries(st.sampled_from([*sorted(validation.SEND_FIELDS), "extra"]), FIELD_VALUES, max_size=8)
    | JSON_VALUES
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(doc=SEND_DOCS, header=st.none() | st.text(max_size=20))
def test_any_json_document_is_a_message_or_an_api_error(doc: Any, header: str | None) -> None:
    refused: validation.ApiError | None = None
    try:
        key = None if header is None else validation.parse_idempotency_header(header)
        new = validation.parse_send_request(doc, header_key=key, config=TEST_CONFIG)
    except validation.ApiError as exc:
        refused = exc
    if refused is not None:
        assert 400 <= refused.status < 500
        assert refused.code.isidentifier()
        assert refused.code == refused.code.lower()
        return
    assert new.to.startswith("+")
    assert 1 <= new.segments <= validation.MAX_SEGMENTS


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_are_json_or_invalid_json(raw: bytes) -> None:
    refused: validation.ApiError | None = None
    try:
        validation.parse_json(raw)
    except validation.ApiError as exc:
        refused = exc
    assert refused is None or (refused.status, refused.code) == (400, "invalid_json")


@pytest.mark.parametrize(
    "query",
    [
        "limit=%C2%B2",
        "limit=99999999999999999999",
        "cursor=%C2%B2",
        "to=%C2%B2",
        "status=%00",
        "since=2030-13-01T00:00:00Z",
    ],
)
async def test_odd_query_values_are_422_not_500(client: httpx.AsyncClient, keys: Keys, query: str) -> None:
    path = "/api/v1/inbound" if query.startswith("since") else "/api/v1/messages"
    r = await client.get(f"{path}?{query}", headers=keys.auth("read"))
    assert r.status_code == 422, r.text
