"""POST /api/v1/messages/batch (issue 13 item 5): up to 1,000 message requests in one transaction,
a result per item in order, a bad item refusing only itself with the error a single POST gives.

The real daemon on the simulator, reached by real HTTP (tests/support/gateway.py); the messages
are scheduled an hour ahead so that the modem stays quiet and the queue is what the test made.
The crash test injects the fault in SQLite itself (a trigger that aborts the transaction)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import zoneinfo
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance import batch_worker
from appliance.api import create_app
from appliance.batch_worker import WORKER
from appliance.config import ConfigError, from_dict
from appliance.ledger import KeyLimits, Message, NewMessage, Store
from appliance.segments import new_message
from appliance.windows import DAY_NAMES, next_open, parse_window
from modem.simulator import Simulator
from tests.integrations.receiver import receiver
from tests.support.api_fakes import TEST_CONFIG, ClientFactory, FakeGateway, Keys, as_view
from tests.support.gateway import Running, gateway_config, run_gateway
from tests.support.user_data import join_units, units
from tests.support.waiting import eventually

BATCH = "/api/v1/messages/batch"
LATER = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def number(i: int) -> str:
    return f"+49151{i:08d}"


def item(i: int, **fields: Any) -> dict[str, Any]:
    return {"to": number(i), "body": f"shift change {i}", "send_at": LATER, **fields}


async def post_batch(client: httpx.AsyncClient, items: list[Any], **kwargs: Any) -> list[dict[str, Any]]:
    r = await client.post(BATCH, json={"messages": items}, **kwargs)
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    assert len(results) == len(items)
    return results


async def waiting(gw: Running) -> int:
    r = await gw.client.get("/api/v1/status")
    depth: int = r.json()["queue"]["depth"]
    return depth


@pytest.fixture(params=["daemon", "worker"])
async def where(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """Each batch of the test accepted in the daemon, or whole in the batch worker process
    (batch_worker.py, there for large ones: here every one): the same answers either way."""
    in_worker = request.param == "worker"
    monkeypatch.setattr(batch_worker, "MIN_BYTES", 0 if in_worker else 2**62)
    if in_worker:
        WORKER.start()
        await eventually(lambda: WORKER.ready, timeout_s=60)
    answered = WORKER.answered
    yield request.param
    assert (WORKER.answered > answered) == in_worker


@pytest.fixture
async def small_gw(tmp_path: Path, sim: Simulator) -> AsyncIterator[Running]:
    """A gateway whose queue holds 3 messages and whose batch bodies stop at 70,000 bytes."""
    raw = gateway_config(tmp_path, str(sim.primary_path), api={"queue_max": 3, "max_batch_bytes": 70_000})
    async with run_gateway(raw, sim) as running:
        yield running


async def test_a_bad_item_among_1000_refuses_only_itself_in_order(gw: Running, where: str) -> None:
    items: list[Any] = [item(i) for i in range(1000)]
    items[517] = {"to": "12", "body": "to a number that cannot be one", "send_at": LATER}
    results = await post_batch(gw.client, items)
    bad = results.pop(517)
    alone = await gw.client.post("/api/v1/messages", json=items[517])
    # The same error object a single POST gives, naming the field at fault.
    assert bad == {"status": alone.status_code, "error": alone.json()["error"]}
    assert bad["status"] == 422
    assert bad["error"]["code"] == "invalid_number"
    assert bad["error"]["message"].startswith("to: '12'")
    assert [r["status"] for r in results] == [202] * 999
    expected = [i for i in range(1000) if i != 517]
    assert [r["message"]["to"] for r in results] == [number(i) for i in expected]
    assert [r["message"]["body"] for r in results] == [f"shift change {i}" for i in expected]
    assert {r["message"]["status"] for r in results} == {"scheduled"}
    assert await waiting(gw) == 999
    # Each is a message of its own in the ledger, with its timeline.
    some = await gw.message(results[998]["message"]["id"])
    assert (some["to"], [e["type"] for e in some["events"]]) == (number(999), ["accepted"])


async def test_a_repeated_batch_returns_the_originals_and_queues_nothing_twice(
    gw: Running, where: str
) -> None:
    items = [item(i, idempotency_key=f"roster-{i}") for i in range(50)]
    first = await post_batch(gw.client, items)
    assert [r["status"] for r in first] == [202] * 50
    again = await post_batch(gw.client, items)
    assert [r["status"] for r in again] == [200] * 50
    assert [r["message"]["id"] for r in again] == [r["message"]["id"] for r in first]
    assert await waiting(gw) == 50
    # A key reused with another request refuses that item alone; a key twice in one batch is one message.
    mixed = [
        {**items[0], "body": "another text under a used key"},
        item(60, idempotency_key="new-key"),
        item(60, idempotency_key="new-key"),
        item(61, idempotency_key="new-key"),
    ]
    results = await post_batch(gw.client, mixed)
    assert [r["status"] for r in results] == [422, 202, 200, 422]
    assert results[0]["error"]["code"] == results[3]["error"]["code"] == "idempotency_mismatch"
    assert results[2]["message"]["id"] == results[1]["message"]["id"]
    assert await waiting(gw) == 51


async def test_quota_and_opt_out_refuse_only_their_items(gw: Running, where: str) -> None:
    store = gw.gateway.store
    _rec, limited = await store.create_key("roster", ["send", "read"], limits=KeyLimits(per_hour=3))
    await store.add_inbound_part(
        sender=number(1), encoding="gsm7", user_data=units("STOP"), ref=None, total=1, seq=1,
        sent_at=None, join=join_units, keyword_of=lambda text: "stop",
    )  # fmt: skip
    results = await post_batch(
        gw.client, [item(i) for i in range(5)], headers={"Authorization": f"Bearer {limited}"}
    )
    assert [r["status"] for r in results] == [202, 422, 202, 202, 429]
    assert results[1]["error"]["code"] == "opted_out"
    assert results[4]["error"]["code"] == "quota_exceeded"
    assert "may send 3 messages per hour" in results[4]["error"]["message"]


async def test_the_queue_cap_refuses_the_items_past_it(small_gw: Running, where: str) -> None:
    results = await post_batch(small_gw.client, [item(i) for i in range(5)])
    assert [r["status"] for r in results] == [202, 202, 202, 503, 503]
    assert results[3]["error"]["code"] == "queue_full"
    assert results[3]["error"]["message"] == "3 messages are already waiting; retry later"


async def test_the_batch_itself_is_refused_naming_what_is_wrong(small_gw: Running, where: str) -> None:
    client = small_gw.client
    over = await client.post(BATCH, json={"messages": [item(i, body="x" * 1500) for i in range(50)]})
    assert over.status_code == 413
    assert over.json()["error"] == {
        "code": "payload_too_large",
        "message": "the request body is larger than 70000 bytes",
    }
    many = await client.post(BATCH, json={"messages": [{}] * 1001})
    assert (many.status_code, many.json()["error"]["code"]) == (422, "invalid_field")
    assert many.json()["error"]["message"].startswith("messages: 1001 message requests, at most 1000")
    not_list = await client.post(BATCH, json={"messages": {"to": number(1)}})
    assert not_list.status_code == 422
    assert (
        not_list.json()["error"]["message"] == "messages: expected a list of message requests, got an object"
    )
    header = await client.post(BATCH, json={"messages": [item(1)]}, headers={"Idempotency-Key": "k"})
    assert header.status_code == 422
    assert header.json()["error"]["message"].startswith("Idempotency-Key:")
    assert await waiting(small_gw) == 0


def test_max_batch_bytes_is_checked_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"api\.max_batch_bytes: must be api\.max_body_bytes \(65536\)"):
        from_dict({"api": {"max_batch_bytes": 1000}})
    assert from_dict({}).api.max_batch_bytes == 2 * 1024 * 1024
    for bad in (-1, 9):
        with pytest.raises(
            ConfigError, match=r"api\.batch_workers: must be 0 \(batches in the daemon\) to 8"
        ):
            from_dict({"api": {"batch_workers": bad}})
    assert from_dict({}).api.batch_workers == 2


async def test_with_no_batch_workers_the_daemon_accepts_large_batches_itself(
    tmp_path: Path, sim: Simulator
) -> None:
    """[api] batch_workers = 0 (a Pi with 512 MB): no process is started, nothing is refused."""
    raw = gateway_config(tmp_path, str(sim.primary_path), api={"batch_workers": 0})
    answered = WORKER.answered
    async with run_gateway(raw, sim) as gw:
        results = await post_batch(gw.client, [item(i) for i in range(1000)])
        assert {r["status"] for r in results} == {202}
        assert WORKER.pids() == []
        assert await waiting(gw) == 1000
    assert WORKER.answered == answered


async def test_a_batch_whose_transaction_fails_leaves_nothing_in_the_ledger(tmp_path: Path) -> None:
    """Atomic: a fault inside the transaction (here SQLite aborting the last item's insert, as a
    crash or a full disk would end it) commits none of the batch; the next batch is whole."""
    path = tmp_path / "ledger.sqlite3"
    store = Store(path)
    await store.open()
    try:
        with sqlite3.connect(path) as raw:
            raw.execute(
                "CREATE TRIGGER injected_fault AFTER INSERT ON idempotency WHEN NEW.key = 'boom' "
                "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            )
        news: list[NewMessage] = [
            new_message(number(i), f"text {i}", idempotency_key=f"k{i}") for i in range(99)
        ]
        news.append(new_message(number(99), "the last one", idempotency_key="boom"))
        with pytest.raises(sqlite3.IntegrityError, match="injected fault"):
            await store.accept_many(news, key_id=None, queue_max=1000)
        assert await store.list_messages(limit=200) == []
        outcomes = await store.accept_many(news[:99], key_id=None, queue_max=1000)
        accepted = [o for o in outcomes if isinstance(o, tuple)]
        assert len(accepted) == 99
        assert all(created for _m, created in accepted)
        listed: list[Message] = await store.list_messages(limit=200)
        assert sorted(m.to for m in listed) == [number(i) for i in range(99)]
        # What accept_many answered is what the ledger holds (seq included: it orders pages).
        assert {m.id: m.seq for m, _created in accepted} == {m.id: m.seq for m in listed}
        assert time.time() - max(m.created_at for m in listed) < 60
    finally:
        await store.close()


async def test_template_and_window_items_behave_as_single_posts(gw: Running, where: str) -> None:
    """A batch item with `template` + `vars` is stored rendered with the template's version, and one
    with a window closed now waits `scheduled` for its opening, exactly as the same single POSTs."""
    put = await gw.client.put("/api/v1/templates/shift", json={"body": "Shift {{ n }} starts at {{ at }}"})
    assert put.status_code == 201, put.text
    day = (datetime.now(BERLIN) + timedelta(days=3)).weekday()  # closed for days yet
    closed = {"days": DAY_NAMES[day], "start": "08:00", "end": "20:00", "tz": "Europe/Berlin"}
    templated = {"to": number(1), "template": "shift", "vars": {"n": "7", "at": "06:00"}, "send_at": LATER}
    windowed = {"to": number(2), "body": "weekly report ready", "window": closed}
    batch = [r["message"] for r in await post_batch(gw.client, [templated, windowed])]
    alone = []
    for request in (templated, windowed):
        r = await gw.client.post("/api/v1/messages", json=request)
        assert r.status_code == 202, r.text
        alone.append(r.json())

    def seen(doc: dict[str, Any]) -> tuple[Any, ...]:
        events = [(e["type"], e["detail"]) for e in doc["events"]]
        return doc["body"], doc["template"], doc["status"], doc["send_at"], doc["window"], events

    assert [seen(await gw.message(m["id"])) for m in batch] == [seen(m) for m in alone]
    assert [seen(m) for m in batch] == [seen(m) for m in alone]  # the answer is what was stored
    assert batch[0]["body"] == "Shift 7 starts at 06:00"
    assert batch[0]["template"] == {"name": "shift", "version": 1}
    opens = next_open(parse_window(closed), datetime.now(UTC).timestamp())
    assert batch[1]["status"] == "scheduled"
    assert datetime.fromisoformat(batch[1]["send_at"]).timestamp() == pytest.approx(opens)
    assert [e["type"] for e in batch[1]["events"]] == ["accepted", "window"]


async def test_a_batch_is_one_row_of_the_audit_trail_and_each_message_keeps_its_accepted_event(
    gw: Running, where: str
) -> None:
    items: list[Any] = [item(i) for i in range(4)]
    items[2] = {"to": "12", "body": "refused before the ledger", "send_at": LATER}
    results = await post_batch(gw.client, items)
    ids = [r["message"]["id"] for r in results if r["status"] == 202]
    assert len(ids) == 3
    single = await gw.client.post("/api/v1/messages", json=item(9))
    trail = (await gw.client.get("/api/v1/audit")).json()["events"]
    sends = [(e["action"], e["target"]) for e in trail if e["action"] in ("send", "send_batch")]
    # Newest first: the single POST's own row, then the batch's one row naming its first message.
    assert sends == [("send", single.json()["id"]), ("send_batch", ids[0])]
    batch_row = next(e for e in trail if e["action"] == "send_batch")
    assert batch_row["actor"] == "test"
    assert batch_row["detail"] == f"batch: 3 of 3 messages accepted (3 via api), {ids[0]} to {ids[-1]}"
    for msg_id in ids:
        events = (await gw.client.get(f"/api/v1/messages/{msg_id}")).json()["events"]
        assert [e["type"] for e in events] == ["accepted"]


async def test_a_batch_announces_its_messages_to_webhooks_at_once(
    tmp_path: Path, sim: Simulator, where: str
) -> None:
    """Committed in the worker process, the messages' first events still wake the daemon's webhook
    sender (idle, it would look again only after 30 s)."""
    async with receiver() as hook:
        raw = gateway_config(tmp_path, str(sim.primary_path))
        raw["webhooks"] = [{"url": hook.url, "secret": "whsec_" + "QUJD" * 8}]
        async with run_gateway(raw, sim) as gw:
            results = await post_batch(gw.client, [item(i) for i in range(3)])
            ids = {r["message"]["id"] for r in results}
            await eventually(lambda: len(hook.requests) >= 3, timeout_s=10)
    events = [json.loads(r.body) for r in hook.requests]
    assert {(e["type"], e["data"]["id"], e["data"]["status"]) for e in events} == {
        ("message.status", i, "scheduled") for i in ids
    }


async def test_a_worker_killed_loses_no_batch_and_a_retry_accepts_each_message_once(
    gw: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_worker, "MIN_BYTES", 0)
    WORKER.start()
    await eventually(lambda: WORKER.ready, timeout_s=60)
    before = WORKER.pids()
    os.kill(before[0], signal.SIGKILL)
    items = [item(i, idempotency_key=f"retry-{i}") for i in range(20)]
    # Found dead before the batch went to it, the daemon accepts the batch itself; dead with the
    # batch in it, the answer is 503 (it may have committed) and the same batch again is safe.
    r = await gw.client.post(BATCH, json={"messages": items})
    if r.status_code == 503:
        assert r.json()["error"]["code"] == "batch_interrupted"
        assert r.headers["retry-after"] == "1"
        r = await gw.client.post(BATCH, json={"messages": items})
    assert r.status_code == 200, r.text
    assert {res["status"] for res in r.json()["results"]} <= {200, 202}
    assert await waiting(gw) == 20
    # Later large batches start new workers and go to them (a repeat of this one adds nothing).
    again = [item(i, idempotency_key=f"after-{i}") for i in range(30, 35)]

    async def on_new_workers() -> bool:
        answered = WORKER.answered
        r = await gw.client.post(BATCH, json={"messages": again})
        assert r.status_code in (200, 503), r.text  # 503: it met the broken pool
        return WORKER.answered > answered and not set(WORKER.pids()) & set(before)

    await eventually(on_new_workers, timeout_s=60)
    assert await waiting(gw) == 25


async def test_a_full_disk_refuses_a_worker_batch_whole_after_the_checks_of_the_request(
    file_store: Store, file_keys: Keys, gateway: FakeGateway, client_for: ClientFactory, where: str
) -> None:
    """As in the daemon: a malformed batch is still 400/422 and a batch of refused items still gets
    its results; a batch with anything to store is 507, and nothing of it is stored."""
    app = create_app(store=file_store, config=TEST_CONFIG, gateway=as_view(gateway), min_free_bytes=1 << 62)
    client = await client_for(app)
    auth = file_keys.auth("send")
    good = await client.post(BATCH, json={"messages": [item(i) for i in range(3)]}, headers=auth)
    assert good.status_code == 507
    assert good.json()["error"]["code"] == "storage_full"
    malformed = await client.post(
        BATCH, content=b'{"messages": [', headers={**auth, "Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    refused = await client.post(BATCH, json={"messages": [{"to": "12", "body": "x"}]}, headers=auth)
    assert refused.status_code == 200
    assert refused.json()["results"][0]["error"]["code"] == "invalid_number"
    assert await file_store.list_messages(limit=10) == []


async def test_a_full_disk_met_by_the_commit_puts_the_daemon_in_its_full_disk_state(
    file_store: Store, file_keys: Keys, gateway: FakeGateway, client_for: ClientFactory, where: str
) -> None:
    """The worker's commit meets ENOSPC (here SQLite aborting as on a full disk): 507, nothing
    stored, and the daemon itself now refuses writes and says why, as if its own commit had."""
    with sqlite3.connect(file_store.path) as raw:
        raw.execute(
            "CREATE TRIGGER disk_full AFTER INSERT ON messages WHEN NEW.body = 'the last straw' "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    client = await client_for(create_app(store=file_store, config=TEST_CONFIG, gateway=as_view(gateway)))
    auth = file_keys.auth("send")
    items = [item(i) for i in range(3)] + [item(3, body="the last straw")]
    r = await client.post(BATCH, json={"messages": items}, headers=auth)
    assert (r.status_code, r.json()["error"]["code"]) == (507, "storage_full")
    assert file_store.storage_problem is not None
    assert "full" in (await client.get("/readyz")).json()["reason"]
    assert await file_store.list_messages(limit=10) == []
