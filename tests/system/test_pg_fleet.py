"""A fleet on PostgreSQL: three `smsgw serve` processes, each with its own simulated modem, share one
queue on a real throwaway server (`[store] url`). Every text is unique, so a phone's inbox shows
which box's modem sent a message and whether any was sent twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

from appliance.ledger import Store
from appliance.ledger.fleet import Box
from tests.support.pg_fleet import (
    PgBox,
    count_status,
    fleet_key,
    pg_box,
    pg_fleet,
    post_round_robin,
    started_box,
)
from tests.support.postgres import PgServer
from tests.support.smsgw_process import until_ready
from tests.support.waiting import eventually

NAMES = ("a", "b", "c")
MESSAGES = 1000


async def _docs(boxes: list[PgBox], key: str, ids: list[str]) -> list[dict[str, Any]]:
    """Each message read from a box other than the one it was listed for (GET from any box)."""
    clients = [b.client(key) for b in boxes]
    sem = asyncio.Semaphore(8)

    async def get(i: int, msg_id: str) -> dict[str, Any]:
        async with sem:
            r = await clients[(i + 1) % len(clients)].get(f"/api/v1/messages/{msg_id}")
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc

    try:
        return list(await asyncio.gather(*(get(i, m) for i, m in enumerate(ids))))
    finally:
        for c in clients:
            await c.aclose()


async def _until_final(
    boxes: list[PgBox], key: str, ids: list[str], timeout_s: float
) -> list[dict[str, Any]]:
    """Every message once final (read from the boxes in turn); on the deadline, what is not."""
    final: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while len(final) < len(ids):
        waiting = [i for i in ids if i not in final]
        for doc in await _docs(boxes, key, waiting):
            if doc["final"]:
                final[doc["id"]] = doc
        if time.monotonic() > deadline:
            stuck = Counter((d["status"], d["box"]) for d in await _docs(boxes, key, waiting))
            raise AssertionError(f"{len(waiting)} messages not final by the deadline: {dict(stuck)}")
        await asyncio.sleep(0.5)  # the poll's pace; the deadline above ends it
    return [final[i] for i in ids]


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_three_boxes_deliver_a_thousand_messages_posted_round_robin_each_once(
    tmp_path: Any, pg_server: PgServer
) -> None:
    url = await pg_server.fresh_database()
    key = await fleet_key(url)
    async with pg_fleet(tmp_path, url, NAMES) as boxes:
        a, b, _c = boxes
        # One idempotency key POSTed to two boxes at once: one message, the same answer from both.
        async with a.client(key) as ca, b.client(key) as cb:
            same = {"to": "+4915199999999", "body": "once, whichever box", "idempotency_key": "fleet-key-1"}
            first, second = await asyncio.gather(
                ca.post("/api/v1/messages", json=same), cb.post("/api/v1/messages", json=same)
            )
        assert sorted([first.status_code, second.status_code]) == [200, 202], (first.text, second.text)
        assert first.json()["id"] == second.json()["id"]

        bodies = [f"fleet message {i}" for i in range(MESSAGES)]
        posted = await post_round_robin(boxes, key, bodies)
        total = MESSAGES + 1

        async def all_delivered() -> bool:
            return await count_status(a, key, ["delivered"]) == total

        started = time.monotonic()
        await eventually(all_delivered, 420, interval_s=0.5)
        drained_s = time.monotonic() - started
        docs = await _docs(boxes, key, [posted[body][0] for body in bodies])
        once = (await _docs(boxes, key, [first.json()["id"]]))[0]

    sent = Counter(t for box in boxes for t in box.texts())
    assert sent["once, whichever box"] == 1
    assert once["status"] == "delivered"
    by_name = {box.name: box for box in boxes}
    for body, doc in zip(bodies, docs, strict=True):
        assert (doc["body"], doc["status"], doc["final"]) == (body, "delivered", True), doc
        assert doc["box"] in by_name, doc
        assert doc["modem"] == "modem"
        # Sent once by the whole fleet, and by the box the message names.
        assert sent[body] == 1, (body, sent[body])
        assert by_name[doc["box"]].texts().count(body) == 1
    per_box = Counter(doc["box"] for doc in docs)
    assert set(per_box) == set(NAMES), per_box  # every box's dispatcher took its share
    print(
        f"\n{MESSAGES} messages through 3 boxes on PostgreSQL: drained {drained_s:.1f} s after the POSTs; {dict(per_box)}"
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_box_killed_mid_drain_leaves_its_queue_to_the_others_and_its_part_resolved_once(
    tmp_path: Any, pg_server: PgServer
) -> None:
    url = await pg_server.fresh_database()
    key = await fleet_key(url)
    # Each SMS takes the modems a little time, so the drain is still going when c dies; c's modem
    # waits long for a silent submit (its own timeout must not resolve the part before the kill).
    timing = {"prompt_delay_s": 0.01, "submit_latency_s": 0.05}
    patient = {"submit_timeout_s": 300.0, "submit_floor_s": 300.0}
    # A report c's modem got but c never recorded (killed) is given up after this: final `sent`.
    # Long enough that a live box's report, slowed by a loaded machine, is never given up too.
    reports = {"dispatcher": {"report_timeout_s": 30.0}}
    async with (
        pg_box(tmp_path / "a", url, "a", timing=timing, sections=reports) as a,
        pg_box(tmp_path / "b", url, "b", timing=timing, sections=reports) as b,
        pg_box(tmp_path / "c", url, "c", timing=timing, modem=patient, sections=reports) as c,
    ):
        boxes = [a, b, c]
        bodies = [f"drain message {i}" for i in range(300)]
        posted = await post_round_robin(boxes, key, bodies)
        await eventually(lambda: len(c.submits()) >= 5, 60)  # c is sending its share
        c.sim.freeze(600)  # the next part c hands its modem never reaches the network

        def frozen() -> bool:
            return any(e.kind == "freeze" for e in c.sim.network.log)

        await eventually(frozen, 30)
        await c.proc.kill9()
        sent_by_c = set(c.texts())
        left = await count_status(a, key, ["queued", "sending"])
        assert left > 0  # killed mid-drain

        ids = [posted[body][0] for body in bodies]
        docs = await _until_final([a, b], key, ids, 180)
        async with a.client(key) as ca:
            status = (await ca.get("/api/v1/status")).json()

    sent = Counter(t for box in boxes for t in box.texts())
    unknown = {d["body"]: [e for e in d["events"] if e["type"] == "outcome_unknown"] for d in docs}
    unknown = {body: events for body, events in unknown.items() if events}
    # c's parts in flight: the frozen one; maybe one its modem had sent but c had not recorded yet
    # (the ambiguous window). Each resolved once, all by the box that took c over. The message c had
    # claimed next was never handed to its modem: resent as `recovered`, not as a possible duplicate.
    assert all(len(events) == 1 for events in unknown.values()), unknown
    details = [events[0]["detail"] for events in unknown.values()]
    assert all("box c stopped" in d for d in details), details
    takers = {n for n in ("a", "b") for d in details if f"box {n} took over" in d}
    assert len(takers) == 1, details
    (taker,) = takers
    never_sent = [body for body in unknown if body not in sent_by_c]
    assert len(never_sent) == 1, (list(unknown), sorted(sent_by_c))  # the frozen one
    for body, d in zip(bodies, docs, strict=True):
        assert d["final"], d
        # Delivered, or (its report lost with c) final `sent`.
        assert d["status"] == "delivered" or (d["status"] == "sent" and d["box"] == "c"), d
        if body in unknown:
            assert d["box"] in ("a", "b"), d  # resent through a live box
            assert d["possible_duplicate"] is True, d
            # Twice only when c's modem had sent it before the kill: the ambiguous window.
            assert sent[body] == (2 if body in sent_by_c else 1), (body, sent[body])
        else:
            assert sent[body] == 1, (body, sent[body])  # none sent twice outside that window
        if body not in sent_by_c:
            assert d["box"] in ("a", "b"), d  # c's queue finished on the others
    posted_to_c_finished_elsewhere = [
        body for body in bodies if posted[body][1] == "c" and body not in sent_by_c
    ]
    assert posted_to_c_finished_elsewhere  # c had queued work of its own when it died
    fleet = {x["name"]: x for x in status["fleet"]["boxes"]}
    assert (fleet["c"]["lease"], fleet["c"]["taken_over_by"]) == ("taken_over", taker)
    print(
        f"\nbox c killed with {left} messages queued or in flight; {len(posted_to_c_finished_elsewhere)} "
        f"posted to c finished on a and b; its {len(unknown)} part(s) in flight resolved once by box {taker}"
    )


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_second_box_given_a_name_in_use_refuses_in_one_line_and_the_box_itself_restarts_at_once(
    tmp_path: Any, pg_server: PgServer
) -> None:
    """The lease is long (60 s): a crashed box restarting on its own files, and a box started after a
    clean stop, take the name at once; a twin started while the name's holder lives gives up."""
    url = await pg_server.fresh_database()
    key = await fleet_key(url)
    async with pg_box(tmp_path / "a", url, "a", lease_s=60) as first:
        (holder,) = [b.instance for b in await _boxes(url)]
        async with started_box(tmp_path / "twin", url, "a", lease_s=60) as twin:
            assert twin.proc.proc is not None
            assert await asyncio.wait_for(twin.proc.proc.wait(), 60) != 0
            log = twin.proc.log.read_text(errors="replace")
        refusals = [line for line in log.splitlines() if "refusing to start" in line]
        assert len(refusals) == 1, log
        assert "fleet.box a: another box runs with this name" in refusals[0]
        assert f"start {holder}" in refusals[0]
        assert "Traceback" not in log
        assert [b.instance for b in await _boxes(url)] == [holder]  # the twin took nothing

        await first.proc.kill9()  # a crash: its lease (60 s) lives on in the ledger
        started = time.monotonic()
        await first.proc.start()
        await until_ready(first.base, 30)  # its own token: it need not wait out its lease
        assert time.monotonic() - started < 30
        async with first.client(key) as c:
            r = await c.post("/api/v1/messages", json={"to": "+4915100000001", "body": "after the restart"})
            assert r.status_code == 202, r.text
        await eventually(lambda: "after the restart" in first.texts(), 30)

    # A clean stop lets the name go: a replacement box with new files takes it at once.
    async with pg_box(tmp_path / "replacement", url, "a", lease_s=60) as replacement:
        (now_held,) = await _boxes(url)
        assert now_held.instance is not None
        assert now_held.instance != holder
        assert replacement.name == "a"


async def _boxes(url: str) -> list[Box]:
    store = Store(url)
    await store.open()
    try:
        return await store.boxes()
    finally:
        await store.close()


@pytest.mark.timeout(180)
async def test_a_chain_begun_on_a_box_that_dies_is_taken_on_by_another(
    tmp_path: Any, pg_server: PgServer
) -> None:
    """Box a accepts a message with an escalation, sends it, and is killed before the chain's first
    step is due. Box b, which never accepted a message with an escalation itself, takes the step:
    a's commit woke b's escalator too (NOTIFY), not only b's dispatcher."""
    url = await pg_server.fresh_database()
    key = await fleet_key(url)
    first, second = "+4915111111111", "+4915122222222"
    quick = {"escalation": {"min_after_s": 1}}
    async with (
        pg_box(tmp_path / "a", url, "a", sections=quick) as a,
        pg_box(tmp_path / "b", url, "b", sections=quick) as b,
    ):
        for box in (a, b):  # no status report, whichever box sends it: nothing ends the chain
            box.sim.network.set_policy(first, outcome="lost")
        async with a.client(key) as c:
            r = await c.post(
                "/api/v1/messages",
                json={
                    "to": first,
                    "body": "Pump 3 pressure low",
                    "escalation": {"after_s": 4, "then": [second]},
                },
            )
            assert r.status_code == 202, r.text
        await eventually(lambda: a.texts() + b.texts(), 30, 0.02)  # sent by either box
        await a.proc.kill9()
        await eventually(lambda: b.sim.network.phone(second).texts(), 60, 0.1)
        assert b.sim.network.phone(second).texts() == ["Pump 3 pressure low"]
