"""The `smsgw` command as an operator runs it, as a real subprocess, and the gateway it talks to."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass

import httpx

from tests.support.gateway import Running


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


async def smsgw(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> Result:
    """Run the CLI without blocking the event loop: the in-process gateway keeps serving meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "appliance.cli",
        *args,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "SMSGW_API_KEY"} | (env or {}),
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@dataclass
class Box:
    """A running gateway and the config file an operator would point the CLI at."""

    gw: Running
    config: str

    @property
    def base(self) -> str:
        return f"http://{self.gw.config.api.listen}"

    async def get(self, key: str, path: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as client:
            return await client.get(path, headers={"Authorization": f"Bearer {key}"})


def config_check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`smsgw config check ARGS` (a blocking run: for sync tests with no gateway in-process)."""
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", "config", "check", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )
