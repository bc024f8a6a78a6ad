"""A throwaway PostgreSQL server for the tests: initdb into a temporary directory, listening on a
free port of 127.0.0.1 (trust authentication) and a socket in that directory; one database per test,
copied from a template the ledger's migrations already ran on (CREATE DATABASE ... TEMPLATE).

Needs Debian's `postgresql` package (Makefile APT_PACKAGES): missing binaries fail, never skip.
PostgreSQL refuses to run as root: as root, its programs run as the `postgres` system user.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import itertools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from appliance.ledger import Store
from tests.support.ports import free_port

TEMPLATE = "ledger_template"


def bindir() -> Path:
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install the `postgresql` package"
    )


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PgServer:
    directory: Path
    port: int
    options: str = ""  # the server's start options (resume() starts it again with them)
    _names: itertools.count[int] = field(default_factory=itertools.count)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def fresh_database(self, template: str = TEMPLATE) -> str:
        """A new empty-ledger database (a copy of the migrated template): its URL."""
        name = f"ledger_{os.getpid()}_{next(self._names)}"
        await self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    async def drop(self, url: str) -> None:
        """Drop a database `fresh_database` made (its connections cut): a run of the ledger suite
        makes hundreds, ~7 MB each, which would otherwise stay on disk until the server stops."""
        name = url.rsplit("/", 1)[1]
        await self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def halt(self) -> None:
        """Stop the server (its data kept: `resume` starts it again): an outage of the ledger."""
        subprocess.run(
            _as_server_user(
                [str(bindir() / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop"]
            ),
            capture_output=True,
            check=True,
        )

    def resume(self) -> None:
        """Start a halted server again on the same port (returns once it takes connections)."""
        _pg_start(self.directory, self.options)

    def stop(self) -> None:
        subprocess.run(
            _as_server_user(
                [str(bindir() / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate", "stop"]
            ),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


def start_server(*, durable: bool = False) -> PgServer:
    """initdb and start a server (fsync off unless `durable`: a test database need not survive a
    power cut; a benchmark's must, as a production server's)."""
    bins = bindir()
    directory = Path(tempfile.mkdtemp(prefix="smsgw-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    data = directory / "data"
    subprocess.run(
        _as_server_user(
            [
                str(bins / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        capture_output=True,
        check=True,
    )
    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    _pg_start(directory, options)
    return PgServer(directory, port, options)


def _pg_start(directory: Path, options: str) -> None:
    subprocess.run(
        _as_server_user(
            [
                str(bindir() / "pg_ctl"),
                "-D",
                str(directory / "data"),
                "-l",
                str(directory / "log"),
                "-w",
                "-o",
                options,
                "start",
            ]
        ),
        capture_output=True,
        check=True,
    )


async def make_template(server: PgServer) -> None:
    """The template database: an opened (migrated) ledger, so each test's copy opens at once."""
    await server.admin(f'CREATE DATABASE "{TEMPLATE}"')
    store = Store(server.url(TEMPLATE))
    await store.open()
    await store.close()


def running_server() -> PgServer:
    server = start_server()
    try:
        # In a thread of its own: the first caller may be inside a running event loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, make_template(server)).result()
    except BaseException:
        server.stop()
        raise
    return server


_SHARED: list[PgServer] = []


def shared_server() -> PgServer:
    """This process's server, started on first use and stopped at exit (fixtures and the
    hypothesis state machines, which cannot take fixtures, share it)."""
    if not _SHARED:
        _SHARED.append(running_server())
        atexit.register(_SHARED[0].stop)
    return _SHARED[0]
