"""`smsgw serve` as a real subprocess, its output in a log file (crash and disk-full tests)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path


class Daemon:
    """Start, SIGTERM-stop or SIGKILL one `smsgw serve --config F`; also an async context manager."""

    def __init__(self, config_path: Path, log: Path) -> None:
        self.config_path = config_path
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "appliance.cli",
                "serve",
                "--config",
                str(self.config_path),
                stdout=log,
                stderr=log,
            )

    async def kill9(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                await self.kill9()

    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
