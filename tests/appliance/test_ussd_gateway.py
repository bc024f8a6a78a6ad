"""USSD and the SIM balance through the real daemon on the simulator, over real HTTP: POST /api/v1/ussd,
the scheduled balance check in /api/v1/status, /metrics and the status page."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from modem.simulator import Simulator
from tests.support.gateway import Running, gateway_config, run_gateway
from tests.support.waiting import eventually


@contextlib.asynccontextmanager
async def checking(tmp_path: Path, sim: Simulator, **ussd: Any) -> AsyncIterator[Running]:
    """The daemon with its first balance check at once (`[ussd] first_check_after_s = 0`)."""
    raw = gateway_config(tmp_path, str(sim.primary_path), ussd={"first_check_after_s": 0.0, **ussd})
    async with run_gateway(raw, sim) as running:
        yield running


async def balance_of(gw: Running) -> dict[str, Any] | None:
    """The first modem's balance in /api/v1/status once a check was recorded."""
    balance: dict[str, Any] | None = (await gw.client.get("/api/v1/status")).json()["modems"][0]["balance"]
    return balance


async def test_admin_ussd_goes_through_the_daemons_modem(gw: Running) -> None:
    response = await gw.client.post("/api/v1/ussd", json={"code": "*100#"})
    assert response.status_code == 200, response.text
    assert response.json()["response"].startswith("Your balance is 12.34 EUR.")
    menu = await gw.client.post("/api/v1/ussd", json={"code": "*123#"})
    assert menu.json()["response"].startswith("Main menu")
    # The menu was closed (AT+CUSD=2): the next request is a fresh session, not a menu choice.
    again = await gw.client.post("/api/v1/ussd", json={"code": "*100#"})
    assert again.json()["response"].startswith("Your balance is 12.34 EUR.")


async def test_ussd_needs_an_admin_key(gw: Running) -> None:
    _rec, key = await gw.gateway.store.create_key("app", ["send", "read"])
    response = await gw.client.post(
        "/api/v1/ussd", json={"code": "*100#"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 403


async def test_scheduled_check_is_shown_in_status_metrics_and_page(tmp_path: Path, sim: Simulator) -> None:
    sim.ussd.update({"balance": 4.2})
    async with checking(tmp_path, sim, alert_below=5.0) as gw:
        balance = await eventually(lambda: balance_of(gw), 15, interval_s=0.05)
        assert balance["value"] == 4.2
        assert balance["below_floor"] is True
        assert balance["error"] is None
        assert balance["at"] == balance["checked_at"]
        metrics = (await gw.client.get("/metrics")).text
        assert 'smsgw_sim_balance{modem="modem"} 4.2' in metrics
        assert 'smsgw_sim_balance_checked_timestamp_seconds{modem="modem"}' in metrics
        async with httpx.AsyncClient(base_url=str(gw.client.base_url)) as browser:
            page = (await browser.get("/modem")).text
        assert "SIM balance" in page
        assert "4.20 (checked " in page
        assert "below the floor" in page


async def test_failed_check_is_shown_and_counted(tmp_path: Path, sim: Simulator) -> None:
    # An operator whose balance code is not *555#: its "UNKNOWN APPLICATION" holds no amount.
    async with checking(tmp_path, sim, balance_code="*555#") as gw:
        balance = await eventually(lambda: balance_of(gw), 15, interval_s=0.05)
        assert balance["value"] is None
        assert balance["error"] == "balance not found in response"
        assert balance["below_floor"] is False
        metrics = (await gw.client.get("/metrics")).text
        assert 'smsgw_sim_balance_check_failures_total{kind="not_found",modem="modem"} 1.0' in metrics
        assert "smsgw_sim_balance{" not in metrics
        async with httpx.AsyncClient(base_url=str(gw.client.base_url)) as browser:
            page = (await browser.get("/")).text
        assert "balance check failed: balance not found in response" in page


async def test_the_last_reading_survives_a_restart(tmp_path: Path, sim: Simulator) -> None:
    async with checking(tmp_path, sim) as gw:
        await eventually(lambda: balance_of(gw), 15, interval_s=0.05)
    sim.ussd.update({"balance": 7.5})
    raw = gateway_config(tmp_path, str(sim.primary_path), ussd={"check_every_s": 0})  # checks off
    async with run_gateway(raw, sim) as gw:
        balance = await balance_of(gw)
        assert balance is not None
        assert balance["value"] == 12.34  # the ledger's last reading, not asked again
