"""kill -9 of `smsgw serve` at random moments during a drain: nothing accepted is lost."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.store import Store
from modem.simulator import Simulator
from tests.modem.conftest import SIM_TEST_TIMING
from tests.system.conftest import eventually, gateway_config

MESSAGES = 300
KILLS = 6
# A routed status report that reaches the modem while the daemon is dead is gone (as on real
# modems with +CDS): such a message ends `sent` with `delivery_report: expired` after this.
REPORT_TIMEOUT_S = 5.0


def _toml(raw: dict[str, Any]) -> str:
    lines = []
    for section, values in raw.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # what we write must parse
    return text


class Daemon:
    """`smsgw serve` as a real subprocess."""

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


@pytest.mark.timeout(300)
async def test_kill_9_during_a_drain_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("SMSGW_CRASH_SEED", "7")))  # noqa: S311  (fault timing, not security)
    timing = {**SIM_TEST_TIMING, "submit_latency_s": 0.01}
    sim = Simulator(tmp_path / "sim", "quectel-ec25", **timing)
    await sim.start()
    raw = gateway_config(tmp_path, str(sim.primary_path), dispatcher={"report_timeout_s": REPORT_TIMEOUT_S})
    config_path = tmp_path / "smsgw.toml"
    config_path.write_text(_toml(raw))
    store = Store(raw["store"]["path"])
    await store.open()
    _rec, key = await store.create_key("crash", ["send", "read", "admin"])
    await store.close()
    daemon = Daemon(config_path, tmp_path / "serve.log")
    base = f"http://{raw['api']['listen']}"
    accepted: dict[int, str] = {}
    try:
        await daemon.start()
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=5
        ) as client:

            async def up() -> bool:
                try:
                    return (await client.get("/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            async def post_all() -> None:
                """A LAN app that retries with the same idempotency key until it gets an answer."""
                for i in range(MESSAGES):
                    while i not in accepted:
                        try:
                            r = await client.post(
                                "/api/v1/messages",
                                json={"to": f"+49151000{i % 50:05d}", "body": f"crash test {i}"},
                                headers={"Idempotency-Key": f"crash-{i}"},
                            )
                        except httpx.HTTPError:
                            await eventually(up, timeout_s=30)
                            continue
                        assert r.status_code in (200, 202), r.text
                        accepted[i] = r.json()["id"]

            await eventually(up, timeout_s=30)
            poster = asyncio.create_task(post_all())
            for _ in range(KILLS):
                await asyncio.sleep(rng.uniform(0.3, 1.5))  # a random moment: this is the fault's timing
                await daemon.kill9()
                await daemon.start()
                await eventually(up, timeout_s=30)
            await poster

            async def all_final() -> bool:
                for msg_id in accepted.values():
                    r = await client.get(f"/api/v1/messages/{msg_id}")
                    if r.status_code != 200 or not r.json()["final"]:
                        return False
                return True

            await eventually(all_final, timeout_s=120, interval_s=0.5)
            docs = [(await client.get(f"/api/v1/messages/{m}")).json() for m in accepted.values()]
            status = (await client.get("/api/v1/status")).json()
    finally:
        await daemon.stop()
        await sim.stop()
    assert len(accepted) == MESSAGES
    assert len(set(accepted.values())) == MESSAGES  # one message per idempotency key
    expired = [d for d in docs if d["status"] == "sent" and d["delivery_report"] == "expired"]
    assert all(d["status"] == "delivered" for d in docs if d not in expired), sorted(
        {d["status"] for d in docs}
    )
    received = [m.text for p in sim.network.phones.values() for m in p.inbox]
    wanted = {f"crash test {i}" for i in range(MESSAGES)}
    assert wanted <= set(received)
    duplicates = len(received) - len(set(received))
    flagged = sum(1 for d in docs if d["possible_duplicate"])
    print(
        f"\nkill -9 x{KILLS} during a {MESSAGES}-message drain: {MESSAGES} accepted, all at the phones, "
        f"{MESSAGES - len(expired)} delivered with a report, {len(expired)} final without one (report lost), "
        f"0 lost, {duplicates} duplicate(s) at the phones, {flagged} message(s) flagged possible_duplicate, "
        f"ambiguous parts counted {status['queue']['ambiguous_total']}"
    )
    # Every duplicate at a phone is one the ledger owned up to.
    assert duplicates <= status["queue"]["ambiguous_total"]
