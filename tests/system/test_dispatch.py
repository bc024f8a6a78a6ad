"""The dispatcher's policies, seen from outside: priorities, schedules, validity, rate limits,
anti-flood, several modems, the crash policy, and sd_notify. Real HTTP, real ptys, no mocks."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance import dispatcher
from appliance.ledger import Store
from modem.simulator import NetworkEvent, Simulator
from tests.support.config_files import toml_text
from tests.support.gateway import Running, fleet_config, gateway_config, run_gateway
from tests.support.simulators import SIM_TEST_TIMING
from tests.support.waiting import eventually

FINAL = {"delivered", "undelivered", "failed", "canceled"}


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def submits(sim: Simulator, number: str | None = None) -> list[NetworkEvent]:
    """Submits the network accepted, in order (optionally to one number)."""
    return [e for e in sim.network.log if e.kind == "submit" and number in (None, e.number)]


def events(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in doc["events"] if e["type"] == kind]


async def status_is(gw: Running, msg_id: str, status: str) -> dict[str, Any] | None:
    doc = await gw.message(msg_id)
    return doc if doc["status"] == status else None


@contextlib.asynccontextmanager
async def started(sim: Simulator) -> AsyncIterator[Simulator]:
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


# ------------------------------------------------------------------------------------ priorities
@pytest.mark.slow
async def test_high_goes_before_normal_before_bulk_when_messages_queue(tmp_path: Path) -> None:
    sim_dir = tmp_path / "sim"
    raw = gateway_config(tmp_path, str(sim_dir / "gsmmodem"))
    async with run_gateway(raw, None) as gw:  # the modem is not there yet: everything queues
        sent = []
        # Accepted interleaved, high last: a FIFO would send them in the wrong order.
        for n in range(2):
            for i, priority in enumerate(("bulk", "normal", "high")):
                number = f"+491510000010{3 * n + i}"
                r = await gw.send(to=number, body=f"{priority} {n}", priority=priority)
                assert r.status_code == 202, r.text
                assert r.json()["priority"] == priority
                sent.append((priority, number, r.json()["id"]))
        sim = Simulator(sim_dir, "quectel-ec25", **SIM_TEST_TIMING)
        async with started(sim):
            for _priority, _number, msg_id in sent:
                assert (await gw.final(msg_id))["status"] == "delivered"
    rank = {"high": 0, "normal": 1, "bulk": 2}
    expected = [number for _p, number, _id in sorted(sent, key=lambda s: rank[s[0]])]  # stable: FIFO within
    assert [e.number for e in submits(sim)] == expected


@pytest.mark.slow
async def test_a_high_priority_message_overtakes_a_backlog(tmp_path: Path, sim: Simulator) -> None:
    # 60 a minute: the modem is busy with a backlog, one message a second.
    raw = gateway_config(tmp_path, str(sim.primary_path), modem={"rate_per_minute": 60.0, "rate_burst": 1})
    async with run_gateway(raw, sim) as gw:
        await gw.gateway.modem_list[0][2].wait_ready(10)
        backlog = [
            (await gw.send(to=f"+49151000001{i:02d}", body=f"bulk {i}", priority="bulk")).json()["id"]
            for i in range(4)
        ]
        await eventually(lambda: submits(sim))  # the first one is out, the rest wait their turn
        urgent = (await gw.send(to="+4915100000199", body="urgent", priority="high")).json()["id"]
        assert (await gw.final(urgent))["status"] == "delivered"
        order = [e.number for e in submits(sim)]
        assert (await gw.message(backlog[-1]))["status"] == "queued"  # the backlog still waits
    # It went next (or, had a bulk message already been claimed, right after that one).
    assert order[-1] == "+4915100000199"
    assert len(order) <= 3, order


# ----------------------------------------------------------------------------- scheduled sends
@pytest.mark.slow
async def test_scheduled_send_waits_for_its_time(gw: Running) -> None:
    assert gw.sim is not None
    send_at = math.ceil(time.time()) + 2
    number = "+4915100000200"
    r = await gw.send(to=number, body="at the top of the second", send_at=rfc3339(send_at))
    assert r.status_code == 202, r.text
    doc = r.json()
    assert doc["status"] == "scheduled"
    assert datetime.fromisoformat(doc["send_at"]).timestamp() == send_at
    assert (await gw.message(doc["id"]))["status"] == "scheduled"
    final = await gw.final(doc["id"])
    assert final["status"] == "delivered"
    assert [e.number for e in submits(gw.sim)] == [number]
    submitted = submits(gw.sim, number)[0].time.timestamp()
    assert submitted >= send_at, f"submitted {send_at - submitted:.3f} s before send_at"
    assert submitted < send_at + 5
    assert events(final, "due"), [e["type"] for e in final["events"]]
    assert datetime.fromisoformat(final["sent_at"]).timestamp() >= send_at


# -------------------------------------------------------------------------------------- validity
@pytest.mark.slow
async def test_message_not_sent_within_its_validity_fails_expired(tmp_path: Path) -> None:
    sim_dir = tmp_path / "absent"  # no modem: nothing can be sent
    raw = gateway_config(tmp_path, str(sim_dir / "gsmmodem"))
    async with run_gateway(raw, None) as gw:
        short = await gw.send(to="+4915100000300", body="only useful for a minute", validity_s=60)
        assert short.status_code == 202, short.text
        long = await gw.send(to="+4915100000301", body="useful for ten minutes", validity_s=600)
        short_doc, long_doc = short.json(), long.json()
        assert short_doc["status"] == "queued"
        expires = datetime.fromisoformat(short_doc["expires_at"]).timestamp()
        assert expires == pytest.approx(
            datetime.fromisoformat(short_doc["created_at"]).timestamp() + 60, abs=1
        )
        # 61 s later, as the gateway's maintenance would see it (the same call it makes every second).
        assert await gw.gateway.store.promote_and_expire(now=time.time() + 61) == 1
        doc = await gw.message(short_doc["id"])
        assert doc["status"] == "failed"
        assert doc["error"]["code"] == "expired"
        assert events(doc, "expired")
        assert (await gw.message(long_doc["id"]))["status"] == "queued"
        # The modem appears: the expired message stays failed, the other one goes.
        sim = Simulator(sim_dir, "quectel-ec25", **SIM_TEST_TIMING)
        async with started(sim):
            assert (await gw.final(long_doc["id"]))["status"] == "delivered"
            assert (await gw.message(short_doc["id"]))["status"] == "failed"
            assert [e.number for e in submits(sim)] == ["+4915100000301"]


# ------------------------------------------------------------------------------------ rate limit
@pytest.mark.slow
async def test_rate_limit_per_modem_spaces_submits_and_says_why(tmp_path: Path, sim: Simulator) -> None:
    raw = gateway_config(tmp_path, str(sim.primary_path), modem={"rate_per_minute": 60.0, "rate_burst": 1})
    async with run_gateway(raw, sim) as gw:
        await gw.gateway.modem_list[0][2].wait_ready(10)
        ids = [
            (await gw.send(to=f"+491510000040{i}", body=f"rate limited {i}")).json()["id"] for i in range(3)
        ]
        docs = [await gw.final(msg_id) for msg_id in ids]
    assert [d["status"] for d in docs] == ["delivered"] * 3
    times = [e.time.timestamp() for e in submits(sim)]
    assert len(times) == 3
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.9 <= g <= 2.0 for g in gaps), gaps
    delayed = [e["detail"] for d in docs for e in events(d, "delayed")]
    assert delayed, "a message held back by the rate limit says so in its timeline"
    assert all("rate limit" in d and "60 a minute" in d for d in delayed), delayed


async def test_a_message_committed_while_an_idle_dispatcher_looks_is_sent_at_once(
    tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle worker asks the ledger when the next message is due before it sleeps: a message
    committed during that question (its wake-up comes while the worker is not yet waiting) goes
    now, not after the idle sleep (60 s here; 5 s shipped, which tests under load once hit)."""
    monkeypatch.setattr(dispatcher, "IDLE_WAIT_S", 60.0)
    async with run_gateway(gateway_config(tmp_path, str(sim.primary_path)), sim) as gw:
        await gw.gateway.modem_list[0][2].wait_ready(10)
        store = gw.gateway.store
        asked, answer = asyncio.Event(), asyncio.Event()
        next_due = store.next_due

        async def next_due_answered_late() -> float | None:
            due = await next_due()  # the ledger's answer: nothing due, the queue is empty
            asked.set()
            await answer.wait()  # ...handed back after the message below was committed
            return due

        monkeypatch.setattr(store, "next_due", next_due_answered_late)
        gw.gateway.wake()  # an idle turn: nothing to claim, so it asks next_due
        await asyncio.wait_for(asked.wait(), 10)
        r = await gw.send(to="+4915100000470", body="committed meanwhile")
        assert r.status_code == 202
        monkeypatch.setattr(store, "next_due", next_due)
        answer.set()
        await eventually(lambda: submits(sim, "+4915100000470"), 20)


@pytest.mark.slow
async def test_sporadic_messages_go_at_once_and_a_burst_beyond_the_limit_says_why(
    tmp_path: Path, sim: Simulator
) -> None:
    """The shipped burst (5), at 6 a minute (one token per 10 s, so that a slow CI machine cannot
    earn one back meanwhile): five messages one at a time wait for no token; two more at once
    are held back, with the limit and the time in the timeline, on /status and on the page."""
    raw = gateway_config(tmp_path, str(sim.primary_path), modem={"rate_per_minute": 6.0})
    assert "rate_burst" not in raw["modem"]  # the default burst is what is shown
    async with run_gateway(raw, sim) as gw:
        await gw.gateway.modem_list[0][2].wait_ready(10)
        sporadic = []
        for i in range(5):
            msg_id = (await gw.send(to=f"+491510000045{i}", body=f"sporadic {i}")).json()["id"]

            def submitted(n: int = i) -> bool:
                return len(submits(sim)) == n + 1

            await eventually(submitted, 5)
            sporadic.append(msg_id)
        posted_at = time.time()
        burst = [(await gw.send(to=f"+491510000046{i}", body=f"burst {i}")).json()["id"] for i in range(2)]
        held = await eventually(lambda: _any_delayed(gw, burst))
        status = await eventually(lambda: _held_back(gw))
        page = (await gw.client.get("/")).text
        docs = [await gw.message(msg_id) for msg_id in sporadic]
    assert [s.number for s in submits(sim)][:5] == [f"+491510000045{i}" for i in range(5)]
    assert all(d["status"] in ("sent", "delivered") for d in docs), [d["status"] for d in docs]
    assert [events(d, "delayed") for d in docs] == [[]] * 5, "no sporadic message waited for a token"
    (detail,) = [e["detail"] for e in events(held, "delayed")]
    assert "rate limit (6 a minute, burst 5) until 20" in detail, detail
    (entry,) = status["queue"]["held_back"]
    assert "rate limit (6 a minute, burst 5)" in entry["reason"]
    assert entry["messages"] >= 1
    assert datetime.fromisoformat(entry["until"]).timestamp() > posted_at
    assert "held back: waiting for the modem&#39;s rate limit (6 a minute, burst 5) (until 20" in page, page


async def _any_delayed(gw: Running, ids: list[str]) -> dict[str, Any] | None:
    for msg_id in ids:
        doc = await _delayed(gw, msg_id)
        if doc is not None:
            return doc
    return None


async def _held_back(gw: Running) -> dict[str, Any] | None:
    doc: dict[str, Any] = (await gw.client.get("/api/v1/status")).json()
    return doc if doc["queue"]["held_back"] else None


# ------------------------------------------------------------------------------------ anti-flood
@pytest.mark.slow
async def test_anti_flood_holds_back_one_recipient_not_the_others(tmp_path: Path, sim: Simulator) -> None:
    raw = gateway_config(tmp_path, str(sim.primary_path), dispatcher={"per_recipient_per_minute": 2})
    flooded, other = "+4915100000500", "+4915100000501"
    async with run_gateway(raw, sim) as gw:
        await gw.gateway.modem_list[0][2].wait_ready(10)
        to_flooded = [
            (await gw.send(to=flooded, body=f"to the same number {i}")).json()["id"] for i in range(3)
        ]
        to_other = (await gw.send(to=other, body="to someone else")).json()["id"]
        assert (await gw.final(to_other))["status"] == "delivered"
        for msg_id in to_flooded[:2]:
            assert (await gw.final(msg_id))["status"] == "delivered"
        third = await eventually(lambda: _delayed(gw, to_flooded[2]))
        assert third["status"] == "queued"
        (detail,) = [e["detail"] for e in events(third, "delayed")]
        assert "anti-flood" in detail
        assert "2 messages a minute" in detail
        assert " until 20" in detail  # and until when (RFC 3339)
    assert sim.network.phone(flooded).texts() == ["to the same number 0", "to the same number 1"]
    assert sim.network.phone(other).texts() == ["to someone else"]


async def _delayed(gw: Running, msg_id: str) -> dict[str, Any] | None:
    doc = await gw.message(msg_id)
    return doc if events(doc, "delayed") else None


# ---------------------------------------------------------------------------------- multi-modem
def two_modem_config(tmp_path: Path, a: Simulator, b: Simulator, **dispatcher: Any) -> dict[str, Any]:
    return fleet_config(tmp_path, [a, b], ["left", "right"], dispatcher=dispatcher)


@pytest.mark.slow
async def test_two_modems_share_the_queue(tmp_path: Path) -> None:
    timing = {**SIM_TEST_TIMING, "submit_latency_s": 0.1}
    async with (
        started(Simulator(tmp_path / "a", "quectel-ec25", **timing)) as a,
        started(Simulator(tmp_path / "b", "sim800", **timing)) as b,
        run_gateway(two_modem_config(tmp_path, a, b), a) as gw,
    ):
        for _name, _cfg, modem in gw.gateway.modem_list:
            await modem.wait_ready(10)
        ids = [(await gw.send(to=f"+49151000006{i:02d}", body=f"spread {i}")).json()["id"] for i in range(8)]
        docs = [await gw.final(msg_id) for msg_id in ids]
        status = (await gw.client.get("/api/v1/status")).json()
    assert all(d["status"] == "delivered" for d in docs)
    assert submits(a), "both modems carry messages"
    assert submits(b), "both modems carry messages"
    assert len(submits(a)) + len(submits(b)) == 8
    carried = {e["detail"].rsplit(" on ", 1)[1] for d in docs for e in events(d, "attempt")}
    assert carried == {"left", "right"}
    assert [m["name"] for m in status["modems"]] == ["left", "right"]


@pytest.mark.slow
async def test_failing_modem_is_set_aside_and_the_other_carries_on(tmp_path: Path) -> None:
    timing = {**SIM_TEST_TIMING, "submit_latency_s": 0.05}
    async with (
        started(Simulator(tmp_path / "a", "quectel-ec25", **timing)) as bad,
        started(Simulator(tmp_path / "b", "quectel-ec25", **timing)) as good,
        run_gateway(
            two_modem_config(tmp_path, bad, good, modem_failures_before_set_aside=2, set_aside_s=300.0), bad
        ) as gw,
    ):
        for _name, _cfg, modem in gw.gateway.modem_list:
            await modem.wait_ready(10)
        bad.cms_error(500, count=100)  # every submit on the left modem fails (transient "unknown error")
        ids = [
            (await gw.send(to=f"+49151000007{i:02d}", body=f"carry on {i}")).json()["id"] for i in range(10)
        ]
        docs = [await gw.final(msg_id) for msg_id in ids]
        left = gw.gateway.dispatcher.workers[0]
        assert left.name == "left"
        assert left.set_aside_until > time.monotonic() + 200
    assert all(d["status"] == "delivered" for d in docs), [d["status"] for d in docs]
    rejected = [e for e in bad.network.log if e.kind == "submit_rejected"]
    assert len(rejected) == 2  # two failures in a row, then no more traffic to it
    assert submits(bad) == []
    assert len(submits(good)) == 10
    retried = [d for d in docs if events(d, "retry")]
    assert 1 <= len(retried) <= 2
    assert all("cms_500" in events(d, "retry")[0]["detail"] for d in retried)


# --------------------------------------------------------------------------------- crash policy
async def _ledger_with_parts_left_sending(
    tmp_path: Path, sim_dir: Path, count: int
) -> tuple[dict[str, Any], list[str]]:
    """Messages accepted over HTTP, then claimed and marked `sending` as the dispatcher does
    right before AT+CMGS: the ledger a kill -9 at that moment leaves behind."""
    raw = gateway_config(tmp_path, str(sim_dir / "gsmmodem"))
    async with run_gateway(raw, None) as gw:  # no modem yet: the messages wait
        ids = [
            (await gw.send(to=f"+49151000008{i:02d}", body=f"interrupted {i}")).json()["id"]
            for i in range(count)
        ]
    store = Store(raw["store"]["path"])
    await store.open()
    try:
        for msg_id in ids:
            msg = await store.claim_next("modem")
            assert msg is not None
            assert msg.id == msg_id
            await store.part_sending(msg.id, 1)
    finally:
        await store.close()
    return raw, ids


@pytest.mark.slow
async def test_hold_policy_waits_for_the_operator(tmp_path: Path) -> None:
    sim_dir = tmp_path / "sim"
    raw, (resent, abandoned) = await _ledger_with_parts_left_sending(tmp_path, sim_dir, 2)
    raw["dispatcher"]["unknown_outcome"] = "hold"
    async with (
        started(Simulator(sim_dir, "quectel-ec25", **SIM_TEST_TIMING)) as sim,
        run_gateway(raw, sim) as gw,
    ):
        await gw.gateway.modem_list[0][2].wait_ready(10)
        for msg_id in (resent, abandoned):
            doc = await gw.message(msg_id)
            assert doc["status"] == "sending"
            assert doc["held"] is True
            (unknown,) = events(doc, "outcome_unknown")
            assert "held" in unknown["detail"]
        # A held message is never sent on its own, and cannot be canceled.
        cancel = await gw.client.post(f"/api/v1/messages/{resent}/cancel")
        assert cancel.status_code == 409
        assert "resend" in cancel.json()["error"]["message"]
        r = await gw.client.post(f"/api/v1/messages/{resent}/resend")
        assert r.status_code == 200, r.text
        assert r.json()["held"] is False
        doc = await gw.final(resent)
        assert doc["status"] == "delivered"
        assert doc["possible_duplicate"] is True
        r = await gw.client.post(f"/api/v1/messages/{abandoned}/abandon")
        assert r.status_code == 200, r.text
        doc = await gw.message(abandoned)
        assert doc["status"] == "failed"
        assert doc["error"]["code"] == "outcome_unknown"
        again = await gw.client.post(f"/api/v1/messages/{abandoned}/resend")
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "not_held"
    assert sim.network.phone("+4915100000800").texts() == ["interrupted 0"]
    assert sim.network.phone("+4915100000801").texts() == []


@pytest.mark.slow
async def test_hold_decisions_need_the_admin_scope(tmp_path: Path) -> None:
    sim_dir = tmp_path / "sim"
    raw, (held,) = await _ledger_with_parts_left_sending(tmp_path, sim_dir, 1)
    raw["dispatcher"]["unknown_outcome"] = "hold"
    store = Store(raw["store"]["path"])
    await store.open()
    _rec, sender = await store.create_key("app", ["send", "read"])
    await store.close()
    async with run_gateway(raw, None) as gw:
        for action in ("resend", "abandon"):
            r = await gw.client.post(
                f"/api/v1/messages/{held}/{action}", headers={"Authorization": f"Bearer {sender}"}
            )
            assert r.status_code == 403
        assert (await gw.message(held))["held"] is True


@pytest.mark.slow
async def test_resend_policy_resends_and_flags_a_possible_duplicate(tmp_path: Path) -> None:
    sim_dir = tmp_path / "sim"
    raw, (msg_id,) = await _ledger_with_parts_left_sending(tmp_path, sim_dir, 1)
    assert "unknown_outcome" not in raw["dispatcher"]  # the default policy
    async with (
        started(Simulator(sim_dir, "quectel-ec25", **SIM_TEST_TIMING)) as sim,
        run_gateway(raw, sim) as gw,
    ):
        doc = await gw.final(msg_id)
        status = (await gw.client.get("/api/v1/status")).json()
    assert doc["status"] == "delivered"
    assert doc["possible_duplicate"] is True
    assert doc["held"] is False
    (unknown,) = events(doc, "outcome_unknown")
    assert "resending" in unknown["detail"]
    assert status["queue"]["ambiguous_total"] == 1
    assert sim.network.phone("+4915100000800").texts() == ["interrupted 0"]


# ------------------------------------------------------------------------------------- sd_notify
@pytest.mark.slow
async def test_sd_notify_ready_watchdog_and_status(tmp_path: Path, sim: Simulator) -> None:
    raw = gateway_config(tmp_path, str(sim.primary_path))
    config_path = tmp_path / "smsgw.toml"
    config_path.write_text(toml_text(raw))
    notify_path = tmp_path / "notify.sock"
    assert len(str(notify_path)) < 100, "AF_UNIX paths are short"
    watchdog_s = 2.0
    received: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify_path))
        sock.setblocking(False)

        async def listen() -> None:
            while True:
                data = await loop.sock_recv(sock, 4096)
                received.append((time.monotonic(), data.decode()))

        listener = asyncio.create_task(listen())
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": str(int(watchdog_s * 1e6))}
        with (tmp_path / "serve.log").open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "appliance.cli", "serve", "--config", str(config_path),
                stdout=log, stderr=log, env=env,
            )  # fmt: skip
        try:
            await eventually(lambda: _lines(received, "READY=1"), timeout_s=30)
            ready_at = _lines(received, "READY=1")[0][0]
            # The service is up when it says so: the API answers.
            async with httpx.AsyncClient(base_url=f"http://{raw['api']['listen']}") as client:
                assert (await client.get("/healthz")).status_code == 200
            await eventually(lambda: len(_lines(received, "WATCHDOG=1")) >= 4, timeout_s=15)
            pings = [t for t, _ in _lines(received, "WATCHDOG=1")]
            # systemd kills the service when a ping is later than WATCHDOG_USEC.
            gaps = [b - a for a, b in itertools.pairwise([ready_at, *pings])]
            assert max(gaps) < watchdog_s, gaps
            statuses = [
                line for _, text in received for line in text.splitlines() if line.startswith("STATUS=")
            ]
            assert statuses
            assert all("queue" in s for s in statuses), statuses
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
            await eventually(lambda: _lines(received, "STOPPING=1"))
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert received[0][1].startswith("READY=1"), received[0]


def _lines(received: list[tuple[float, str]], line: str) -> list[tuple[float, str]]:
    return [(t, text) for t, text in received if line in text.splitlines()]
