"""The issue's Show for the SIM balance: the balance set below the floor through the simulator's
control interface, the daemon's scheduled USSD check reads it, and the real watchdog texts on-call."""

from __future__ import annotations

import httpx
import pytest

from modem.simulator import Simulator
from modem.simulator.control import create_app
from tests.support.waiting import eventually
from tests.support.watchdog_box import BoxFactory

pytestmark = pytest.mark.timeout(90)


async def low_balance(sim: Simulator) -> None:
    """What an operator's network says after the SIM ran nearly dry (POST /ussd on the control)."""
    transport = httpx.ASGITransport(app=create_app(sim))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as control:
        answer = await control.post("/ussd", json={"balance": 0.5})
    assert answer.status_code == 200, answer.text


@pytest.mark.slow
async def test_balance_below_the_floor_texts_oncall(box_factory: BoxFactory) -> None:
    ussd = {"first_check_after_s": 0.0, "alert_below": 5.0}
    async with box_factory(ussd=ussd, before_start=low_balance) as box:
        text = await box.wait_text(lambda t: "SIM balance" in t)
        assert text.startswith("box7: SIM balance 0.50 below 5.00")
        assert "top up the prepaid SIM" in text
        assert ("balance", None) in box.state_rows("SELECT subject, resolved_at FROM incidents")


@pytest.mark.slow
async def test_balance_above_the_floor_stays_quiet(box_factory: BoxFactory) -> None:
    ussd = {"first_check_after_s": 0.0, "alert_below": 0.4}
    async with box_factory(ussd=ussd, before_start=low_balance) as box:
        key = await box.create_key("read")
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=box.base, headers=headers) as client:

            async def checked() -> dict[str, object] | None:
                modem = (await client.get("/api/v1/status")).json()["modems"][0]
                balance: dict[str, object] | None = modem["balance"]
                return balance

            balance = await eventually(checked, 20, interval_s=0.1)
        assert balance["value"] == 0.5
        assert balance["below_floor"] is False
        await box.cycles(3)  # the watchdog has read that ledger since, and sent what it would
        assert not [t for t in box.texts() if "SIM balance" in t]
