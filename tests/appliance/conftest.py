"""Shared fixtures of tests/appliance: a real ledger on disk, real keys, a real HTTP client.

`FakeGateway` stands in for the running daemon's view of its modems (the modem side
is tested against the simulator elsewhere); the API's job is HTTP and the ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from appliance.api import create_app
from appliance.config import ApiConfig, Config, GatewayConfig
from appliance.ledger import Store
from modem.pdu import gsm7, ucs2
from modem.pdu.udh import Encoding, units_to_text

TEST_CONFIG = Config(
    gateway=GatewayConfig(name="test-gw", default_region="DE"),
    api=ApiConfig(max_body_bytes=16384, max_text_chars=500, queue_max=50),
)


def ready_modem(name: str = "gsm0", **overrides: Any) -> dict[str, Any]:
    """A modem as the daemon reports it when all is well."""
    modem: dict[str, Any] = {
        "name": name,
        "port": f"/dev/{name}",
        "state": "ready",
        "manufacturer": "Quectel",
        "model": "EC25",
        "revision": "EC25EFAR06A03M4G",
        "imei": "866758040000000",
        "sim": "ready",
        "iccid": "8949000000000000000",
        "operator": "Telekom.de",
        "registration": {"status": 1, "text": "registered, home network", "technology": "LTE"},
        "signal": {"dbm": -71, "bars": 4},
        "storage": {"memory": "ME", "used": 0, "total": 255},
        "last_error": None,
        "reopens": 0,
        "resets": 0,
    }
    modem.update(overrides)
    return modem


@dataclass
class FakeGateway:
    """The daemon's side of `GatewayView`, with facts a test sets directly."""

    modem_list: list[dict[str, Any]] = field(default_factory=lambda: [ready_modem()])
    is_ready: tuple[bool, str] = (True, "modem gsm0 registered; ledger writable")
    wakes: int = 0
    start: float = field(default_factory=lambda: time.time() - 120)
    fail_with: Exception | None = None

    def modems(self) -> list[dict[str, Any]]:
        if self.fail_with is not None:
            raise self.fail_with
        return [dict(m) for m in self.modem_list]

    def ready(self) -> tuple[bool, str]:
        return self.is_ready

    def wake(self) -> None:
        self.wakes += 1

    def started_at(self) -> float:
        return self.start


@pytest.fixture(autouse=True)
async def verify_no_lingering_tasks() -> AsyncIterator[None]:
    """Every task a test starts is finished by its end (aioesphomeapi)."""
    before = asyncio.all_tasks()
    yield
    lingering = asyncio.all_tasks() - before - {asyncio.current_task()}
    assert not lingering, f"tasks left running: {lingering}"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    ledger = Store(tmp_path / "ledger.sqlite3")
    await ledger.open()
    yield ledger
    await ledger.close()


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def app(store: Store, gateway: FakeGateway) -> Starlette:
    return create_app(store=store, config=TEST_CONFIG, gateway=gateway)


ClientFactory = Callable[[Starlette], Awaitable[httpx.AsyncClient]]


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


@dataclass(frozen=True)
class Keys:
    send: str
    read: str
    admin: str
    send_read: str
    revoked: str

    def auth(self, which: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, which)}"}


@pytest.fixture
async def keys(store: Store) -> Keys:
    _, send = await store.create_key("sender", ["send"])
    _, read = await store.create_key("reader", ["read_all"])  # sees every key's messages
    _, admin = await store.create_key("operator", ["admin"])
    _, send_read = await store.create_key("app", ["send", "read"])
    _, revoked = await store.create_key("old", ["send", "read", "admin"])
    assert await store.revoke_key("old") is not None
    return Keys(send=send, read=read, admin=admin, send_read=send_read, revoked=revoked)


def join_units(encoding: str, parts: list[bytes]) -> str:
    """Inbound reassembly as the daemon does it: join raw units, then decode once."""
    return units_to_text(b"".join(parts), Encoding(encoding))


def units(text: str, encoding: str = "gsm7") -> bytes:
    """Raw user data units of a text (unpacked GSM-7 codes or UTF-16BE)."""
    return gsm7.encode(text) if encoding == "gsm7" else ucs2.encode(text)
