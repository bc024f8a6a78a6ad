"""Per-modem series on /metrics (label `modem`): with two modems, each one's sends, failures,
state and last send, scraped over HTTP and checked against what each simulator's network got."""

from __future__ import annotations

from tests.support.gateway_fixtures import TwoModems
from tests.support.metrics_text import per_modem
from tests.support.simulators import submits
from tests.support.waiting import eventually


async def test_metrics_count_what_each_of_two_modems_sent(two_modems: TwoModems) -> None:
    gw, left, right = two_modems.gw, two_modems.left, two_modems.right
    left.cms_error(41, count=1)  # "temporary failure": that message is retried
    right.cms_error(1, count=1)  # "unassigned number": that message fails for good
    ids = []
    for i in range(12):
        r = await gw.send(to=f"+4915100071{i:03d}", body=f"per modem {i}")
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    docs = [await gw.final(msg_id) for msg_id in ids]
    assert sorted(d["status"] for d in docs).count("failed") == 1
    text = (await gw.client.get("/metrics")).text

    carried = {"left": float(len(submits(left))), "right": float(len(submits(right)))}
    assert all(carried.values()), f"both modems carry messages: {carried}"
    assert sum(carried.values()) == 11  # twelve messages, one refused for good
    assert per_modem(text, "smsgw_modem_parts_sent_total") == carried
    assert per_modem(text, "smsgw_modem_messages_sent_total") == carried
    assert per_modem(text, "smsgw_modem_messages_sent_last_hour") == carried  # from the ledger
    assert per_modem(text, "smsgw_modem_send_failures_total", result="transient") == {"left": 1, "right": 0}
    assert per_modem(text, "smsgw_modem_send_failures_total", result="permanent") == {"left": 0, "right": 1}
    assert per_modem(text, "smsgw_modem_messages_failed_last_hour") == {"left": 0, "right": 1}
    assert per_modem(text, "smsgw_modem_in_flight_messages") == {"left": 0, "right": 0}
    assert per_modem(text, "smsgw_modem_state", state="ready") == {"left": 1, "right": 1}
    assert per_modem(text, "smsgw_modem_state", state="disconnected") == {"left": 0, "right": 0}
    ages = per_modem(text, "smsgw_modem_last_send_age_seconds")
    assert set(ages) == {"left", "right"}
    assert all(0 <= age < 60 for age in ages.values()), ages


async def test_a_modem_that_sent_nothing_has_its_series_at_zero(two_modems: TwoModems) -> None:
    gw, right = two_modems.gw, two_modems.right
    await right.unplug()  # only the left modem can send

    async def right_is_down() -> bool:
        modems = (await gw.client.get("/api/v1/status")).json()["modems"]
        return bool(modems[1]["state"] != "ready")

    await eventually(right_is_down)
    r = await gw.send(to="+491510007200", body="left only")
    await gw.final(r.json()["id"])
    text = (await gw.client.get("/metrics")).text
    assert per_modem(text, "smsgw_modem_parts_sent_total") == {"left": 1, "right": 0}
    assert per_modem(text, "smsgw_modem_messages_sent_last_hour") == {"left": 1, "right": 0}
    assert per_modem(text, "smsgw_modem_state", state="ready") == {"left": 1, "right": 0}
    assert set(per_modem(text, "smsgw_modem_last_send_age_seconds")) == {"left"}
