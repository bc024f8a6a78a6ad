"""`promtool check metrics` (Debian prometheus) accepts the live /metrics output."""

from __future__ import annotations

import asyncio

from tests.support.gateway import Running
from tests.support.system_tools import tool


async def test_promtool_accepts_live_metrics(gw: Running) -> None:
    r = await gw.send(to="+4915112345678", body="metrics")
    assert r.status_code == 202
    await gw.final(r.json()["id"])
    text = (await gw.client.get("/metrics")).text
    for name in (
        "smsgw_messages_total",
        "smsgw_sends_total",
        "smsgw_queue_depth",
        "smsgw_queue_oldest_age_seconds",
        "smsgw_modem_registered",
        "smsgw_webhook_backlog",
        "smsgw_watchdog_open_incidents",
    ):
        assert f"\n{name}" in text, name
    proc = await asyncio.create_subprocess_exec(
        tool("promtool"),
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate(text.encode())
    assert proc.returncode == 0, out.decode()
