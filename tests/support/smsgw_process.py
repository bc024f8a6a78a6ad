"""`smsgw <verb> --config F` as a real subprocess (serve, watchdog), its output in a log file."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import httpx

from tests.support.waiting import eventually


class Proc:
    """Start, SIGTERM-stop or SIGKILL one `smsgw <verb> --config F`; also an async context manager."""

    def __init__(self, verb: str, config_path: Path, log: Path) -> None:
        self.verb = verb
        self.config_path = config_path
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    def __repr__(self) -> str:
        return f"Proc({self.verb!r}, pid={self.proc.pid if self.proc else None})"

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "appliance.cli",
                self.verb,
                "--config",
                str(self.config_path),
                stdout=log,
                stderr=log,
            )

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def kill9(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)  # a SIGSTOPped one must run to take SIGTERM
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                await self.kill9()

    async def __aenter__(self) -> Proc:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def until_ready(base: str, timeout_s: float = 30.0) -> None:
    """Until the daemon at `base` answers GET /readyz with 200."""
    async with httpx.AsyncClient(base_url=base, timeout=2) as client:

        async def ready() -> bool:
            try:
                return (await client.get("/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, timeout_s, interval_s=0.1)
