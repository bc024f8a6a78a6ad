"""POST /api/v1/ussd through a real app, the ledger's keys and audit trail, and the simulator's operator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from appliance import ussd_api
from appliance.api import exception_handlers
from appliance.ledger import Store
from modem.simulator import Simulator
from tests.support.api_fakes import ClientFactory, Keys
from tests.support.ussd_channel import Channel, simulated_channel


@pytest.fixture
async def simulated(tmp_path: Path) -> AsyncIterator[tuple[Simulator, Channel]]:
    async with simulated_channel(tmp_path / "sim", answer_timeout_s=0.5) as pair:
        yield pair


@pytest.fixture
async def http(
    store: Store, simulated: tuple[Simulator, Channel], client_for: ClientFactory
) -> httpx.AsyncClient:
    return await client_for(
        Starlette(
            routes=ussd_api.routes(store, simulated[1].ussd.send), exception_handlers=exception_handlers()
        )
    )


async def test_admin_gets_the_operators_answer_and_it_is_audited(
    http: httpx.AsyncClient, keys: Keys, store: Store
) -> None:
    response = await http.post("/api/v1/ussd", json={"code": "*100#"}, headers=keys.auth("admin"))
    assert response.status_code == 200
    assert response.json()["response"].startswith("Your balance is 12.34 EUR.")
    events = await store.list_audit()
    assert [(e.action, e.target) for e in events if e.action == "ussd"] == [("ussd", "*100#")]


async def test_only_admins_may_send_ussd(
    http: httpx.AsyncClient, keys: Keys, simulated: tuple[Simulator, Channel]
) -> None:
    sim = simulated[0]
    anonymous = await http.post("/api/v1/ussd", json={"code": "*100#"})
    sender = await http.post("/api/v1/ussd", json={"code": "*100#"}, headers=keys.auth("send_read"))
    assert (anonymous.status_code, sender.status_code) == (401, 403)
    assert not any("+CUSD" in line for _t, _r, line in sim.commands)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"code": '*100#",15;+CFUN=0'}, 422, "code: USSD code must start with"),
        ({"code": 100}, 422, "code: required, a string"),
        ({"code": "*100#", "modem": "x"}, 422, "modem: unknown field"),
        ({}, 422, "code: required"),
        (["*100#"], 422, "must be a JSON object"),
    ],
)
async def test_bad_requests_name_what_is_wrong(
    http: httpx.AsyncClient,
    keys: Keys,
    simulated: tuple[Simulator, Channel],
    body: object,
    status: int,
    message: str,
) -> None:
    sim = simulated[0]
    response = await http.post("/api/v1/ussd", json=body, headers=keys.auth("admin"))
    assert response.status_code == status
    assert message in response.json()["error"]["message"]
    assert not any("+CUSD" in line for _t, _r, line in sim.commands)


async def test_oversized_body_is_refused(http: httpx.AsyncClient, keys: Keys) -> None:
    body = '{"code": "*100#", "pad": "' + "x" * 2000 + '"}'
    response = await http.post(
        "/api/v1/ussd", content=body, headers={**keys.auth("admin"), "Content-Type": "application/json"}
    )
    assert response.status_code == 413


async def test_network_silence_is_a_504_and_unsupported_a_502(
    http: httpx.AsyncClient, keys: Keys, simulated: tuple[Simulator, Channel]
) -> None:
    sim = simulated[0]
    sim.ussd.update({"silent": True})
    silent = await http.post("/api/v1/ussd", json={"code": "*100#"}, headers=keys.auth("admin"))
    assert silent.status_code == 504
    assert silent.json()["error"]["code"] == "ussd_timeout"
    sim.ussd.update({"silent": False, "unknown": "unsupported"})
    refused = await http.post("/api/v1/ussd", json={"code": "*999#"}, headers=keys.auth("admin"))
    assert refused.status_code == 502
    assert "not supported" in refused.json()["error"]["message"]


async def test_no_modem_is_a_503(store: Store, keys: Keys, client_for: ClientFactory) -> None:
    http = await client_for(
        Starlette(routes=ussd_api.routes(store, None), exception_handlers=exception_handlers())
    )
    response = await http.post("/api/v1/ussd", json={"code": "*100#"}, headers=keys.auth("admin"))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "modem_unavailable"
