"""The whole gateway over real HTTP and real ptys: what a LAN app and an on-call phone would see."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modem.simulator import Simulator
from tests.support.gateway import Running, gateway_config, run_gateway
from tests.support.ports import free_port
from tests.support.simulators import SIM_TEST_TIMING
from tests.support.waiting import eventually

PHONE = "+4915112345678"


def kinds(doc: dict[str, Any]) -> list[str]:
    return [e["type"] for e in doc["events"]]


async def test_send_is_delivered_with_its_full_timeline(gw: Running) -> None:
    r = await gw.send(to=PHONE, body="Hello from the LAN")
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["status"] == "queued"
    doc = await gw.final(accepted["id"])
    assert doc["status"] == "delivered"
    assert kinds(doc)[:2] == ["accepted", "attempt"]
    assert {"part_submitted", "sent", "report", "delivered"} <= set(kinds(doc))
    assert doc["sent_at"] is not None
    assert doc["delivered_at"] is not None
    assert doc["parts"][0]["mr"] is not None
    assert gw.sim is not None
    assert gw.sim.network.phone(PHONE).texts() == ["Hello from the LAN"]


@pytest.mark.parametrize(
    "text",
    ["multipart " + "abcdefghij" * 40, "Emoji 😀🎉 and Umlaute äöü, and more: " + "🙂" * 60],
)
async def test_multipart_and_emoji_are_delivered_intact(gw: Running, text: str) -> None:
    r = await gw.send(to=PHONE, body=text)
    assert r.status_code == 202
    doc = await gw.final(r.json()["id"])
    assert doc["status"] == "delivered"
    assert doc["segments"] > 1
    assert all(p["status"] == "delivered" for p in doc["parts"])
    assert len({p["mr"] for p in doc["parts"]}) == doc["segments"]
    assert gw.sim is not None
    inbox = gw.sim.network.phone(PHONE).inbox
    assert inbox[-1].text == text
    assert inbox[-1].parts == doc["segments"]


async def test_transient_error_is_retried_then_delivered(gw: Running) -> None:
    assert gw.sim is not None
    gw.sim.cms_error(38, count=2)
    r = await gw.send(to=PHONE, body="through congestion")
    doc = await gw.final(r.json()["id"])
    assert doc["status"] == "delivered"
    assert doc["attempts"] == 3
    retries = [e for e in doc["events"] if e["type"] == "retry"]
    assert len(retries) == 2
    assert "cms_38" in retries[0]["detail"]


@pytest.mark.slow
async def test_permanent_error_fails_with_the_code(gw: Running) -> None:
    assert gw.sim is not None
    gw.sim.cms_error(1, count=1)
    r = await gw.send(to=PHONE, body="unallocated number")
    doc = await gw.final(r.json()["id"])
    assert doc["status"] == "failed"
    assert doc["attempts"] == 1
    assert doc["error"]["code"] == "cms_1"
    assert "unallocated" in doc["error"]["message"]


@pytest.mark.slow
async def test_report_chaos_ends_in_the_right_final_states(gw: Running) -> None:
    assert gw.sim is not None
    net = gw.sim.network
    net.set_policy("+4915100000011", outcome="delivered", intermediate=0x30, duplicates=2)
    net.set_policy("+4915100000012", outcome="delivered", order="reverse", recipient_format="national")
    net.set_policy("+4915100000013", outcome="fail")
    # Only "still trying" for now: the final report would come an hour later.
    net.set_policy("+4915100000014", intermediate=0x20, intermediate_gap_s=3600)
    ids = {}
    for number, body in (
        ("+4915100000011", "intermediate then final, twice"),
        ("+4915100000012", "reversed multipart " + "x" * 300),
        ("+4915100000013", "will fail"),
    ):
        ids[number] = (await gw.send(to=number, body=body)).json()["id"]
    pending_id = (await gw.send(to="+4915100000014", body="stays sent")).json()["id"]
    assert (await gw.final(ids["+4915100000011"]))["status"] == "delivered"
    assert (await gw.final(ids["+4915100000012"]))["status"] == "delivered"
    failed = await gw.final(ids["+4915100000013"])
    assert failed["status"] == "undelivered"
    assert failed["error"]["code"].startswith("tp_status_")
    dup = await gw.message(ids["+4915100000011"])
    assert "report_ignored" in kinds(dup)  # the duplicates changed nothing
    # A report that says "still trying" is recorded but is not final.
    doc = await eventually(lambda: _with_report(gw, pending_id))
    assert doc["status"] == "sent"
    assert "still trying" in next(e for e in doc["events"] if e["type"] == "report")["detail"]


async def _with_report(gw: Running, msg_id: str) -> dict[str, Any] | None:
    doc = await gw.message(msg_id)
    return doc if "report" in kinds(doc) else None


async def test_idempotent_repeat_sends_nothing_new(gw: Running) -> None:
    first = await gw.send(to=PHONE, body="only once", idempotency_key="order-42")
    assert first.status_code == 202
    await gw.final(first.json()["id"])
    again = await gw.client.post(
        "/api/v1/messages", json={"to": PHONE, "body": "only once"}, headers={"Idempotency-Key": "order-42"}
    )
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert gw.sim is not None
    assert gw.sim.network.phone(PHONE).texts() == ["only once"]


@pytest.mark.slow
async def test_stop_opts_out_and_start_opts_back_in(gw: Running) -> None:
    assert gw.sim is not None
    number = "+4917612345678"
    await gw.sim.inject(number, "Stop")
    await eventually(lambda: _inbound_has(gw, "Stop"))
    refused = await gw.send(to=number, body="marketing")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "opted_out"
    await gw.sim.inject(number, "START")
    await eventually(lambda: _inbound_has(gw, "START"))
    assert (await gw.send(to=number, body="welcome back")).status_code == 202


async def _inbound_has(gw: Running, text: str) -> bool:
    r = await gw.client.get("/api/v1/inbound")
    return any(m["body"] == text for m in r.json()["messages"])


@pytest.mark.slow
async def test_cancel_before_send(gw: Running) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    r = await gw.send(to=PHONE, body="maybe later", send_at=later)
    assert r.json()["status"] == "scheduled"
    c = await gw.client.post(f"/api/v1/messages/{r.json()['id']}/cancel")
    assert c.status_code == 200
    assert c.json()["status"] == "canceled"
    assert gw.sim is not None
    assert gw.sim.network.phone(PHONE).texts() == []


async def test_inbound_multipart_out_of_order_is_reassembled_and_removed_from_the_sim(gw: Running) -> None:
    assert gw.sim is not None
    text = "Привет! " * 30 + "😀"
    await gw.sim.inject(
        "+4917612345678", text, parts_order="reverse", smsc=["+491710760000", "+491710760001"]
    )
    doc = await eventually(lambda: _inbound_doc(gw, text))
    assert doc["from"] == "+4917612345678"
    assert doc["complete"] is True
    assert doc["parts"] >= 3
    await eventually(lambda: gw.sim is not None and gw.sim.state.storage["SM"].used == 0)


async def _inbound_doc(gw: Running, text: str) -> dict[str, Any] | None:
    r = await gw.client.get("/api/v1/inbound")
    return next((m for m in r.json()["messages"] if m["body"] == text), None)


@pytest.mark.slow
async def test_modem_absent_at_start_accepts_queues_and_becomes_ready(tmp_path: Path) -> None:
    sim_dir = tmp_path / "late"
    raw = gateway_config(tmp_path, str(sim_dir / "gsmmodem"))
    async with run_gateway(raw, None) as gw:
        r = await gw.send(to=PHONE, body="queued while the modem is missing")
        assert r.status_code == 202
        ready = await gw.client.get("/readyz")
        assert ready.status_code == 503
        sim = Simulator(sim_dir, "quectel-ec25", **SIM_TEST_TIMING)
        await sim.start()
        try:
            doc = await gw.final(r.json()["id"])
            assert doc["status"] == "delivered"
            assert (await gw.client.get("/readyz")).status_code == 200
        finally:
            await sim.stop()


@pytest.mark.slow
async def test_unplug_and_hang_mid_drain_lose_nothing(tmp_path: Path, sim: Simulator) -> None:
    raw = gateway_config(tmp_path, str(sim.primary_path))
    raw["modem"]["command_timeout_s"] = 0.5
    raw["modem"]["submit_timeout_s"] = 0.5
    async with run_gateway(raw, sim) as gw:
        await gw.gateway.modem_list[0][2].wait_ready(10)
        ids = [(await gw.send(to=PHONE, body=f"drain {i}")).json()["id"] for i in range(30)]
        await eventually(lambda: len(sim.network.phone(PHONE).inbox) >= 5)
        await sim.unplug()
        await asyncio.sleep(0.5)  # the modem is away for a while (the fault's duration, not a sync)
        await sim.replug()
        await eventually(lambda: len(sim.network.phone(PHONE).inbox) >= 15, timeout_s=20)
        sim.hang()
        await asyncio.sleep(1.5)  # hung for longer than the command timeouts (the fault's duration)
        sim.unhang()
        finals = [await gw.final(i, timeout_s=30) for i in ids]
    assert all(d["status"] == "delivered" for d in finals), [d["status"] for d in finals]
    received = sim.network.phone(PHONE).texts()
    assert set(received) == {f"drain {i}" for i in range(30)}
    duplicates = len(received) - len(set(received))
    print(f"unplug+hang drain: 30 messages, {duplicates} duplicate(s) at the phone")


@pytest.mark.slow
async def test_webhook_target_down_then_up_gets_every_event_signed(
    tmp_path: Path, sim: Simulator, fast_webhooks: None
) -> None:
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    received: list[dict[str, Any]] = []
    up = asyncio.Event()

    async def hook(request: Request) -> Response:
        if not up.is_set():
            return Response(status_code=503)
        body = await request.body()
        signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.{body.decode()}"
        expected = base64.b64encode(
            hmac.new(base64.b64decode(secret[6:]), signed.encode(), hashlib.sha256).digest()
        ).decode()
        assert request.headers["webhook-signature"] == f"v1,{expected}"
        received.append({"id": request.headers["webhook-id"], **json.loads(body)})
        return Response(status_code=204)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/hook", hook, methods=["POST"])]), port=port, log_level="warning"
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        raw = gateway_config(tmp_path, str(sim.primary_path))
        raw["webhooks"] = [{"url": f"http://127.0.0.1:{port}/hook", "secret": secret}]
        async with run_gateway(raw, sim) as gw:
            await gw.gateway.modem_list[0][2].wait_ready(10)
            ids = [(await gw.send(to=PHONE, body=f"hooked {i}")).json()["id"] for i in range(3)]
            for i in ids:
                await gw.final(i)
            await sim.inject("+4917612345678", "an answer")
            await eventually(lambda: _inbound_has(gw, "an answer"))
            started = time.monotonic()
            assert not received
            up.set()
            # accepted, attempt (sending), sent, delivered for each message, and one received.
            await eventually(lambda: len(received) >= 3 * 4 + 1, timeout_s=20)
            assert time.monotonic() - started < 20
    finally:
        server.should_exit = True
        await serving
    statuses = {(e["data"]["id"], e["data"]["status"]) for e in received if e["type"] == "message.status"}
    for i in ids:
        assert {(i, s) for s in ("queued", "sending", "sent", "delivered")} <= statuses
    assert any(e["type"] == "message.received" and e["data"]["body"] == "an answer" for e in received)
    assert len({e["id"] for e in received}) == len(received)  # no event delivered twice after success


@pytest.mark.slow
async def test_a_report_that_never_comes_ends_in_a_clear_final_state(tmp_path: Path, sim: Simulator) -> None:
    sim.network.set_policy(PHONE, lose=True)
    raw = gateway_config(tmp_path, str(sim.primary_path), dispatcher={"report_timeout_s": 1.0})
    async with run_gateway(raw, sim) as gw:
        await gw.gateway.modem_list[0][2].wait_ready(10)
        msg_id = (await gw.send(to=PHONE, body="report lost")).json()["id"]

        async def expired() -> dict[str, Any] | None:
            doc = await gw.message(msg_id)
            return doc if doc["final"] else None

        doc = await eventually(expired, timeout_s=15)
    assert doc["status"] == "sent"
    assert doc["delivery_report"] == "expired"
    assert "report_timeout" in kinds(doc)
