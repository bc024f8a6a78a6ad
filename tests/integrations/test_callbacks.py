"""Per-message callbacks against real local receivers: policed on connect, never redirected, signed by
default, and one dead receiver delays only itself."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from appliance import webhooks
from modem.simulator import Simulator
from tests.integrations.receiver import Received, receiver
from tests.support.gateway import Running, gateway_config, run_gateway
from tests.support.waiting import eventually

TO = "+4915112345678"


@contextlib.asynccontextmanager
async def box(tmp_path: Path, sim: Simulator, **sections: dict[str, Any]) -> AsyncIterator[Running]:
    async with run_gateway(gateway_config(tmp_path, str(sim.primary_path), **sections), sim) as running:
        await running.gateway.modem_list[0][2].wait_ready(10)
        yield running


def statuses(requests: list[Received]) -> list[str]:
    return [json.loads(r.body)["data"]["status"] for r in requests]


async def outbox_errors(running: Running) -> list[str]:
    rows = await running.gateway.store.rdb.execute_fetchall(
        "SELECT last_error FROM webhook_outbox WHERE abandoned_at IS NOT NULL"
    )
    return [str(r[0]) for r in rows]


async def test_a_name_resolving_to_the_box_is_refused_on_connect(tmp_path: Path, sim: Simulator) -> None:
    """The request check sees only a name; the connect check sees the address (DNS rebinding)."""
    name = socket.gethostname()  # resolves to this box (loopback or its own address)
    async with receiver() as hook, box(tmp_path, sim) as gw:
        r = await gw.send(to=TO, body="rebind", status_callback=f"http://{name}:{hook.port}/hook")
        assert r.status_code == 202, r.text
        await gw.final(r.json()["id"])
        errors = await eventually(lambda: outbox_errors(gw), 10)
        assert "refused" in errors[0]
        assert hook.requests == []


@pytest.mark.slow
async def test_allow_cidr_admits_a_name_and_the_checked_address_is_the_one_called(
    tmp_path: Path, sim: Simulator
) -> None:
    name = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, socket.AF_INET)}
    allow = [f"{a}/32" for a in sorted(addresses)]
    async with receiver() as hook, box(tmp_path, sim, webhooks={"allow": allow}) as gw:
        r = await gw.send(to=TO, body="allowed", status_callback=f"http://{name}:{hook.port}/hook")
        assert r.status_code == 202, r.text
        await eventually(lambda: "delivered" in statuses(hook.requests), 15)
        assert hook.requests[0].headers["host"] == f"{name}:{hook.port}"  # the name, not the address


@pytest.mark.slow
async def test_redirects_are_not_followed(tmp_path: Path, sim: Simulator, fast_webhooks: None) -> None:
    async with (
        receiver() as inside,
        receiver(307, {"location": inside.url}) as bouncer,
        box(tmp_path, sim, webhooks={"allow": ["127.0.0.1/32"]}) as gw,
    ):
        r = await gw.send(to=TO, body="bounce", status_callback=bouncer.url)
        assert r.status_code == 202
        await eventually(lambda: len(bouncer.requests) >= 3, 15)  # a 307 is a failure: retried, not followed
        assert inside.requests == []


async def test_every_callback_is_signed_by_default(tmp_path: Path, sim: Simulator) -> None:
    """No [api] callback_secret: a secret made at first start, 0600 next to the ledger, signs everything."""
    async with receiver() as hook, box(tmp_path, sim, webhooks={"allow": ["127.0.0.1/32"]}) as gw:
        r = await gw.send(to=TO, body="signed", status_callback=hook.url)
        assert r.status_code == 202
        await eventually(lambda: "delivered" in statuses(hook.requests), 15)
    key_file = tmp_path / "callback.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    secret = key_file.read_text().strip()
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    for request in hook.requests:
        h = request.headers
        signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.{request.body.decode()}".encode()
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert h["webhook-signature"] == f"v1,{expected}"


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_a_dead_target_delays_only_itself(
    tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Receivers that accept and never answer hold their own queue, not another key's webhooks."""
    monkeypatch.setattr(webhooks, "REQUEST_TIMEOUT_S", 60.0)  # the dead target stays dead for the test
    async with (
        receiver(hang=True) as dead,
        receiver() as alive,
        box(tmp_path, sim, webhooks={"allow": ["127.0.0.1/32"]}) as gw,
    ):
        for i in range(8):  # many stuck webhooks: more than the relay delivers at once
            assert (await gw.send(to=TO, body=f"dead {i}", status_callback=dead.url)).status_code == 202
        await eventually(lambda: dead.requests, 10)
        r = await gw.send(to=TO, body="alive", status_callback=alive.url)
        assert r.status_code == 202
        # Delivered while the dead receiver still holds its first request unanswered.
        await eventually(lambda: "delivered" in statuses(alive.requests), 20)
        assert not dead.release.is_set()
        assert len(dead.requests) == 1  # its queue waits behind its one stuck request
