"""An undecodable PDU is quarantined (ledger, API, metrics), then deleted from the modem: never dropped silently."""

from __future__ import annotations

import httpx
import pytest

from tests.support.gateway import Running
from tests.support.waiting import eventually

# Truncated on purpose: an SMS-DELIVER cut inside its sender address, a status report cut after its recipient.
TRUNCATED_DELIVER = "0791947101670000040C9194716176"
TRUNCATED_REPORT = "0006D60B911326880736F4"


async def test_undecodable_pdus_are_listed_counted_and_freed(gw: Running) -> None:
    sim = gw.sim
    assert sim is not None
    stored = sim.inject_pdu(TRUNCATED_DELIVER)  # +CMTI: "SM",n
    report = sim.inject_pdu(TRUNCATED_REPORT, report=True)  # +CDSI: "SM",n although it sits in SR
    assert (stored.memory, report.memory) == ("SM", "SR")

    async def listed() -> list[dict[str, object]] | None:
        items: list[dict[str, object]] = (await gw.client.get("/api/v1/quarantine")).json()["items"]
        return items if len(items) == 2 else None

    items = await eventually(listed)
    # Deleted from the modem only after the commit; nothing left to fill SM/SR.
    await eventually(lambda: sim.state.storage["SM"].used == 0 and sim.state.storage["SR"].used == 0)
    by_pdu = {i["pdu"]: i for i in items}
    assert set(by_pdu) == {TRUNCATED_DELIVER, TRUNCATED_REPORT}
    assert (by_pdu[TRUNCATED_DELIVER]["memory"], by_pdu[TRUNCATED_DELIVER]["index"]) == ("SM", stored.index)
    assert (by_pdu[TRUNCATED_REPORT]["memory"], by_pdu[TRUNCATED_REPORT]["index"]) == ("SR", report.index)
    for item in items:
        assert set(item) == {"id", "at", "port", "memory", "index", "pdu", "reason"}
        assert item["port"] == str(sim.primary_path)
        assert "truncated" in str(item["reason"]).lower()

    # Paginated like the other lists, newest first.
    first = (await gw.client.get("/api/v1/quarantine", params={"limit": 1})).json()
    assert len(first["items"]) == 1
    assert first["next_cursor"]
    second = (
        await gw.client.get("/api/v1/quarantine", params={"limit": 1, "cursor": first["next_cursor"]})
    ).json()
    assert [i["id"] for i in first["items"] + second["items"]] == [i["id"] for i in items]
    assert second["next_cursor"] is None

    status = (await gw.client.get("/api/v1/status")).json()
    assert status["queue"]["quarantined_total"] == 2
    metrics = (await gw.client.get("/metrics")).text
    assert "smsgw_quarantined_pdus_total 2.0" in metrics
    assert "smsgw_reports_lost_total 0.0" in metrics


@pytest.mark.slow
async def test_quarantine_needs_the_admin_scope(gw: Running) -> None:
    _rec, reader = await gw.gateway.store.create_key("reader", ["read"])
    async with httpx.AsyncClient(
        base_url=f"http://{gw.config.api.listen}", headers={"Authorization": f"Bearer {reader}"}
    ) as client:
        r = await client.get("/api/v1/quarantine")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    bad = await gw.client.get("/api/v1/quarantine", params={"limit": "0"})
    assert bad.status_code == 422
