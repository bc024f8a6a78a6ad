"""Shared fixtures of tests/appliance: a real ledger on disk, real keys, a real HTTP client
(the stand-in daemon, `FakeGateway`, is in tests/support/api_fakes.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from appliance.api import create_app
from appliance.ledger import Store
from tests.support.api_fakes import TEST_CONFIG, ClientFactory, FakeGateway, Keys, as_view


@pytest.fixture(autouse=True)
async def verify_no_lingering_tasks() -> AsyncIterator[None]:
    """Every task a test starts is finished by its end (aioesphomeapi)."""
    before = asyncio.all_tasks()
    yield
    lingering = asyncio.all_tasks() - before - {asyncio.current_task()}
    assert not lingering, f"tasks left running: {lingering}"


@pytest.fixture
async def store(ledger_url: str) -> AsyncIterator[Store]:
    ledger = Store(ledger_url)
    await ledger.open()
    yield ledger
    await ledger.close()


@pytest.fixture
async def file_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A SQLite ledger, for what only a ledger on this box's disk has (free space, the reserve)."""
    ledger = Store(tmp_path / "ledger.sqlite3")
    await ledger.open()
    yield ledger
    await ledger.close()


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def app(store: Store, gateway: FakeGateway) -> Starlette:
    return create_app(store=store, config=TEST_CONFIG, gateway=as_view(gateway))


@pytest.fixture
async def client_for() -> AsyncIterator[ClientFactory]:
    """`await client_for(app)`: an httpx client on the app's ASGI interface, closed at teardown."""
    clients: list[httpx.AsyncClient] = []

    async def make(app: Starlette) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def client(app: Starlette, client_for: ClientFactory) -> httpx.AsyncClient:
    return await client_for(app)


@pytest.fixture
async def keys(store: Store) -> Keys:
    return await make_keys(store)


@pytest.fixture
async def file_keys(file_store: Store) -> Keys:
    return await make_keys(file_store)


async def make_keys(store: Store) -> Keys:
    _, send = await store.create_key("sender", ["send"])
    _, read = await store.create_key("reader", ["read_all"])  # sees every key's messages
    _, admin = await store.create_key("operator", ["admin"])
    _, send_read = await store.create_key("app", ["send", "read"])
    _, revoked = await store.create_key("old", ["send", "read", "admin"])
    assert await store.revoke_key("old") is not None
    return Keys(send=send, read=read, admin=admin, send_read=send_read, revoked=revoked)
