"""The ledger's backends as a fixture: every test that takes `ledger_url` runs on SQLite (a file)
and on PostgreSQL (a fresh database on the throwaway server of tests/support/postgres.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.postgres import PgServer, shared_server

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    return shared_server()


@pytest.fixture(params=BACKENDS)
async def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Where a test's ledger lives: a file path (SQLite) or a postgresql:// URL (dropped after)."""
    if request.param == "sqlite":
        yield str(tmp_path / "ledger.sqlite3")
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = await server.fresh_database()
    yield url
    await server.drop(url)
