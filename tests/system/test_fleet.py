"""Two `smsgw serve` processes, each with its own simulated modem, sharing one ledger file: a fleet."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.ledger import Store
from tests.support.pg_fleet import PgBox, fleet_key, pg_box, until_delivered
from tests.support.waiting import eventually

LEASE_S = 2


def fleet_box(tmp_path: Path, name: str, **modem: Any) -> contextlib.AbstractAsyncContextManager[PgBox]:
    """`smsgw serve` as box `name` on the shared ledger tmp_path/ledger.sqlite3, with its own simulator."""
    return pg_box(tmp_path / name, str(tmp_path / "ledger.sqlite3"), name, lease_s=LEASE_S, modem=modem)


def client(box: PgBox, key: str) -> httpx.AsyncClient:
    return box.client(key, timeout_s=10)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_messages_posted_to_either_box_are_all_delivered_each_by_the_box_it_names(
    tmp_path: Path,
) -> None:
    key = await fleet_key(tmp_path / "ledger.sqlite3")
    async with fleet_box(tmp_path, "a") as a, fleet_box(tmp_path, "b") as b:
        ids: dict[str, str] = {}
        for box in (a, b):
            async with client(box, key) as c:
                for i in range(8):
                    body = f"via {box.name} {i}"
                    r = await c.post("/api/v1/messages", json={"to": f"+491510000{i:04d}", "body": body})
                    assert r.status_code == 202, r.text
                    ids[body] = r.json()["id"]
        async with client(a, key) as c:
            docs = await until_delivered(c, list(ids.values()), 30)
    by_box = {box.name: box for box in (a, b)}
    for doc in docs:
        assert doc["box"] in by_box, doc
        assert doc["modem"] == "modem"
        # The box a message names is the one whose modem sent it: the text reached the phone there.
        assert by_box[doc["box"]].texts().count(doc["body"]) == 1
        assert sum(box.texts().count(doc["body"]) for box in (a, b)) == 1
    assert {d["box"] for d in docs} == {"a", "b"}  # each POST woke its own box's dispatcher


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_box_killed_mid_send_is_taken_over_and_its_message_resent_exactly_once(
    tmp_path: Path,
) -> None:
    key = await fleet_key(tmp_path / "ledger.sqlite3")
    # Box a's modem stops answering during the submit: its message stays `sending` until a dies.
    hung = {"submit_timeout_s": 120.0, "submit_floor_s": 120.0}
    async with fleet_box(tmp_path, "a", **hung) as a, fleet_box(tmp_path, "b") as b:
        a.sim.hang()
        async with client(a, key) as ca:
            r = await ca.post("/api/v1/messages", json={"to": "+4915112345678", "body": "in flight"})
            assert r.status_code == 202, r.text
            msg_id = r.json()["id"]

            async def sending_on_a() -> bool:
                doc: dict[str, Any] = (await ca.get(f"/api/v1/messages/{msg_id}")).json()
                return bool(doc["status"] == "sending" and doc["box"] == "a")

            await eventually(sending_on_a, 15)
        killed_at = time.time()
        await a.proc.kill9()
        async with client(b, key) as cb:
            (doc,) = await until_delivered(cb, [msg_id], 30)
            resent_after = time.time() - killed_at
            status = (await cb.get("/api/v1/status")).json()
    unknown = [e for e in doc["events"] if e["type"] == "outcome_unknown"]
    assert len(unknown) == 1, doc["events"]
    assert "box a stopped" in unknown[0]["detail"]
    assert "box b took over" in unknown[0]["detail"]
    assert doc["box"] == "b"
    assert doc["attempts"] == 2
    assert doc["possible_duplicate"] is True
    assert b.texts().count("in flight") == 1  # resent once, through b's modem
    assert a.texts() == []  # a's modem never answered the submit
    assert status["queue"]["ambiguous_total"] == 1
    fleet = {x["name"]: x for x in status["fleet"]["boxes"]}
    assert status["fleet"]["box"] == "b"
    assert (fleet["a"]["lease"], fleet["a"]["taken_over_by"]) == ("taken_over", "b")
    assert (fleet["b"]["lease"], fleet["b"]["taken_over_by"]) == ("held", None)
    print(
        f"\nbox a killed mid-send; its message delivered through box b {resent_after:.1f} s later "
        f"(lease {LEASE_S} s)"
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_the_message_claimed_next_during_a_hung_submit_is_resent_without_a_duplicate_flag(
    tmp_path: Path,
) -> None:
    """Box a claims its next message while its modem is still in AT+CMGS (no gap between sends).
    Killed then, only the part its modem had was handed over: the next one was never asked."""
    key = await fleet_key(tmp_path / "ledger.sqlite3")
    hung = {"submit_timeout_s": 120.0, "submit_floor_s": 120.0}
    async with fleet_box(tmp_path, "a", **hung) as a, fleet_box(tmp_path, "b") as b:
        a.sim.freeze(120)  # from a's first AT+CMGS with its PDU: that submit never ends
        async with client(a, key) as ca:
            batch = {
                "messages": [
                    {"to": "+4915112345670", "body": "submitted"},
                    {"to": "+4915112345671", "body": "claimed next"},
                ]
            }
            r = await ca.post("/api/v1/messages/batch", json=batch)
            assert r.status_code == 200, r.text
            ids = [item["message"]["id"] for item in r.json()["results"]]

            async def both_sending_on_a() -> bool:
                docs = [(await ca.get(f"/api/v1/messages/{i}")).json() for i in ids]
                return all(d["status"] == "sending" and d["box"] == "a" for d in docs)

            await eventually(both_sending_on_a, 15)
        await a.proc.kill9()
        async with client(b, key) as cb:
            submitted, claimed_next = await until_delivered(cb, ids, 30)
            status = (await cb.get("/api/v1/status")).json()

    def kinds(doc: dict[str, Any]) -> list[str]:
        return [e["type"] for e in doc["events"]]

    assert kinds(submitted).count("outcome_unknown") == 1, submitted["events"]
    assert submitted["possible_duplicate"] is True
    assert "outcome_unknown" not in kinds(claimed_next), claimed_next["events"]
    (recovered,) = [e for e in claimed_next["events"] if e["type"] == "recovered"]
    assert "before the modem was asked" in recovered["detail"]
    assert claimed_next["possible_duplicate"] is False
    assert (submitted["box"], claimed_next["box"]) == ("b", "b")
    assert b.texts().count("submitted") == 1
    assert b.texts().count("claimed next") == 1
    assert a.texts() == []  # a's modem never finished its one submit
    assert status["queue"]["ambiguous_total"] == 1  # only the part a's modem had


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_paused_box_taken_over_says_so_once_then_registers_again_and_sends(tmp_path: Path) -> None:
    key = await fleet_key(tmp_path / "ledger.sqlite3")
    ledger = Store(tmp_path / "ledger.sqlite3")
    await ledger.open()
    try:
        async with fleet_box(tmp_path, "a") as a, fleet_box(tmp_path, "b"):
            a.proc.signal(signal.SIGSTOP)  # a frozen VM, say: its lease runs out
            try:

                async def taken_over() -> bool:
                    return any(x.name == "a" and x.taken_over_by == "b" for x in await ledger.boxes())

                await eventually(taken_over, 20, interval_s=0.1)
            finally:
                a.proc.signal(signal.SIGCONT)

            def registered_again() -> bool:
                return "box a registered again after box b took it over" in a.proc.log.read_text()

            await eventually(registered_again, 20, interval_s=0.1)
            assert a.proc.log.read_text().count("box a was taken over by box b") == 1
            async with client(a, key) as ca:
                r = await ca.post(
                    "/api/v1/messages", json={"to": "+4915112345678", "body": "after the pause"}
                )
                assert r.status_code == 202, r.text
                (doc,) = await until_delivered(ca, [r.json()["id"]], 20, interval_s=0.1)
            assert doc["box"] == "a"  # a claims again (its own POST woke its own dispatcher)
            (box_a,) = [x for x in await ledger.boxes() if x.name == "a"]
            assert box_a.taken_over_by is None
    finally:
        await ledger.close()
