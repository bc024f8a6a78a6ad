"""The ledger's backends as a fixture: every test that takes `ledger_url` runs on SQLite (a file)
and on PostgreSQL (a fresh database on the throwaway server of tests/support/postgres.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.postgres import PgServer, shared_server

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    return shared_server()


@pytest.fixture(params=BACKENDS)
async def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's ledger lives: a file path (SQLite) or a postgresql:// URL."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite3")
    server: PgServer = request.getfixturevalue("pg_server")
    return await server.fresh_database()
