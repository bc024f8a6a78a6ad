"""Fixtures for whole-gateway tests: the real daemon, the real simulator on ptys, real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance import webhooks
from appliance.config import Config, from_dict
from appliance.daemon import Gateway
from appliance.ledger import Store
from modem.simulator import Simulator
from tests.modem.conftest import SIM_TEST_TIMING


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(predicate: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.02) -> Any:
    """Poll an async or sync predicate until truthy; fail at the deadline."""
    async with asyncio.timeout(timeout_s):
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(interval_s)


@dataclass
class Running:
    gateway: Gateway
    sim: Simulator | None
    client: httpx.AsyncClient
    config: Config
    key: str

    async def send(self, **body: Any) -> httpx.Response:
        return await self.client.post("/api/v1/messages", json=body)

    async def message(self, msg_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/api/v1/messages/{msg_id}")
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc

    async def final(self, msg_id: str, timeout_s: float = 15.0) -> dict[str, Any]:
        """Wait for the message to reach a final state (a final status, or `sent` whose report never came)."""

        async def done() -> dict[str, Any] | None:
            doc = await self.message(msg_id)
            return doc if doc["final"] else None

        result: dict[str, Any] = await eventually(done, timeout_s)
        return result


def gateway_config(tmp_path: Path, port: str, **sections: dict[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "modem": {"port": port, "rate_per_minute": 6000.0, "command_timeout_s": 2.0, "submit_timeout_s": 5.0},
        "api": {"listen": f"127.0.0.1:{free_port()}"},
        "store": {"path": str(tmp_path / "ledger.sqlite3")},
        "dispatcher": {"backoff_base_s": 0.05, "backoff_max_s": 0.2, "per_recipient_per_minute": 1000.0},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw


@pytest.fixture
def fast_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhook retries in tens of milliseconds instead of seconds (the mechanism is the same)."""
    monkeypatch.setattr(webhooks, "BACKOFF_BASE_S", 0.05)
    monkeypatch.setattr(webhooks, "BACKOFF_MAX_S", 0.2)


@contextlib.asynccontextmanager
async def run_gateway(raw: dict[str, Any], sim: Simulator | None) -> AsyncIterator[Running]:
    config = from_dict(raw)
    store = Store(config.store.path)
    await store.open()
    _rec, key = await store.create_key("test", ["send", "read", "admin"])
    await store.close()
    gateway = Gateway(config)
    task = asyncio.create_task(gateway.run(handle_signals=False))
    try:
        async with asyncio.timeout(15):
            waiter = asyncio.create_task(gateway.serving.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                waiter.cancel()
                task.result()
        host_port = config.api.listen
        async with httpx.AsyncClient(
            base_url=f"http://{host_port}", headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as client:
            yield Running(gateway, sim, client, config, key)
    finally:
        gateway.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    simulator = Simulator(tmp_path / "sim", "quectel-ec25", **SIM_TEST_TIMING)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def gw(tmp_path: Path, sim: Simulator) -> AsyncIterator[Running]:
    async with run_gateway(gateway_config(tmp_path, str(sim.primary_path)), sim) as running:
        await running.gateway.modem_list[0][2].wait_ready(10)
        yield running


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def toml_text(raw: dict[str, Any]) -> str:
    """A config dict as TOML: [section] tables and [[array]] tables (what `smsgw --config` reads)."""
    lines: list[str] = []
    for section, values in raw.items():
        tables = values if isinstance(values, list) else [values]
        for table in tables:
            lines.append(f"[[{section}]]" if isinstance(values, list) else f"[{section}]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
            lines.append("")
    text = "\n".join(lines)
    assert tomllib.loads(text) == raw, "the TOML written must read back as the same config"
    return text
