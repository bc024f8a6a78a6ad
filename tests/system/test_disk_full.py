"""The ledger's disk fills up mid-drain (a small tmpfs, filled to the last byte): `smsgw serve`
as a real subprocess, the simulator on ptys, real HTTP.

Nothing accepted is lost, no part is left `sending`, a restart on the still full disk serves
(507 `storage_full`, /healthz, /readyz saying why; the heartbeat the watchdog reads stays fresh;
the admin can log in; no route answers 500), and once space is freed the drain ends with every
message delivered exactly once. Needs root to mount the tmpfs (CI runs as root):
without it the test fails, it does not skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from appliance.ledger import Store
from modem.simulator import Simulator
from tests.support.config_files import toml_text
from tests.support.gateway import gateway_config
from tests.support.ports import free_port
from tests.support.simulators import SIM_TEST_TIMING
from tests.support.smsgw_process import Proc
from tests.support.waiting import eventually
from tests.support.web_page import csrf_of, page_client
from watchdog.facts import read_ledger

MESSAGES = 40
DISK_BYTES = 24 * 1024 * 1024
RESERVE_BYTES = 2 * 1024 * 1024


@contextlib.contextmanager
def tmpfs(where: Path, size: int) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the disk-full test (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, name: str) -> None:
    """Take every free byte of the filesystem (down to the last page)."""
    fd = os.open(disk / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for block in (1 << 20, 1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * block)
    finally:
        os.close(fd)
    st = os.statvfs(disk)
    assert st.f_bavail == 0, "the disk is full"


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook target on loopback: (its URL, the events it got, each with its webhook-id)."""
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        received.append({"id": request.headers["webhook-id"], **json.loads(await request.body())})
        return Response(status_code=204)

    port = free_port()
    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        server.should_exit = True
        await serving


async def up(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def messages(http: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for msg_id in ids:
        r = await http.get(f"/api/v1/messages/{msg_id}")
        assert r.status_code == 200, r.text
        out.append(r.json())
    return out


async def assert_refuses_with_a_reason(http: httpx.AsyncClient) -> None:
    """507 storage_full with the reason; /healthz alive; /readyz and /api/v1/status say why."""
    r = await http.post("/api/v1/messages", json={"to": "+4915199999999", "body": "no room"})
    assert r.status_code == 507, r.text
    assert r.json()["error"]["code"] == "storage_full"
    assert "disk" in r.json()["error"]["message"]
    assert (await http.get("/healthz")).status_code == 200
    ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert "disk" in ready.json()["reason"]
    status = (await http.get("/api/v1/status")).json()
    assert status["verdict"]["state"] == "down"
    assert any("disk" in reason for reason in status["verdict"]["reasons"]), status["verdict"]


def no_part_lies(docs: list[dict[str, Any]]) -> None:
    """Every part is pending (never sent) or carries its MR: none is left `sending`, and none was
    at the stop (the restart would have found it and said `outcome_unknown`)."""
    for doc in docs:
        assert not [e for e in doc["events"] if e["type"] == "outcome_unknown"], [
            (e["at"][14:], e["type"], e["detail"]) for e in doc["events"]
        ]
        for part in doc["parts"]:
            assert part["status"] != "sending", (doc["id"], doc["status"], part)
            assert (part["status"] == "pending") == (part["mr"] is None), (doc["id"], part)
        assert doc["status"] in ("queued", "sent", "delivered"), (doc["id"], doc["status"], doc["events"])


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_disk_full_mid_drain_loses_nothing_and_a_restart_on_the_full_disk_serves(
    tmp_path: Path,
) -> None:
    sim = Simulator(tmp_path / "sim", "quectel-ec25", **{**SIM_TEST_TIMING, "submit_latency_s": 0.1})
    await sim.start()
    try:
        async with webhook_receiver() as (hook_url, hooks):
            with tmpfs(tmp_path / "disk", DISK_BYTES) as disk:
                raw = gateway_config(tmp_path, str(sim.primary_path))
                raw["webhooks"] = [{"url": hook_url, "events": ["message.status"]}]
                raw["store"] = {"path": str(disk / "ledger.sqlite3"), "reserve_bytes": RESERVE_BYTES}
                raw["dispatcher"]["report_timeout_s"] = 3600.0
                config = tmp_path / "smsgw.toml"
                config.write_text(toml_text(raw))
                store = Store(raw["store"]["path"], reserve_bytes=RESERVE_BYTES)
                await store.open()
                _rec, key = await store.create_key("test", ["send", "read", "admin"])
                await store.close()
                log = tmp_path / "serve.log"
                base = f"http://{raw['api']['listen']}"
                headers = {"Authorization": f"Bearer {key}"}
                async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
                    # 1. A drain; the disk fills up under it.
                    async with Proc("serve", config, log):
                        await eventually(lambda: up(http), 15)
                        await eventually(lambda: sim.snapshot()["sessions"], 15)
                        posted = await asyncio.gather(
                            *(
                                http.post(
                                    "/api/v1/messages", json={"to": f"+49151000{i:05d}", "body": f"m{i}"}
                                )
                                for i in range(MESSAGES)
                            )
                        )
                        assert [r.status_code for r in posted] == [202] * MESSAGES
                        ids = [r.json()["id"] for r in posted]
                        await eventually(lambda: len(submitted(sim)) >= 5, 15)
                        fill(disk, "filler-1")
                        problem = await eventually(lambda: _disk_problem(http), 15)
                        assert "full" in problem
                        await assert_refuses_with_a_reason(http)
                        await assert_heartbeat_fresh(raw["store"]["path"])
                        # The part in flight when the disk filled is recorded, a claimed one put back:
                        # the gateway settles with nothing `sending` (so a stop now leaves nothing ambiguous).
                        await eventually(lambda: _none_sending(http), 10)
                    sent_while_full = len(submitted(sim))  # the daemon is gone: no submit is in flight
                    assert sent_while_full < MESSAGES, "the disk filled mid-drain"
                    # 2. A restart while the disk is still full (the clean stop freed the WAL: take that too).
                    fill(disk, "filler-2")
                    async with Proc("serve", config, log) as daemon:
                        await eventually(lambda: up(http), 15)
                        await assert_refuses_with_a_reason(http)
                        assert daemon.proc is not None
                        assert daemon.proc.returncode is None
                        no_part_lies(await messages(http, ids))
                        assert len(submitted(sim)) == sent_while_full, (
                            "nothing is sent that could not be recorded"
                        )
                        await assert_heartbeat_fresh(raw["store"]["path"])
                        await assert_no_500_while_full(http, base, key, ids)
                        # 3. Space is freed: the gateway notices by itself and the drain completes.
                        (disk / "filler-1").unlink()
                        (disk / "filler-2").unlink()
                        await eventually(lambda: _all_delivered(http, ids), 30)
                        assert (await http.get("/readyz")).status_code == 200
                        r = await http.post(
                            "/api/v1/messages", json={"to": "+4915199999999", "body": "room again"}
                        )
                        assert r.status_code == 202, r.text
                        status = (await http.get("/api/v1/status")).json()
                        assert status["disk"]["problem"] is None
                        assert status["disk"]["reserve_bytes"] == RESERVE_BYTES, "the reserve is back"
                        # Every message's delivery reached the webhook target: none lost to the pause.
                        await eventually(lambda: _hooked_delivered(hooks) >= set(ids), 30)
    finally:
        await sim.stop()
    # Each message reached its phone exactly once: none lost, none resent.
    for i in range(MESSAGES):
        assert sim.network.phone(f"+49151000{i:05d}").texts() == [f"m{i}"]
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "webhooks to" not in text, "webhook workers stop quietly while the disk is full"
    twice = len(hooks) - len({h["id"] for h in hooks})
    print(f"disk full mid-drain: {len(hooks)} webhooks, {twice} sent twice")
    assert text.count("disk is full") <= 4, text  # said once per episode (and per start), not per write


async def assert_heartbeat_fresh(ledger: str) -> None:
    """The row the watchdog reads (watchdog.facts) is rewritten while the disk is full: no false
    "heartbeat stale" incident pages on-call while the daemon answers 507."""
    since = time.time()

    async def fresh() -> bool:
        facts = await asyncio.to_thread(read_ledger, ledger, time.time())
        return facts is not None and facts.heartbeat_at is not None and facts.heartbeat_at > since

    await eventually(fresh, 10)


async def assert_no_500_while_full(http: httpx.AsyncClient, base: str, key: str, ids: list[str]) -> None:
    """A cancel is refused with the reason (507, not a 500); the admin can log in (and a wrong
    secret is refused as ever) to see why the gateway is down."""
    queued = [d["id"] for d in await messages(http, ids) if d["status"] == "queued"]
    assert queued, "the disk filled mid-drain: some messages wait"
    r = await http.post(f"/api/v1/messages/{queued[0]}/cancel")
    assert r.status_code == 507, r.text
    assert r.json()["error"]["code"] == "storage_full"
    assert "disk" in r.json()["error"]["message"]
    async with await page_client(base) as page:
        token = csrf_of((await page.get("/login")).text)
        wrong = await page.post("/login", data={"password": "not-the-key", "csrf": token})
        assert wrong.status_code == 403, wrong.text
        token = csrf_of((await page.get("/login")).text)
        login = await page.post("/login", data={"password": key, "csrf": token})
        assert login.status_code == 303, login.text
        overview = await page.get("/")
        assert overview.status_code == 200
        assert "disk" in overview.text, "the logged-in admin sees why"


def _hooked_delivered(hooks: list[dict[str, Any]]) -> set[str]:
    return {h["data"]["id"] for h in hooks if h["data"].get("status") == "delivered"}


def submitted(sim: Simulator) -> list[Any]:
    return [e for e in sim.network.log if e.kind == "submit"]


async def _disk_problem(http: httpx.AsyncClient) -> str | None:
    problem: str | None = (await http.get("/api/v1/status")).json()["disk"]["problem"]
    return problem


async def _none_sending(http: httpx.AsyncClient) -> bool:
    doc = (await http.get("/api/v1/status")).json()
    return bool(doc["queue"]["by_status"]["sending"] == 0)


async def _all_delivered(http: httpx.AsyncClient, ids: list[str]) -> bool:
    return all(d["status"] == "delivered" for d in await messages(http, ids))


async def test_an_old_ledger_is_vacuumed_only_with_room_for_the_copy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full VACUUM writes a copy of the ledger: on a disk without 1.2 x its size free it is put
    off (one log line, nothing raised, the ledger untouched), and done once there is room."""
    with tmpfs(tmp_path / "disk", 16 * 1024 * 1024) as disk:
        path = disk / "ledger.sqlite3"
        # A ledger from before incremental vacuum (auto_vacuum NONE) with 4 MiB of freed pages.
        db = sqlite3.connect(path)
        db.execute("PRAGMA auto_vacuum=NONE")
        db.execute("CREATE TABLE old_rows (data BLOB)")
        db.executemany("INSERT INTO old_rows VALUES (?)", [(b"x" * 65536,) for _ in range(64)])
        db.commit()
        db.execute("DELETE FROM old_rows")
        db.commit()
        db.close()
        caplog.set_level(logging.INFO, logger="appliance.ledger.retention")
        store = Store(path, reserve_bytes=256 * 1024)
        await store.open()
        try:
            pages = await page_count(store)
            st = os.statvfs(disk)
            leave = 3 * 1024 * 1024  # less than 1.2 x the ledger
            with (disk / "filler").open("wb") as filler:
                os.posix_fallocate(filler.fileno(), 0, st.f_bavail * st.f_frsize - leave)
            assert await store.compact() == 0
            assert await page_count(store) == pages, "not compacted"
            assert "not compacted" in caplog.text
            (disk / "filler").unlink()
            assert await store.compact() > 0
            assert await page_count(store) < pages / 2, "compacted once there is room"
        finally:
            await store.close()


async def page_count(store: Store) -> int:
    rows = list(await store.db.execute_fetchall("PRAGMA page_count"))
    return int(rows[0][0])


async def test_heartbeats_on_a_full_disk_do_not_grow_the_wal(tmp_path: Path) -> None:
    """Critical writes on a full disk reuse the WAL in place: the heartbeat (every 2 s) keeps
    going for as long as the disk stays full, not until a few hundred of them used the room."""
    with tmpfs(tmp_path / "disk", 16 * 1024 * 1024) as disk:
        # Wanting a reserve no disk holds: the real full-disk state (only critical writes run).
        store = Store(disk / "ledger.sqlite3", reserve_bytes=1 << 50)
        await store.open()
        try:
            assert store.storage_problem is not None
            wal = disk / "ledger.sqlite3-wal"
            await store.heartbeat("serve", progress=True, detail="x" * 200)
            size = wal.stat().st_size
            for _ in range(200):
                await store.heartbeat("serve", progress=True, detail="x" * 200)
            assert wal.stat().st_size == size
        finally:
            await store.close()
