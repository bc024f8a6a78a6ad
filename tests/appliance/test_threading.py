"""Reply threading (issue 13 item 4): a text from a phone answers the latest message the gateway sent
it within `[inbound] reply_window_s`; the API, the `message.received` webhook and the replies of a
message say so. The real daemon on the simulator over a pty, reached by real HTTP."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.config import ConfigError, from_dict
from modem.simulator import Simulator
from tests.integrations.receiver import receiver
from tests.support.gateway import Running, gateway_config, run_gateway
from tests.support.waiting import eventually

PHONE = "+4915112345678"
STRANGER = "+4917699988877"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def sent(gw: Running, key: str, body: str, to: str = PHONE) -> str:
    """Send over the API and wait until the network took it (the phone has it)."""
    r = await gw.client.post("/api/v1/messages", json={"to": to, "body": body}, headers=bearer(key))
    assert r.status_code == 202, r.text
    msg_id: str = r.json()["id"]
    doc = await gw.final(msg_id)
    assert doc["status"] in ("sent", "delivered"), doc
    return msg_id


async def replies(gw: Running, msg_id: str, key: str) -> httpx.Response:
    return await gw.client.get(f"/api/v1/messages/{msg_id}/replies", headers=bearer(key))


async def test_a_reply_threads_to_the_latest_of_two_messages_to_that_phone(
    tmp_path: Path, sim: Simulator
) -> None:
    async with receiver() as hook:
        raw = gateway_config(tmp_path, str(sim.primary_path))
        raw["webhooks"] = [{"url": hook.url, "events": ["message.received"]}]
        async with run_gateway(raw, sim) as gw:
            await gw.gateway.modem_list[0][2].wait_ready(10)
            store = gw.gateway.store
            _, alice = await store.create_key("alice", ["send", "read"])
            _, bob = await store.create_key("bob", ["send", "read"])
            m1 = await sent(gw, alice, "Server db1 down. Acknowledge?")
            m2 = await sent(gw, alice, "Server db1 still down, escalating")
            assert sim.network.phone(PHONE).texts()[-2:] == [
                "Server db1 down. Acknowledge?",
                "Server db1 still down, escalating",
            ]
            await sim.inject(PHONE, "on it")
            await sim.inject(STRANGER, "who is this?")
            reply = await gw.received("on it")
            assert reply["in_reply_to"] == m2  # the latest one, not the first
            assert (await gw.received("who is this?"))["in_reply_to"] is None  # never texted

            r = await replies(gw, m2, alice)
            assert r.status_code == 200, r.text
            assert [(m["id"], m["body"], m["in_reply_to"]) for m in r.json()["messages"]] == [
                (reply["id"], "on it", m2)
            ]
            assert r.json()["next_cursor"] is None
            assert (await replies(gw, m1, alice)).json()["messages"] == []
            assert [m["id"] for m in (await replies(gw, m2, gw.key)).json()["messages"]] == [reply["id"]]

            # Another tenant's read key: the message and its replies do not exist for it.
            for path in (f"/api/v1/messages/{m2}/replies", f"/api/v1/messages/{m2}"):
                r = await gw.client.get(path, headers=bearer(bob))
                assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
                assert "on it" not in r.text
            r = await gw.client.get("/api/v1/inbound", headers=bearer(bob))
            assert r.json()["messages"] == []
            r = await gw.client.get("/api/v1/inbound", headers=bearer(alice))
            assert [(m["body"], m["in_reply_to"]) for m in r.json()["messages"]] == [("on it", m2)]

            async def webhook() -> dict[str, Any] | None:
                for req in hook.requests:
                    doc: dict[str, Any] = json.loads(req.body)
                    if doc["type"] == "message.received" and doc["data"]["body"] == "on it":
                        return doc
                return None

            event = await eventually(webhook, 10)
            assert event["data"]["in_reply_to"] == m2
            assert event["data"]["id"] == reply["id"]


async def test_a_reply_after_the_window_answers_nothing(tmp_path: Path, sim: Simulator) -> None:
    window = 1.0
    raw = gateway_config(tmp_path, str(sim.primary_path), inbound={"reply_window_s": window})
    async with run_gateway(raw, sim) as gw:
        await gw.gateway.modem_list[0][2].wait_ready(10)
        msg_id = await sent(gw, gw.key, "Reply YES to confirm the visit")
        doc = await gw.message(msg_id)
        sent_at = doc["sent_at"]
        assert sent_at is not None
        at = datetime.fromisoformat(sent_at).timestamp()
        # The window is wall-clock time: wait until it has passed (a deadline, not a guess).
        await eventually(lambda: time.time() > at + window + 0.1, 5, interval_s=0.05)
        await sim.inject(PHONE, "YES")
        assert (await gw.received("YES"))["in_reply_to"] is None
        assert (await replies(gw, msg_id, gw.key)).json()["messages"] == []


@pytest.mark.parametrize(
    ("value", "message"),
    [(0, "inbound.reply_window_s: must be 1 to"), (10**9, "a year"), ("7d", "expected a number")],
)
def test_a_reply_window_out_of_range_is_a_config_error_naming_it(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict({"inbound": {"reply_window_s": value}})
    assert from_dict({}).inbound.reply_window_s == 604800
