"""The running daemon applies [retention]: a final message older than messages_days disappears."""

from __future__ import annotations

from pathlib import Path

from appliance.ledger import NewMessage, Store
from modem.simulator import Simulator
from tests.support.gateway import gateway_config, run_gateway
from tests.support.waiting import eventually

DAY = 86400.0


async def test_the_daemon_forgets_old_messages_and_masks_old_numbers(tmp_path: Path, sim: Simulator) -> None:
    raw = gateway_config(
        tmp_path, str(sim.primary_path), retention={"messages_days": 365, "numbers_days": 90}
    )
    store = Store(raw["store"]["path"])
    await store.open()
    ids = []
    for body in ("a year and a day ago", "a hundred days ago"):
        msg, _ = await store.accept(
            NewMessage(to="+4915112345678", body=body, encoding="gsm7", segments=1), key_id=None, queue_max=10
        )
        await store.cancel(msg.id)
        ids.append(msg.id)
    # Test setup: age the two final messages (nothing else can make time pass in a ledger).
    for msg_id, days in zip(ids, (366, 100), strict=True):
        await store.db.execute(
            "UPDATE messages SET final_at = final_at - ? WHERE id = ?", (days * DAY, msg_id)
        )
    await store.close()
    async with run_gateway(raw, sim) as gw:

        async def purged() -> bool:
            return (await gw.client.get(f"/api/v1/messages/{ids[0]}")).status_code == 404

        await eventually(purged, 15)
        kept = await gw.message(ids[1])
        assert kept["to"] == "+49•••"
