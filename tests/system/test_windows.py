"""Send windows seen from outside: real HTTP to the real daemon on the simulator, keys made with the
real `smsgw keys` command. A message outside its window waits as `scheduled` with the reason in its
timeline and send_at at the opening; inside it goes; a key may let its `high` messages bypass.

The real clock cannot be moved: the windows here are built around the present instant (a day that
is not today is closed, the hours around now are open). The same night across a DST change, with
the instant simulated, is tests/appliance/test_window_holds.py; the pure rules test_windows.py."""

from __future__ import annotations

import datetime
import time
import zoneinfo
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.ledger import rfc3339
from appliance.validation import parse_rfc3339
from appliance.windows import DAY_NAMES, next_open, parse_window, reason
from modem.simulator import Simulator
from tests.support.config_files import toml_text
from tests.support.gateway import Running, gateway_config, run_gateway
from tests.system.test_cli import smsgw

PHONE = "+4915112345678"
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def closed_now() -> dict[str, str]:
    """08:00-20:00 Berlin time on the weekday three days from today: closed for days yet."""
    day = (datetime.datetime.now(BERLIN) + datetime.timedelta(days=3)).weekday()
    return {"days": DAY_NAMES[day], "start": "08:00", "end": "20:00", "tz": "Europe/Berlin"}


def open_now() -> dict[str, str]:
    """Every day from an hour ago to two hours ahead, Berlin time (across midnight when it must)."""
    local = datetime.datetime.now(BERLIN)
    start, end = local - datetime.timedelta(hours=1), local + datetime.timedelta(hours=2)
    return {"days": "daily", "start": f"{start:%H:%M}", "end": f"{end:%H:%M}", "tz": "Europe/Berlin"}


def text_form(doc: dict[str, str]) -> str:
    return parse_window(doc).describe()


def window_events(doc: dict[str, Any]) -> list[str]:
    return [e["detail"] for e in doc["events"] if e["type"] == "window"]


@dataclass
class Box:
    """The running gateway and the config file the operator's CLI reads."""

    gw: Running
    config: str

    async def key(self, name: str, *options: str) -> httpx.AsyncClient:
        """`smsgw keys create` with these options; a client sending with the new key."""
        made = await smsgw(
            "keys", "create", "--config", self.config, "--name", name, "--scope", "send,read", *options
        )
        assert made.returncode == 0, made.stderr
        return httpx.AsyncClient(
            base_url=f"http://{self.gw.config.api.listen}",
            headers={"Authorization": f"Bearer {made.stdout.strip()}"},
            timeout=10,
        )


@pytest.fixture
async def box(tmp_path: Path, sim: Simulator) -> AsyncIterator[Box]:
    raw = gateway_config(tmp_path, str(sim.primary_path))
    config = tmp_path / "smsgw.toml"
    config.write_text(toml_text(raw))
    async with run_gateway(raw, sim) as gw:
        await gw.gateway.modem_list[0][2].wait_ready(10)
        yield Box(gw, str(config))


# ------------------------------------------------------------------------------ a message's window
async def test_a_message_outside_its_window_waits_scheduled_until_the_window_opens(gw: Running) -> None:
    window = closed_now()
    r = await gw.send(to=PHONE, body="weekly report ready", window=window)
    assert r.status_code == 202, r.text
    doc = r.json()
    assert doc["status"] == "scheduled"
    assert doc["window"] == window
    accepted = parse_rfc3339(doc["created_at"])
    opens = next_open(parse_window(window), accepted)
    assert doc["send_at"] == rfc3339(opens)
    assert datetime.datetime.fromtimestamp(opens, BERLIN).strftime("%a %H:%M") == (
        f"{window['days'].capitalize()} 08:00"
    )
    assert window_events(doc) == [f"{reason(parse_window(window), accepted)} (message's window)"]
    assert window_events(doc)[0].startswith(f"outside send window {text_form(window)}; opens ")
    # Validity (the default day) counts from the opening, not from now.
    assert parse_rfc3339(doc["expires_at"]) - opens == gw.config.dispatcher.default_validity_s
    again = await gw.message(doc["id"])
    assert (again["status"], again["send_at"], again["window"]) == ("scheduled", doc["send_at"], window)


async def test_a_send_at_later_than_the_opening_is_kept(gw: Running) -> None:
    window = closed_now()
    opens = next_open(parse_window(window), time.time())
    later = opens + 4 * 3600  # 12:00 that day: inside the window
    r = await gw.send(to=PHONE, body="at noon", window=window, send_at=rfc3339(later))
    assert r.status_code == 202, r.text
    assert (r.json()["status"], r.json()["send_at"]) == ("scheduled", rfc3339(later))
    assert window_events(r.json()) == []  # the window did not move it


async def test_a_message_inside_its_window_is_sent_and_delivered(gw: Running) -> None:
    window = open_now()
    r = await gw.send(to=PHONE, body="inside the window", window=window)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"
    assert r.json()["window"] == parse_window(window).to_json()
    done = await gw.final(r.json()["id"])
    assert done["status"] == "delivered"
    assert window_events(done) == []
    assert gw.sim is not None
    assert [e.number for e in gw.sim.network.log if e.kind == "submit"] == [PHONE]


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (
            {"days": "mon-fri", "start": "08:00", "end": "20:00", "tz": "Europe/Berln"},
            "window.tz: unknown time zone",
        ),
        (
            {"days": "mon-fry", "start": "08:00", "end": "20:00", "tz": "UTC"},
            "window.days: 'fry' is not a day",
        ),
        (
            {"days": "mon-fri", "start": "8am", "end": "20:00", "tz": "UTC"},
            "window.start: expected a 24-hour time",
        ),
        ({"days": "mon-fri", "start": "08:00", "tz": "UTC"}, "window.end: this field is required"),
        ("mon-fri 08:00-20:00 UTC", "window: expected an object"),
    ],
)
async def test_a_bad_window_is_refused_with_422_naming_the_field(
    gw: Running, window: Any, message: str
) -> None:
    r = await gw.send(to=PHONE, body="never stored", window=window)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_window"
    assert r.json()["error"]["message"].startswith(message)
    listed = await gw.client.get("/api/v1/messages")
    assert listed.json()["messages"] == []  # nothing was accepted


# --------------------------------------------------------------------------- a key's default window
@pytest.mark.slow
async def test_a_keys_window_holds_its_messages_and_high_bypasses_only_where_the_key_may(box: Box) -> None:
    window = closed_now()
    text = text_form(window)
    may = await box.key("on-call", "--window", text, "--window-bypass-high")
    may_not = await box.key("reports", "--window", text)
    async with may, may_not:
        urgent = await may.post("/api/v1/messages", json={"to": PHONE, "body": "db down", "priority": "high"})
        assert urgent.status_code == 202, urgent.text
        assert urgent.json()["status"] == "queued"
        assert urgent.json()["window"] is None  # nothing holds it later either
        assert window_events(urgent.json()) == ["send window of key bypassed: priority high"]
        assert (await box.gw.final(urgent.json()["id"]))["status"] == "delivered"

        routine = await may.post("/api/v1/messages", json={"to": PHONE, "body": "backup ok"})
        refused = await may_not.post(
            "/api/v1/messages", json={"to": PHONE, "body": "db down", "priority": "high"}
        )
        for r in (routine, refused):
            assert r.status_code == 202, r.text
            doc = r.json()
            assert doc["status"] == "scheduled"
            assert doc["window"] == window
            accepted = parse_rfc3339(doc["created_at"])
            assert doc["send_at"] == rfc3339(next_open(parse_window(window), accepted))
            assert window_events(doc) == [f"{reason(parse_window(window), accepted)} (key's window)"]

        # A window on the message itself holds even a bypassing key's high message.
        own = await may.post(
            "/api/v1/messages",
            json={"to": PHONE, "body": "not at night", "priority": "high", "window": window},
        )
        assert own.json()["status"] == "scheduled"
        assert window_events(own.json())[0].endswith("(message's window)")
    listed = await smsgw("keys", "list", "--long", "--config", box.config)
    (line,) = [ln for ln in listed.stdout.splitlines() if "\ton-call\t" in ln]
    assert f"send window {text} (priority high bypasses it)" in line


@pytest.mark.slow
async def test_keys_update_sets_and_clears_a_window_and_a_bad_one_is_refused_naming_the_option(
    box: Box,
) -> None:
    client = await box.key("app")
    async with client:
        window = closed_now()
        changed = await smsgw("keys", "update", "--config", box.config, "app", "--window", text_form(window))
        assert changed.returncode == 0, changed.stderr
        assert f"send window {text_form(window)}" in changed.stdout
        held = await client.post("/api/v1/messages", json={"to": PHONE, "body": "later"})
        assert held.json()["status"] == "scheduled"

        bad = await smsgw("keys", "update", "--config", box.config, "app", "--window", "mon-fri 8-20 Berlin")
        assert bad.returncode == 2
        assert "argument --window: window.start: expected a 24-hour time 'HH:MM'" in bad.stderr

        cleared = await smsgw("keys", "update", "--config", box.config, "app", "--window", "none")
        assert cleared.returncode == 0, cleared.stderr
        assert "send window" not in cleared.stdout
        now = await client.post("/api/v1/messages", json={"to": PHONE, "body": "now"})
        assert (now.json()["status"], now.json()["window"]) == ("queued", None)
