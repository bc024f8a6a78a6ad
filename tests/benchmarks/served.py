"""`smsgw serve` as a subprocess for a benchmark, with its simulators: its config written as TOML,
an API key in its ledger, started until ready (GET /readyz) and stopped, API clients with that
key, and the daemon's CPU time (its own and its children's) and memory (from /proc)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from modem.simulator import Simulator
from tests.support.config_files import toml_text
from tests.support.pg_fleet import fleet_key
from tests.support.smsgw_process import Proc, until_ready


def cpu_s(pid: int) -> float:
    """CPU time of process `pid` so far (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Served:
    """A benchmark's gateway: its files (smsgw.toml, serve.log) in `directory`. A subclass starts
    its simulators (`sims`), then `serve`s a config naming their ports; `stop` ends all."""

    def __init__(self, directory: Path, sims: list[Simulator]) -> None:
        self.directory = directory
        self.sims = sims
        self.daemon = Proc("serve", directory / "smsgw.toml", directory / "serve.log")
        self.base = ""
        self.key = ""

    async def serve(self, raw: dict[str, Any]) -> None:
        self.daemon.config_path.write_text(toml_text(raw))
        self.key = await fleet_key(raw["store"]["path"])
        self.base = f"http://{raw['api']['listen']}"
        await self.daemon.start()
        await until_ready(self.base)

    async def stop(self) -> None:
        await self.daemon.stop()
        for sim in self.sims:
            await sim.stop()

    def client(self, timeout_s: float = 30) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=timeout_s
        )

    @property
    def pid(self) -> int:
        assert self.daemon.proc is not None
        return self.daemon.proc.pid

    def cpu_s(self) -> float:
        return cpu_s(self.pid)

    def children_cpu_s(self) -> float:
        """CPU time of the daemon's child processes so far (its batch worker, appliance/batch_worker.py)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return sum(cpu_s(int(child)) for child in children)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0
