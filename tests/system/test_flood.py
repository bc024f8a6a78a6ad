"""Slow and idle connections from a hostile LAN: /healthz keeps answering and the log stays small."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from modem.simulator import Simulator
from tests.support.config_files import toml_text
from tests.support.gateway import gateway_config, run_gateway
from tests.support.ports import free_port
from tests.support.waiting import eventually

IDLE_CONNECTIONS = 1100  # the finding: ~1,100 idle connections starved /healthz for 30 s
SYSTEMD_DEFAULT_NOFILE = 1024  # the soft limit a unit without LimitNOFILE gets


@contextlib.asynccontextmanager
async def serve_subprocess(tmp_path: Path, nofile: int) -> AsyncIterator[tuple[str, Path]]:
    """`smsgw serve` as its own process with the given descriptor limit (as systemd would start it)."""
    port = free_port()
    raw = {
        "modem": {"port": "sim"},
        "api": {"listen": f"127.0.0.1:{port}"},
        "store": {"path": str(tmp_path / "ledger.sqlite3")},
        "simulator": {"directory": str(tmp_path / "sim"), "control": ""},
    }
    config = tmp_path / "smsgw.toml"
    config.write_text(toml_text(raw))
    log = tmp_path / "serve.log"

    def limit() -> None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "appliance.cli",
            "serve",
            "--config",
            str(config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
            preexec_fn=limit,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            await eventually(lambda: _healthy(client, base), 30, 0.1)
        yield base, log
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)


async def _healthy(client: httpx.AsyncClient, base: str) -> bool:
    try:
        return (await client.get(f"{base}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def _open_idle(host: str, port: int, n: int) -> list[asyncio.StreamWriter]:
    """n connections that each send the start of a request and then nothing (slowloris)."""

    async def one() -> asyncio.StreamWriter | None:
        try:
            _reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return None  # the server may refuse while at its limit: that is its right
        writer.write(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        return writer

    writers: list[asyncio.StreamWriter] = []
    for start in range(0, n, 100):  # in waves, as a flood arrives
        wave = await asyncio.gather(*(one() for _ in range(start, min(n, start + 100))))
        writers.extend(w for w in wave if w is not None)
    return writers


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_idle_connections_do_not_stop_healthz_nor_flood_the_log(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * IDLE_CONNECTIONS + 100:  # the test's own end of every connection needs one too
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * IDLE_CONNECTIONS), hard))
    async with serve_subprocess(tmp_path, SYSTEMD_DEFAULT_NOFILE) as (base, log):
        port = int(base.rsplit(":", 1)[1])
        writers = await _open_idle("127.0.0.1", port, IDLE_CONNECTIONS)
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                await eventually(lambda: _healthy(client, base), 10, 0.05)
                answered = 0
                for _ in range(20):  # not one lucky answer: /healthz answers every time
                    answered += await _healthy(client, base)
                assert answered == 20
        finally:
            for writer in writers:
                writer.close()
        for _ in range(300):  # and garbage instead of HTTP: each one used to be a log line
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\x16\x03\x01 not http\r\n\r\n")
            await reader.read()
            writer.close()
        lines = log.read_text(errors="replace").splitlines()
    limit_lines = [line for line in lines if "connection limit" in line or "connections open" in line]
    assert len(limit_lines) <= 20, f"{len(limit_lines)} log lines about the idle connections"
    invalid = [line for line in lines if "Invalid HTTP request" in line]
    assert 0 < len(invalid) <= 20, f"{len(invalid)} log lines about invalid requests"
    assert sum(len(line) for line in lines) < 64_000


@pytest.mark.slow
async def test_a_request_that_never_completes_is_closed(tmp_path: Path, sim: Simulator) -> None:
    """A byte of header now and then keeps no connection open past [api] request_timeout_s."""
    raw = gateway_config(tmp_path, str(sim.primary_path), api={"request_timeout_s": 1.0})
    async with run_gateway(raw, sim) as gw:
        host, _, port = gw.config.api.listen.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))

        async def dribble() -> None:
            for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)  # the attack's pace, not synchronisation

        task = asyncio.create_task(dribble())
        try:
            closed = await asyncio.wait_for(reader.read(), 10)  # b"" once the server closes it
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
            writer.close()
        assert closed == b""
        r = await gw.client.get("/healthz")  # a complete request on a fresh connection is served
        assert r.status_code == 200


async def test_connections_past_the_cap_evict_the_oldest_idle(tmp_path: Path, sim: Simulator) -> None:
    raw = gateway_config(
        tmp_path, str(sim.primary_path), api={"max_connections": 40, "max_connections_per_client": 20}
    )
    async with run_gateway(raw, sim) as gw:
        host, _, port = gw.config.api.listen.rpartition(":")
        idle = [await asyncio.open_connection(host, int(port)) for _ in range(30)]
        try:
            # The first ten (the oldest idle) made room for the last ten.
            for reader, _writer in idle[:10]:
                assert await asyncio.wait_for(reader.read(), 5) == b""
            r = await gw.client.get("/healthz")
            assert r.status_code == 200
        finally:
            for _reader, writer in idle:
                writer.close()


async def test_at_the_global_cap_the_busiest_address_gives_way(tmp_path: Path, sim: Simulator) -> None:
    """A LAN app's idle keep-alive connections survive another host's flood."""
    raw = gateway_config(
        tmp_path, str(sim.primary_path), api={"max_connections": 30, "max_connections_per_client": 30}
    )
    async with run_gateway(raw, sim) as gw:
        host, _, port = gw.config.api.listen.rpartition(":")
        app = [await asyncio.open_connection(host, int(port), local_addr=("127.0.0.3", 0)) for _ in range(10)]
        flood = [
            await asyncio.open_connection(host, int(port), local_addr=("127.0.0.2", 0)) for _ in range(40)
        ]
        try:
            for reader, _writer in flood[:20]:  # the flood's oldest made room for its newest
                assert await asyncio.wait_for(reader.read(), 5) == b""
            for reader, writer in app:  # the app's connections are all still served
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 200")
        finally:
            for _reader, writer in app + flood:
                writer.close()
