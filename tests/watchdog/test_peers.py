"""Watchdogs of a fleet watch each other's boxes: a silent peer is one text, whoever watches."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.ledger import Store
from modem.simulator import Simulator
from tests.support.gateway import gateway_config
from tests.support.pg_fleet import ledger_store
from tests.support.postgres import PgServer
from tests.support.simulators import SIM_TEST_TIMING
from tests.support.waiting import eventually
from tests.support.watchdog_box import FAST_WATCHDOG, ONCALL, Box
from watchdog.facts import read_ledger
from watchdog.peers import PeerWatch

LEASE_S = 1
SILENT_S = 3.0


async def test_two_watchdogs_claim_a_silent_peer_once_and_its_claimant_resolves_it(ledger_url: str) -> None:
    """On a SQLite file and on a PostgreSQL database (`ledger_url` is parametrised)."""
    ledger = ledger_url
    peer = Store(ledger, box="c")
    await peer.open()
    try:
        t0 = time.time()
        await peer.register_box(LEASE_S, now=t0)
        watchers = [PeerWatch(str(ledger), me, me, SILENT_S) for me in ("a", "b")]
        assert [w.check(t0 + 1) for w in watchers] == [[], []]  # not silent long enough

        first = [w.check(t0 + SILENT_S + 1) for w in watchers]
        again = [w.check(t0 + SILENT_S + 2) for w in watchers]

        assert sum(len(n) for n in first) == 1
        assert again == [[], []]
        (news,) = [n for batch in first for n in batch]
        assert news.peer == "c"
        assert "fleet box c silent" in news.text
        claimant = watchers[0] if first[0] else watchers[1]

        await peer.register_box(LEASE_S)  # c is back
        back = {w.me: w.check(time.time()) for w in watchers}
        assert [n.text for n in back[claimant.me]] == [f"RESOLVED {claimant.me}: fleet box c beats again"]
        assert sum(len(v) for v in back.values()) == 1
    finally:
        await peer.close()


async def test_a_watchdog_judges_its_own_daemon_by_its_box_not_by_the_fleets_shared_heartbeat(
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    mine, other = Store(ledger, box="a"), Store(ledger, box="b")
    for store in (mine, other):
        await store.open()
    try:
        t0 = time.time()
        await mine.register_box(LEASE_S, now=t0 - 100)  # a's daemon stopped 100 s ago
        await other.register_box(LEASE_S)
        await other.heartbeat("serve", progress=True)  # b's daemon writes the shared row
    finally:
        for store in (mine, other):
            await store.close()
    facts = read_ledger(str(ledger), t0, "a")
    assert facts is not None
    assert facts.heartbeat_at == t0 - 100
    shared = read_ledger(str(ledger), t0)  # a box outside any fleet reads the `serve` row, as before
    assert shared is not None
    assert shared.heartbeat_at is not None
    assert shared.heartbeat_at >= t0


def test_a_ledger_without_the_fleet_schema_has_no_peers(tmp_path: Path) -> None:
    assert PeerWatch(str(tmp_path / "none.sqlite3"), "a", "a", SILENT_S).check(time.time()) == []


@contextlib.asynccontextmanager
async def fleet_box(tmp_path: Path, name: str, *, watchdog: bool, url: str = "") -> AsyncIterator[Box]:
    """Box `name` of a fleet on tmp_path/ledger.sqlite3 (or the PostgreSQL ledger at `url`): its
    simulator, daemon and (maybe) watchdog."""
    home = tmp_path / name
    home.mkdir()
    sim = Simulator(home / "sim", "quectel-ec25", **SIM_TEST_TIMING)
    await sim.start()
    assert sim.aux_path is not None
    wd = {
        **FAST_WATCHDOG,
        "port": str(sim.aux_path),
        "state_path": str(home / "watchdog.sqlite3"),
        "peer_silent_s": SILENT_S,
    }
    raw = gateway_config(tmp_path, str(sim.primary_path), gateway={"name": name}, watchdog=wd)
    raw["fleet"] = {"box": name, "lease_s": LEASE_S}
    if url:
        raw["store"] = ledger_store(url, home)
    box = Box.configured(sim, raw, home)
    try:
        await box.start(watchdog=watchdog)
        yield box
    finally:
        await box.stop()


def about_c(text: str) -> bool:
    return "fleet box c silent" in text


async def _killed_peer_texted_once(tmp_path: Path, url: str = "") -> None:
    """Boxes a and b with watchdogs, c without; c's daemon SIGKILLed: one text about c, from one of them."""
    async with (
        fleet_box(tmp_path, "a", watchdog=True, url=url) as a,
        fleet_box(tmp_path, "b", watchdog=True, url=url) as b,
        fleet_box(tmp_path, "c", watchdog=False, url=url) as c,
    ):
        await c.daemon.kill9()
        watchers = (a, b)

        def texts() -> list[str]:
            return [t for box in watchers for t in box.texts(ONCALL) if about_c(t)]

        await eventually(texts, 30, 0.05)
        for box in watchers:
            await box.cycles(4)  # both watchdogs went round twice more after the text
        assert len(texts()) == 1, texts()
        assert "taken over by box" in texts()[0]


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_killed_peer_is_texted_once_by_one_of_two_watchdogs(tmp_path: Path) -> None:
    store = Store(tmp_path / "ledger.sqlite3")
    await store.open()  # the schema, before three daemons race to create it
    await store.close()
    await _killed_peer_texted_once(tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_on_postgresql_a_killed_peer_is_texted_once_by_one_of_two_watchdogs(
    tmp_path: Path, pg_server: PgServer
) -> None:
    await _killed_peer_texted_once(tmp_path, await pg_server.fresh_database())
