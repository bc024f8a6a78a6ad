"""Boxes of a fleet on one PostgreSQL ledger: each a real `smsgw serve` subprocess with its own
simulated modem (here, in the test's process), `[store] url` on the throwaway server of
tests/support/postgres.py and its own files in its own directory. For the system tests and the
fleet benchmark."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from appliance.ledger import Store
from modem.simulator import Simulator
from tests.support.config_files import toml_text
from tests.support.gateway import gateway_config
from tests.support.simulators import SIM_TEST_TIMING
from tests.support.smsgw_process import Proc, until_ready
from tests.support.waiting import eventually


@dataclass
class PgBox:
    """One box: its name, simulator, daemon and API base URL."""

    name: str
    sim: Simulator
    proc: Proc
    base: str

    def texts(self) -> list[str]:
        """What the phones got through this box's modem (parts joined)."""
        return [m.text for p in self.sim.network.phones.values() for m in p.inbox]

    def submits(self) -> list[datetime]:
        """When the network accepted each part this box's modem submitted."""
        return [e.time for e in self.sim.network.log if e.kind == "submit"]

    def client(self, key: str, timeout_s: float = 30.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base, headers={"Authorization": f"Bearer {key}"}, timeout=timeout_s
        )


async def fleet_key(ledger: str | Path, scopes: Sequence[str] = ("send", "read", "admin")) -> str:
    """An API key in the shared ledger (a URL or a SQLite file): every box accepts it (keys live in
    the ledger)."""
    store = Store(ledger)
    await store.open()
    try:
        _rec, key = await store.create_key("fleet", list(scopes))
    finally:
        await store.close()
    return key


def ledger_store(ledger: str, home: Path) -> dict[str, str]:
    """The `[store]` table of a box on `ledger`: a PostgreSQL URL (the box's own files in `home`)
    or a SQLite file path."""
    if ledger.startswith(("postgresql://", "postgres://")):
        return {"url": ledger, "directory": str(home)}
    return {"path": ledger}


@contextlib.asynccontextmanager
async def pg_box(home: Path, url: str, name: str, **options: Any) -> AsyncIterator[PgBox]:
    """`smsgw serve` as box `name` (started_box), once ready."""
    async with started_box(home, url, name, **options) as box:
        await until_ready(box.base)
        yield box


@contextlib.asynccontextmanager
async def started_box(
    home: Path,
    url: str,
    name: str,
    *,
    lease_s: float = 5.0,
    timing: dict[str, Any] | None = None,
    modem: dict[str, Any] | None = None,
    sections: dict[str, dict[str, Any]] | None = None,
) -> AsyncIterator[PgBox]:
    """`smsgw serve` as box `name` on the PostgreSQL ledger at `url` (or, given a file path, on that
    SQLite ledger), with its own simulator (EC25 profile), just started (it may yet refuse to run);
    `timing` overrides SIM_TEST_TIMING, `modem` the [modem] keys, `sections` whole config tables."""
    home.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240  (once, before any loop work)
    sim = Simulator(home / "sim", "quectel-ec25", **{**SIM_TEST_TIMING, **(timing or {})})
    await sim.start()
    raw = gateway_config(
        home, str(sim.primary_path), fleet={"box": name, "lease_s": lease_s}, modem=modem or {}
    )
    for section, values in (sections or {}).items():
        raw.setdefault(section, {}).update(values)
    raw["store"] = ledger_store(url, home)
    config = home / "smsgw.toml"
    config.write_text(toml_text(raw))
    box = PgBox(name, sim, Proc("serve", config, home / "serve.log"), f"http://{raw['api']['listen']}")
    try:
        await box.proc.start()
        yield box
    finally:
        await box.proc.stop()
        await sim.stop()


@contextlib.asynccontextmanager
async def pg_fleet(root: Path, url: str, names: Sequence[str], **options: Any) -> AsyncIterator[list[PgBox]]:
    """Several boxes (started one after another: the first start migrates nothing, the template did)."""
    async with contextlib.AsyncExitStack() as stack:
        boxes = [await stack.enter_async_context(pg_box(root / n, url, n, **options)) for n in names]
        yield boxes


async def post_round_robin(
    boxes: Sequence[PgBox], key: str, bodies: Sequence[str], *, concurrency: int = 8, **fields: Any
) -> dict[str, tuple[str, str]]:
    """POST each body (to its own recipient) to box i mod n; body -> (message id, box posted to)."""
    clients = [b.client(key) for b in boxes]
    sem = asyncio.Semaphore(concurrency)
    ids: dict[str, tuple[str, str]] = {}

    async def post(i: int, body: str) -> None:
        n = i % len(boxes)
        async with sem:
            r = await clients[n].post(
                "/api/v1/messages", json={"to": f"+49151{i:08d}", "body": body, **fields}
            )
        if r.status_code != 202:
            raise AssertionError(f"POST {body!r} to box {boxes[n].name}: {r.status_code} {r.text[:200]}")
        ids[body] = (str(r.json()["id"]), boxes[n].name)

    try:
        await asyncio.gather(*(post(i, body) for i, body in enumerate(bodies)))
    finally:
        for c in clients:
            await c.aclose()
    return ids


async def count_status(box: PgBox, key: str, statuses: Sequence[str]) -> int:
    """How many messages of the whole ledger are in `statuses` (GET /api/v1/status on `box`)."""
    async with box.client(key) as c:
        by_status: dict[str, int] = (await c.get("/api/v1/status")).json()["queue"]["by_status"]
    return sum(by_status.get(s, 0) for s in statuses)


async def until_delivered(
    client: httpx.AsyncClient, ids: Sequence[str], timeout_s: float, interval_s: float = 0.2
) -> list[dict[str, Any]]:
    """Each message's document (GET /api/v1/messages/{id} through `client`), once all are delivered."""

    async def delivered() -> list[dict[str, Any]] | None:
        docs: list[dict[str, Any]] = [(await client.get(f"/api/v1/messages/{i}")).json() for i in ids]
        return docs if all(d["status"] == "delivered" for d in docs) else None

    docs: list[dict[str, Any]] = await eventually(delivered, timeout_s, interval_s)
    return docs
