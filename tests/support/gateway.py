"""The whole gateway in-process for a test: its config, start/stop, and an API client with a key."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from appliance.config import Config, from_dict
from appliance.daemon import Gateway
from appliance.ledger import Store
from modem.simulator import Simulator
from tests.support.ports import free_port
from tests.support.waiting import eventually


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

    async def received(self, body: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """The inbound object of the text `body`, once the gateway committed it (as this key sees it)."""

        async def find() -> dict[str, Any] | None:
            r = await self.client.get("/api/v1/inbound")
            return next((m for m in r.json()["messages"] if m["body"] == body), None)

        doc: dict[str, Any] = await eventually(find, timeout_s)
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


def fleet_config(
    tmp_path: Path, sims: Sequence[Simulator], names: Sequence[str], **sections: dict[str, Any]
) -> dict[str, Any]:
    """gateway_config with one `[[modems]]` table per simulator, named `names` in order."""
    raw = gateway_config(tmp_path, "unused", **sections)
    modem = raw.pop("modem")
    raw["modems"] = [
        {**modem, "port": str(sim.primary_path), "name": name} for sim, name in zip(sims, names, strict=True)
    ]
    return raw
