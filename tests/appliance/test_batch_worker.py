"""The batch worker processes (appliance/batch_worker.py) validating a large batch for a
PostgreSQL ledger: exactly what the in-process function gives, and a worker killed mid-run costs
no batch. (A whole batch accepted there, on SQLite: tests/appliance/test_batch.py.)

A real spawned process; its results are compared with send_requests run in this process."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing
import os
import pickle
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from appliance import send_requests
from appliance.api import message_payload
from appliance.batch_worker import MIN_ITEMS, Batch, BatchWorker
from appliance.ledger import Actor, ApiKey, EscalationSpec, NewMessage, Store, connection
from appliance.segments import new_message
from appliance.states import Priority
from appliance.validation import ApiError
from tests.support.api_fakes import TEST_CONFIG
from tests.support.waiting import eventually

LATER = time.time() + 3600


def requests(n: int) -> list[Any]:
    """`n` message requests, a few of them refused for different reasons."""
    docs: list[Any] = [
        {"to": f"+49151{i:08d}", "body": f"gate {i % 7}", "metadata": {"i": i}, "priority": "bulk"}
        for i in range(n)
    ]
    docs[3] = {"to": "12", "body": "not a number"}
    docs[5] = {"to": "0151 2345 6789", "body": "national, read in DE", "validity_s": 600}
    docs[7] = {"to": "+4915112345678", "body": ""}
    docs[9] = "not an object"
    docs[11] = {"to": "+4915112345678", "body": "x", "colour": "red"}
    return docs


@pytest.fixture
async def worker() -> AsyncIterator[BatchWorker]:
    w = BatchWorker()
    w.start()
    await eventually(lambda: w.ready, timeout_s=60)
    yield w
    w.close()


def shown(items: list[Any]) -> list[Any]:
    return [(i.status, i.code, i.message, i.headers) if isinstance(i, ApiError) else i for i in items]


@pytest.fixture
async def key(store: Store) -> ApiKey:
    record, _secret = await store.create_key("batcher", ["send"])
    return record


async def test_a_large_batch_gives_in_the_worker_what_it_gives_in_process(
    worker: BatchWorker, key: ApiKey
) -> None:
    docs = requests(MIN_ITEMS + 20)
    parsed = await worker.parse_items(docs, key=key, config=TEST_CONFIG)
    here = send_requests.parse_items(docs, key=key, config=TEST_CONFIG)
    assert shown(parsed) == shown(here)
    assert [type(p).__name__ for p in parsed[3:12:2]] == [
        "ApiError",
        "NewMessage",
        "ApiError",
        "ApiError",
        "ApiError",
    ]


async def test_a_killed_worker_costs_no_batch_and_the_next_large_one_starts_another(
    worker: BatchWorker, key: ApiKey
) -> None:
    docs = requests(MIN_ITEMS)
    expected = shown(send_requests.parse_items(docs, key=key, config=TEST_CONFIG))
    before = worker.pids()
    os.kill(before[0], signal.SIGKILL)
    # Sent to the dead worker, or to the live one before the pool is found broken: the same
    # answer, no error (the batch is done in a thread when the worker died with it).
    assert shown(await worker.parse_items(docs, key=key, config=TEST_CONFIG)) == expected

    async def on_new_workers() -> bool:
        assert shown(await worker.parse_items(docs, key=key, config=TEST_CONFIG)) == expected
        return worker.ready and bool(worker.pids()) and not set(worker.pids()) & set(before)

    await eventually(on_new_workers, timeout_s=60)  # a later large batch starts others


async def test_a_small_batch_starts_no_worker(key: ApiKey) -> None:
    w = BatchWorker()
    docs = requests(MIN_ITEMS - 1)
    parsed = await w.parse_items(docs, key=key, config=TEST_CONFIG)
    assert shown(parsed) == shown(send_requests.parse_items(docs, key=key, config=TEST_CONFIG))
    assert w.pids() == []
    assert not w.ready


def test_a_message_comes_back_from_the_worker_with_every_field() -> None:
    """NewMessage pickles as a tuple of its values (its __reduce__): each field survives."""
    new = dataclasses.replace(
        new_message("+4915112345678", "gate 3 «ü»", priority=Priority.BULK, send_at=LATER),
        validity_s=600,
        status_callback="https://hooks.example/s",
        metadata={"i": [1, 2.5, None]},
        idempotency_key="k-1",
        source="twilio",
        callback_format="twilio",
        window={"days": "mon-fri", "start": "08:00", "end": "20:00", "tz": "Europe/Berlin"},
        window_source="message",
        release_at=LATER + 60,
        window_note="held until 08:00",
        template_name="shift",
        template_version=2,
        escalation=EscalationSpec(300, "replied", ("+4915100000001", "mailto:a@b.example")),
        escalation_of=("msg_1", 1),
        id="msg_2",
    )
    defaults = {f.name: f.default for f in dataclasses.fields(NewMessage)}
    assert all(getattr(new, name) != default for name, default in defaults.items())  # none left out
    back = pickle.loads(pickle.dumps(new))  # noqa: S301  (our own bytes)
    assert type(back) is NewMessage
    assert back == new
    assert back.fingerprint() == new.fingerprint()


async def test_a_worker_whose_code_is_not_the_daemons_leaves_the_ledger_alone(
    file_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Code upgraded on disk under a running daemon: a worker spawned then has another schema.
    It neither migrates nor writes the ledger; the daemon accepts the batches itself."""
    record, _secret = await file_store.create_key("batcher", ["send"])
    file = file_store.file
    assert file is not None
    w = BatchWorker()
    w.start()
    await eventually(lambda: w.ready, timeout_s=60)
    try:
        raw = json.dumps({"messages": [{"to": "+4915112345678", "body": "x" * 100}] * 100}).encode()
        older = Batch(raw, dataclasses.replace(file, schema=file.schema - 1), record, Actor("batcher", "test"),
                      TEST_CONFIG, None, message_payload)  # fmt: skip
        assert await w.accept(older) is None
        assert "restart the daemon" in caplog.text
        assert not w.ready
        assert w.pids() == []
        assert await w.accept(dataclasses.replace(older, file=file)) is None  # not until a restart
        assert await file_store.list_messages(limit=10) == []
    finally:
        w.close()


class HeldTurns:
    """Turns whose lock a process that died holding it left taken (ledger/connection.py Turns)."""

    def __init__(self) -> None:
        self.turn = multiprocessing.get_context("spawn").Lock()
        self.turn.acquire()
        self.stuck_with: list[Any] = []

    def lock(self) -> Any:
        return self.turn

    def stuck(self, lock: Any) -> None:
        self.stuck_with.append(lock)


async def test_a_turn_nobody_gives_back_does_not_stop_the_ledger(
    file_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon waits for the writers' turn at most TURN_WAIT_S, then writes all the same
    (SQLite still serialises) and says the turn is stuck, so that the pool is looked at."""
    monkeypatch.setattr(connection, "TURN_WAIT_S", 0.05)
    turns = HeldTurns()
    file_store.turns = turns
    async with asyncio.timeout(10):  # not for ever
        msg, created = await file_store.accept(
            new_message("+4915112345678", "still written"), key_id=None, queue_max=10
        )
    assert created
    stored = await file_store.get(msg.id)
    assert stored is not None
    assert stored.body == "still written"
    assert turns.stuck_with == [turns.turn]
    file_store.turns = None
