"""`smsgw serve` on PostgreSQL while the server stops mid-drain: messages are POSTed all along,
accepted into the box's spool while the server is down, and every accepted one is delivered,
once (the simulator's network log), when it is started again (appliance/ledger/spool.py)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appliance.ledger import Store
from appliance.ledger.dialect import fetch_all
from modem.simulator import Simulator
from tests.support.config_files import toml_text
from tests.support.gateway import gateway_config
from tests.support.pg_fleet import fleet_key, ledger_store
from tests.support.postgres import PgServer, running_server
from tests.support.simulators import SIM_TEST_TIMING
from tests.support.smsgw_process import Proc, until_ready
from tests.support.waiting import eventually

TO = "+4915112345678"
POST_EVERY_S = 0.05  # the client's pace (a load generator's, not a wait for anything)


@pytest.fixture(scope="module")
def own_server() -> Iterator[PgServer]:
    """A server of this module's own: the test stops it, which the shared one's users must not see."""
    server = running_server()
    yield server
    server.stop()


class Poster:
    """POSTs a message with a text of its own every POST_EVERY_S until stopped; keeps every 202."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.accepted: dict[str, str] = {}  # id -> text
        self.refused: collections.Counter[int] = collections.Counter()
        self.stop = asyncio.Event()
        self.n = 0

    async def run(self) -> None:
        while not self.stop.is_set():
            text = f"outage test {self.n}"
            self.n += 1
            try:
                got = await self.client.post("/api/v1/messages", json={"to": TO, "body": text})
            except httpx.HTTPError:
                self.refused[0] += 1
            else:
                if got.status_code == 202:
                    self.accepted[got.json()["id"]] = text
                else:
                    self.refused[got.status_code] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), POST_EVERY_S)

    async def until(self, accepted: int) -> None:
        await eventually(lambda: len(self.accepted) >= accepted, 30, interval_s=0.05)


async def _outage_keeps_every_message(tmp_path: Path, server: PgServer, outage_s: float) -> None:
    url = await server.fresh_database()
    sim = Simulator(tmp_path / "sim", **SIM_TEST_TIMING)
    await sim.start()
    raw = gateway_config(tmp_path, str(sim.primary_path))
    raw["store"] = ledger_store(url, tmp_path / "box")
    # The modem's pace: sending lasts into the outage ("mid-drain").
    raw["modem"]["rate_per_minute"] = 600.0
    config_path = tmp_path / "smsgw.toml"
    config_path.write_text(toml_text(raw))
    key = await fleet_key(url, ("send", "read"))
    base = f"http://{raw['api']['listen']}"
    halted = False
    try:
        async with (
            Proc("serve", config_path, tmp_path / "serve.log"),
            httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10
            ) as client,
        ):
            await until_ready(base)
            poster = Poster(client)
            posting = asyncio.create_task(poster.run())
            try:
                await poster.until(20)
                await eventually(lambda: _submits(sim) >= 3, 30, interval_s=0.05)
                before = len(poster.accepted)
                await asyncio.to_thread(server.halt)
                halted = True
                stopped_at = time.monotonic()

                async def spooling() -> bool:
                    status = (await client.get("/readyz")).json()
                    return "accepting into the local spool" in status["reason"]

                await eventually(spooling, 15, interval_s=0.1)
                await poster.until(before + 10)  # accepted while the server is down
                spooled_id = list(poster.accepted)[-1]
                got = await client.get(f"/api/v1/messages/{spooled_id}")  # read from the spool
                assert got.status_code == 200, got.text
                assert (got.json()["id"], got.json()["status"]) == (spooled_id, "queued")
                status = (await client.get("/api/v1/status")).json()
                assert status["verdict"]["state"] == "degraded"
                assert status["spool"]["sending_paused"] is True
                assert status["spool"]["messages"] >= 1  # a few of the 10 may have reached the server first
                assert any("accepting into the local spool" in r for r in status["verdict"]["reasons"])
                submits_during = _submits(sim)
                remaining = outage_s - (time.monotonic() - stopped_at)
                if remaining > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(poster.stop.wait(), remaining)  # the outage's length
                assert _submits(sim) == submits_during, "nothing is sent while the server is down"
                spooled = (await client.get("/readyz")).json()["reason"]
                await asyncio.to_thread(server.resume)
                halted = False
                back_at = time.monotonic()
                at_return = len(poster.accepted)
                await poster.until(at_return + 10)  # accepted again after the server's return
                poster.stop.set()
                await posting

                async def drained() -> bool:
                    status = (await client.get("/readyz")).json()
                    return "spool" not in status["reason"]

                await eventually(drained, 60, interval_s=0.1)
                drained_s = time.monotonic() - back_at

                async def all_delivered() -> bool:
                    return await _delivered(url, poster.accepted) == len(poster.accepted)

                await eventually(all_delivered, 120, interval_s=0.5)
            finally:
                poster.stop.set()
                await posting
    finally:
        if halted:
            await asyncio.to_thread(server.resume)
        await sim.stop()
    texts = [e.text for e in sim.network.log if e.kind == "submit"]
    duplicates = [t for t, n in collections.Counter(texts).items() if n > 1]
    assert not duplicates, f"sent twice: {duplicates[:5]}"
    assert set(texts) == set(poster.accepted.values()), "every accepted message sent, and nothing else"
    assert poster.refused == collections.Counter(), f"refused while the server was down: {poster.refused}"
    log = (tmp_path / "serve.log").read_text()
    assert log.count("the ledger's server is unreachable (") == 1, "the outage is one log line"
    assert "LedgerUnreachable" not in log, "never a traceback of the outage"
    print(
        f"\noutage {outage_s:g} s: {len(poster.accepted)} accepted ({at_return - before} while down: "
        f"{spooled!r}), spool drained {drained_s:.1f} s after the server's return, all delivered once"
    )


def _submits(sim: Simulator) -> int:
    return sum(1 for e in sim.network.log if e.kind == "submit")


async def _delivered(url: str, accepted: dict[str, str]) -> int:
    reader = Store(url)
    await reader.open()
    try:
        rows = await fetch_all(reader.rdb, "SELECT id FROM messages WHERE status = 'delivered'", ())
    finally:
        await reader.close()
    return len({r["id"] for r in rows} & set(accepted))


@pytest.mark.timeout(240)
async def test_server_stopped_mid_drain_loses_and_repeats_nothing(
    tmp_path: Path, own_server: PgServer
) -> None:
    await _outage_keeps_every_message(tmp_path, own_server, outage_s=3.0)


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_server_stopped_30_s_mid_drain_loses_and_repeats_nothing(
    tmp_path: Path, own_server: PgServer
) -> None:
    await _outage_keeps_every_message(tmp_path, own_server, outage_s=30.0)
