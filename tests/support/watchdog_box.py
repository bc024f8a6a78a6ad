"""A simulated box for watchdog tests: the simulator in-process (ptys), `smsgw serve` and
`smsgw watchdog` as real subprocesses configured by a TOML file as on a box, and the on-call
phone's view."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modem.simulator import Simulator
from tests.support.cli import smsgw
from tests.support.config_files import toml_text
from tests.support.smsgw_process import Proc, until_ready
from tests.support.waiting import eventually

ONCALL = "+4915112345678"
STRANGER = "+4917699999999"
PIN = "58213947"  # 6+ digits: `config check` refuses shorter ones

# Short thresholds, set by config the way an operator would: nothing else differs from a box.
FAST_WATCHDOG: dict[str, Any] = {
    "oncall": [ONCALL],
    "pin": PIN,
    "cycle_s": 0.3,
    "heartbeat_stale_s": 3.0,
    "healthz_timeout_s": 1.0,
    "healthz_fail_s": 1.0,
    "modem_down_s": 2.0,
    "repeat_s": 3600.0,
    "cap_per_hour": 20,
    "alive_at": "",
    "restart_command": ["true"],
    # The host's disk is not the box under test: a CI machine 95 % full must not add a disk alert.
    "disk_free_floor_ratio": 0.0,
}


@dataclass
class Box:
    """A simulated box: modem, daemon, watchdog, and the on-call phone's view."""

    sim: Simulator
    raw: dict[str, Any]
    daemon: Proc
    watchdog: Proc
    tmp: Path

    @classmethod
    def configured(cls, sim: Simulator, raw: dict[str, Any], home: Path) -> Box:
        """The box of config `raw`, written to home/smsgw.toml as on a box; its logs beside it."""
        config_path = home / "smsgw.toml"
        config_path.write_text(toml_text(raw))
        serve = Proc("serve", config_path, home / "serve.log")
        return cls(sim, raw, serve, Proc("watchdog", config_path, home / "watchdog.log"), home)

    async def start(self, *, watchdog: bool = True) -> None:
        """The daemon until ready, then (maybe) the watchdog until it has named its box."""
        await self.daemon.start()
        await self.daemon_ready()
        if watchdog:
            await self.watchdog.start()
            await self.watchdog_log(f"watchdog of {self.raw.get('gateway', {}).get('name', '')}")

    async def stop(self) -> None:
        await self.watchdog.stop()
        await self.daemon.stop()
        await self.sim.stop()

    @property
    def base(self) -> str:
        return f"http://{self.raw['api']['listen']}"

    def texts(self, number: str = ONCALL) -> list[str]:
        return self.sim.network.phone(number).texts()

    async def wait_text(self, predicate: Any, timeout_s: float = 30.0, number: str = ONCALL) -> str:
        """The first text at `number` for which predicate(text) holds."""

        def found() -> str | None:
            return next((t for t in self.texts(number) if predicate(t)), None)

        text: str = await eventually(found, timeout_s, interval_s=0.05)
        return text

    async def daemon_ready(self, timeout_s: float = 30.0) -> None:
        await until_ready(self.base, timeout_s)

    def state_rows(self, sql: str) -> list[tuple[Any, ...]]:
        path = self.tmp / "watchdog.sqlite3"
        if not path.exists():
            return []
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    async def cycles(self, n: int = 2, timeout_s: float = 20.0) -> None:
        """Until the running watchdog has begun `n` more cycles: each applies the status page's ACK
        requests, here one for no incident (a no-op), so `n` = 2 spans one whole cycle, sends included."""
        path = self.tmp / "watchdog.sqlite3"
        for _ in range(n):
            db = sqlite3.connect(path, isolation_level=None, timeout=5)
            try:
                request = db.execute(
                    "INSERT INTO ack_requests (incident_id, at, by) VALUES (0, 0, 'test')"
                ).lastrowid
            finally:
                db.close()

            def applied(request: int | None = request) -> bool:
                rows = self.state_rows(f"SELECT applied_at FROM ack_requests WHERE id = {request}")  # noqa: S608
                return bool(rows) and rows[0][0] is not None

            await eventually(applied, timeout_s, 0.05)

    async def watchdog_log(self, needle: str, timeout_s: float = 20.0, *, times: int = 1) -> None:
        """Until `needle` is in the watchdog's log (`times` times: once per start, say)."""

        def found() -> bool:
            return self.watchdog.log.read_text(errors="replace").count(needle) >= times

        await eventually(found, timeout_s, 0.05)

    async def create_key(self, scope: str) -> str:
        """`smsgw keys create` as an operator runs it; the key as printed."""
        result = await smsgw(
            "keys",
            "create",
            "--config",
            str(self.daemon.config_path),
            "--name",
            f"k-{scope}",
            "--scope",
            scope,
        )
        assert result.returncode == 0
        return result.stdout.strip()


BoxFactory = Callable[..., contextlib.AbstractAsyncContextManager[Box]]
