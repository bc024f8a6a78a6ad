"""`smsgw serve` with its ledger on PostgreSQL (`[store] url`): a message posted over HTTP goes
through the simulated modem to `delivered`, recorded on the server."""

from __future__ import annotations

from pathlib import Path

import httpx

from appliance.ledger import Store
from modem.simulator import Simulator
from tests.support.config_files import toml_text
from tests.support.gateway import gateway_config
from tests.support.pg_fleet import fleet_key, ledger_store
from tests.support.postgres import PgServer
from tests.support.simulators import SIM_TEST_TIMING
from tests.support.smsgw_process import Proc, until_ready
from tests.support.waiting import eventually


async def test_serve_on_postgresql_delivers_a_posted_message(tmp_path: Path, pg_server: PgServer) -> None:
    url = await pg_server.fresh_database()
    sim = Simulator(tmp_path / "sim", **SIM_TEST_TIMING)
    await sim.start()
    raw = gateway_config(tmp_path, str(sim.primary_path))
    raw["store"] = ledger_store(url, tmp_path / "box")
    config_path = tmp_path / "smsgw.toml"
    config_path.write_text(toml_text(raw))
    key = await fleet_key(url, ("send", "read"))
    base = f"http://{raw['api']['listen']}"
    try:
        async with Proc("serve", config_path, tmp_path / "serve.log"):
            await until_ready(base)
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=5
            ) as client:
                posted = await client.post(
                    "/api/v1/messages", json={"to": "+4915112345678", "body": "from the fleet"}
                )
                assert posted.status_code == 202, posted.text
                msg_id = posted.json()["id"]

                async def delivered() -> bool:
                    got = await client.get(f"/api/v1/messages/{msg_id}")
                    return bool(got.json()["status"] == "delivered")

                await eventually(delivered, 30, interval_s=0.1)
    finally:
        await sim.stop()
    assert not (tmp_path / "ledger.sqlite3").exists()  # no SQLite ledger beside it
    reader = Store(url)
    await reader.open()
    try:
        msg = await reader.get(msg_id)
    finally:
        await reader.close()
    assert msg is not None
    assert msg.status.value == "delivered"
    assert [p.mr is not None for p in msg.parts] == [True]
