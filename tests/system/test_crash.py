"""kill -9 of `smsgw serve` at random moments during a drain: no message and no status report is lost."""

from __future__ import annotations

import asyncio
import os
import random
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.ledger import Store
from modem.simulator import Simulator
from tests.support.gateway import gateway_config
from tests.support.simulators import SIM_TEST_TIMING
from tests.support.smsgw_process import Proc
from tests.support.waiting import eventually

# The bar is kill -9 x 50 during a 200-message drain: about 3.5 min here (a restart of
# `smsgw serve` costs ~3 s of imports on a loaded box), so CI kills 10 times. The full run by hand:
# SMSGW_CRASH_KILLS=50 (SMSGW_CRASH_MESSAGES, SMSGW_CRASH_MODEL=sim800 for the CNMA path, too).
MESSAGES = int(os.environ.get("SMSGW_CRASH_MESSAGES", "200"))
KILLS = int(os.environ.get("SMSGW_CRASH_KILLS", "10"))
MODEL = os.environ.get("SMSGW_CRASH_MODEL", "quectel-ec25")
# Reports come 0.3..1.3 s after the submit (the emulator: 0.5 s), so many reach the
# modem while the daemon is dead: kept in SR (Quectel, ds=2) or re-sent by the network after
# a missing +CNMA (SIM800, CSMS=1). None may be lost: no message may stay `sent`.
REPORT_DELAY_S = 0.3
REPORT_JITTER_S = 1.0


def _toml(raw: dict[str, Any]) -> str:
    lines = []
    for section, values in raw.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # what we write must parse
    return text


@pytest.mark.slow
@pytest.mark.timeout(int(os.environ.get("SMSGW_CRASH_TIMEOUT_S", "240")))
async def test_kill_9_during_a_drain_loses_neither_messages_nor_reports(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("SMSGW_CRASH_SEED", "7")))  # noqa: S311  (fault timing, not security)
    timing = {
        **SIM_TEST_TIMING,
        "submit_latency_s": 0.01,
        "report_delay_s": REPORT_DELAY_S,
        "report_jitter_s": REPORT_JITTER_S,
        # The network waits for AT+CNMA as long as a real one (TR2M, 12 s at least: 24.011)
        # and re-sends 2 s after an RP-ERROR (real SCs wait minutes): CSMS=1 models only.
        "cnma_timeout_s": 12.0,
        "sc_retry_s": 2.0,
        "cnma_retries": 10,
    }
    sim = Simulator(tmp_path / "sim", MODEL, **timing)
    await sim.start()
    raw = gateway_config(tmp_path, str(sim.primary_path), dispatcher={"report_timeout_s": 3600.0})
    config_path = tmp_path / "smsgw.toml"
    config_path.write_text(_toml(raw))
    store = Store(raw["store"]["path"])
    await store.open()
    _rec, key = await store.create_key("crash", ["send", "read", "admin"])
    await store.close()
    daemon = Proc("serve", config_path, tmp_path / "serve.log")
    base = f"http://{raw['api']['listen']}"
    accepted: dict[int, str] = {}
    started = time.monotonic()
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
                await asyncio.sleep(rng.uniform(0.05, 0.8))  # a random moment: this is the fault's timing
                await daemon.kill9()
                await daemon.start()
                await eventually(up, timeout_s=30)
            await poster
            killed_for = time.monotonic() - started

            async def statuses() -> dict[str, int]:
                counts: dict[str, int] = {}
                for msg_id in accepted.values():
                    r = await client.get(f"/api/v1/messages/{msg_id}")
                    status = r.json()["status"] if r.status_code == 200 else "?"
                    counts[status] = counts.get(status, 0) + 1
                return counts

            async def all_delivered() -> bool:
                return (await statuses()).get("delivered", 0) == MESSAGES

            try:
                await eventually(all_delivered, timeout_s=60, interval_s=0.5)
            except TimeoutError:
                pytest.fail(f"not every message was delivered: {await statuses()}")
            docs = [(await client.get(f"/api/v1/messages/{m}")).json() for m in accepted.values()]
            status = (await client.get("/api/v1/status")).json()
    finally:
        await daemon.stop()
        await sim.stop()
    duration = time.monotonic() - started
    assert len(accepted) == MESSAGES
    assert len(set(accepted.values())) == MESSAGES  # one message per idempotency key
    assert all(d["status"] == "delivered" and d["delivery_report"] == "received" for d in docs)
    received = [m.text for p in sim.network.phones.values() for m in p.inbox]
    wanted = {f"crash test {i}" for i in range(MESSAGES)}
    assert wanted <= set(received)
    twice = {t for t in received if received.count(t) > 1}
    flagged = {d["body"] for d in docs if d["possible_duplicate"]}
    kept = sum(1 for e in sim.network.log if e.kind == "report") - len(docs)
    print(
        f"\nkill -9 x{KILLS} ({MODEL}) during a {MESSAGES}-message drain in {killed_for:.1f} s "
        f"(test {duration:.1f} s): 0 lost, {MESSAGES} delivered with their report, "
        f"0 reports lost ({status['queue']['reports_lost_total']} counted), "
        f"{len(received) - len(set(received))} duplicate(s) at the phones, all {len(twice)} among the "
        f"{len(flagged)} message(s) flagged possible_duplicate; {kept} extra report(s) for resent parts; "
        f"network re-sends after a missing +CNMA: {sum(1 for e in sim.network.log if e.kind == 'retransmit')}"
    )
    # Every text that reached a phone twice belongs to a message the ledger flagged.
    assert twice <= flagged
