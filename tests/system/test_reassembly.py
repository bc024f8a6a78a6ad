"""Inbound multipart end to end: the daemon with its built-in simulator, driven over the
simulator's HTTP control interface, read back over the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import Running, gateway_config, run_gateway
from tests.support.ports import free_port
from tests.support.waiting import eventually

SENDER = "+4917612345678"
EIGHT = "The eight-bit one: " + "a" * 150
SIXTEEN = "The sixteen-bit one: " + "b" * 150


@pytest.mark.slow
async def test_an_8_bit_and_a_16_bit_reference_with_the_same_number_stay_two_messages(tmp_path: Path) -> None:
    control = f"127.0.0.1:{free_port()}"
    raw = gateway_config(
        tmp_path,
        "sim",
        simulator={
            "directory": str(tmp_path / "sim"),
            "control": control,
            "submit_latency_s": 0.0,
            "report_delay_s": 0.0,
        },
    )
    async with run_gateway(raw, None) as gw, httpx.AsyncClient(base_url=f"http://{control}") as sim:
        await gw.gateway.modem_list[0][2].wait_ready(10)

        async def inject(text: str, bits: int, order: list[int]) -> None:
            body = {"sender": SENDER, "text": text, "concat_bits": bits, "ref": 42, "parts_order": order}
            r = await sim.post("/inject", json=body)
            assert r.status_code == 200, r.text

        # Interleaved: first parts of both, then second parts, in the other order.
        await inject(EIGHT, 8, [1])
        await inject(SIXTEEN, 16, [1])
        await inject(SIXTEEN, 16, [2])
        await inject(EIGHT, 8, [2])
        got = await eventually(lambda: _inbound(gw, 2))
        stored = (await sim.get("/state")).json()
    assert sorted(m["body"] for m in got) == sorted([EIGHT, SIXTEEN])
    assert all(m["complete"] and m["parts"] == 2 and m["from"] == SENDER for m in got)
    assert stored["sim"]["storage"]["SM"]["used"] == 0, "every part was taken off the SIM"


async def _inbound(gw: Running, count: int) -> list[dict[str, Any]] | None:
    messages: list[dict[str, Any]] = (await gw.client.get("/api/v1/inbound")).json()["messages"]
    return messages if len(messages) >= count else None
