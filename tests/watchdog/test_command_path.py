"""The on-call command path attacked as on the LAN and over the air: real `smsgw serve` and
`smsgw watchdog` processes on the simulated modem (primary port for the daemon, aux for the watchdog)."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.support.cli import config_check
from tests.support.config_files import toml_text
from tests.support.gateway import gateway_config
from tests.support.waiting import eventually
from tests.support.watchdog_box import ONCALL, PIN, STRANGER, BoxFactory
from tests.support.web_page import csrf_of, page_client

pytestmark = pytest.mark.timeout(120)

FOREIGN = "+15112345678"  # the on-call number's last 10 digits under another country code
ONCALL2 = "+4915198765432"


def holders(secret: str, directory: Path) -> list[str]:
    """The ledger and state files (with their WAL) and logs in `directory` that contain `secret`."""
    kept = [p for p in directory.iterdir() if p.name.startswith(("ledger.sqlite3", "watchdog.sqlite3"))]
    logs = [directory / "serve.log", directory / "watchdog.log"]
    assert len(kept) >= 2
    assert all(p.exists() for p in logs)
    return [p.name for p in [*kept, *logs] if secret.encode() in p.read_bytes()]


def alert(text: str) -> bool:
    return text.startswith("box7: ")


def status_reply(text: str) -> bool:
    return text.startswith("box7 STATUS:")


@pytest.mark.slow
async def test_a_foreign_number_ending_in_the_oncall_digits_gets_no_action_and_no_reply(
    box_factory: BoxFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "restarted"
    async with box_factory(restart_command=["touch", str(marker)]) as box:
        # Daemon up: the commands reach the watchdog through the ledger, in order of arrival.
        await box.sim.inject(FOREIGN, f"RESTART {PIN}")
        await box.sim.inject(FOREIGN, f"STATUS {PIN}")
        await box.sim.inject(ONCALL, f"STATUS {PIN}")  # answered: the two before it were handled
        await box.wait_text(status_reply)
        # Daemon down: the watchdog reads the SIM over its own port.
        await box.daemon.kill9()
        await box.wait_text(alert)
        await box.sim.inject(FOREIGN, f"RESTART {PIN}")
        await box.sim.inject(ONCALL, f"STATUS {PIN}")
        await eventually(lambda: len([t for t in box.texts() if status_reply(t)]) == 2, 30, 0.05)
        assert not marker.exists()
        assert box.texts(FOREIGN) == []
        assert not [t for t in box.texts() if "RESTART:" in t or "PIN guessing" in t]
        # The foreign SMS was left on the SIM: the daemon, back, keeps it (redacted); still no action.
        await box.daemon.start()
        await box.daemon_ready()
        admin = await box.create_key("admin")
        async with httpx.AsyncClient(
            base_url=box.base, headers={"Authorization": f"Bearer {admin}"}
        ) as client:

            async def foreign_bodies() -> list[str]:
                doc = (await client.get("/api/v1/inbound", params={"limit": 100})).json()
                return sorted(m["body"] for m in doc["messages"] if m["from"] == FOREIGN)

            async def all_three() -> bool:
                return len(await foreign_bodies()) == 3

            await eventually(all_three, 20, 0.1)
            assert await foreign_bodies() == ["RESTART ******", "RESTART ******", "STATUS ******"]
        refused = "SELECT COUNT(*) FROM commands WHERE outcome = 'refused' AND detail = 'not_oncall'"
        await eventually(lambda: box.state_rows(refused) == [(3,)], 20, 0.05)
        assert not marker.exists()
        assert box.texts(FOREIGN) == []


@pytest.mark.slow
async def test_three_wrong_pins_then_the_right_one_is_ignored_and_oncall_is_told_once(
    box_factory: BoxFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "restarted"
    async with box_factory(oncall=[ONCALL, ONCALL2], restart_command=["touch", str(marker)]) as box:

        def replies(number: str) -> list[str]:
            return [t for t in box.texts(number) if status_reply(t) or "RESTART:" in t]

        def guessing(number: str) -> list[str]:
            return [t for t in box.texts(number) if f"PIN guessing from {ONCALL}" in t]

        async def answered(n: int) -> None:
            """ONCALL2's n-th STATUS answered: every command sent before it was handled."""
            # Seconds apart, as a person types them (the same text in the same second is one SMS).
            scts = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=n)
            await box.sim.inject(ONCALL2, f"STATUS {PIN}", scts=scts)
            await eventually(lambda: len(replies(ONCALL2)) == n, 30, 0.05)

        await answered(1)  # the watchdog reads the ledger
        for wrong in ("111111", "222222", f"{PIN}0"):
            await box.sim.inject(ONCALL, f"STATUS {wrong}")
        await box.sim.inject(ONCALL, f"STATUS {PIN}")
        await answered(2)
        await eventually(lambda: guessing(ONCALL) and guessing(ONCALL2), 20, 0.05)
        assert replies(ONCALL) == []
        # The count lives in the state file: a restarted watchdog still ignores the sender.
        await box.watchdog.stop()
        await box.watchdog.start()
        await box.watchdog_log("watchdog of box7", times=2)
        await answered(3)
        await box.sim.inject(ONCALL, f"RESTART {PIN}")
        await box.sim.inject(ONCALL, "STATUS 444444")
        await answered(4)
        assert replies(ONCALL) == []
        assert not marker.exists()
        assert len(guessing(ONCALL)) == len(guessing(ONCALL2)) == 1  # told once, not per guess
        assert ONCALL not in box.watchdog.log.read_text()  # logged masked
        facts = box.state_rows("SELECT sender, detail FROM commands ORDER BY id")
        assert [detail for sender, detail in facts if sender == ONCALL] == [
            "wrong_pin",
            "wrong_pin",
            "wrong_pin; guessing reported",
            "locked",
            "locked",
            "locked",
        ]


@pytest.mark.slow
@pytest.mark.parametrize(("pin", "env"), [("4711", ""), ("12345", ""), ("12345a", ""), ("", "4711")])
def test_a_short_pin_fails_config_check_naming_the_key(tmp_path: Path, pin: str, env: str) -> None:
    raw = gateway_config(tmp_path, "sim", watchdog={"oncall": [ONCALL], **({"pin": pin} if pin else {})})
    config = tmp_path / "smsgw.toml"
    config.write_text(toml_text(raw))
    environ = {**os.environ, **({"SMSGW_WATCHDOG__PIN": env} if env else {})}

    def check() -> subprocess.CompletedProcess[str]:
        return config_check(str(config), env=environ)

    done = check()
    assert done.returncode == 2
    assert "watchdog.pin" in done.stderr
    assert "6 to 32 digits" in done.stderr
    assert (pin or env) not in done.stderr  # the error names the key, never echoes the secret
    environ["SMSGW_WATCHDOG__PIN"] = "58213947"
    assert check().returncode == 0


@pytest.mark.slow
async def test_the_pin_is_never_stored_shown_or_logged(box_factory: BoxFactory, tmp_path: Path) -> None:
    async with box_factory() as box:
        reader = await box.create_key("read")
        admin = await box.create_key("admin")
        # Daemon up: through the ledger.
        await box.sim.inject(ONCALL, f"RESTART {PIN}")
        await box.wait_text(lambda t: t == "box7 RESTART: done")
        await box.sim.inject(STRANGER, f"status {PIN}")
        await box.sim.inject(ONCALL, f"ACK {PIN}9")  # wrong, and the PIN is in it
        await box.sim.inject(ONCALL, f"Status:{PIN}")  # sloppy: not a valid command, still redacted
        await box.sim.inject(ONCALL, f"STATUS {PIN}")
        await box.wait_text(status_reply)
        # Daemon down: off the SIM.
        await box.daemon.kill9()
        await box.wait_text(alert)
        await box.sim.inject(ONCALL, f"ACK {PIN}")
        await box.wait_text(lambda t: t.startswith("box7 ACK:"))
        await box.daemon.start()
        await box.daemon_ready()
        async with httpx.AsyncClient(base_url=box.base) as client:
            as_admin = await client.get(
                "/api/v1/inbound", params={"limit": 100}, headers={"Authorization": f"Bearer {admin}"}
            )
            as_reader = await client.get(
                "/api/v1/inbound", params={"limit": 100}, headers={"Authorization": f"Bearer {reader}"}
            )
            public_page = await client.get("/messages", params={"direction": "in"})
        async with await page_client(box.base) as browser:  # the page as an admin sees it
            token = csrf_of((await browser.get("/login")).text)
            login = await browser.post("/login", data={"password": admin, "csrf": token})
            assert login.status_code == 303
            page = await browser.get("/messages", params={"direction": "in"})
        assert as_admin.status_code == as_reader.status_code == 200
        # The ACK taken off the SIM by the watchdog never reached the ledger; the rest did, redacted.
        bodies = sorted(m["body"] for m in as_admin.json()["messages"])
        assert bodies == ["ACK ******", "RESTART ******", *["STATUS ******"] * 3]
        for shown in (as_admin.text, as_reader.text, public_page.text, page.text):
            assert PIN not in shown
        assert page.status_code == 200
        assert "RESTART ******" in page.text
        # Nothing on disk or in either process's log holds it (the config file aside).
        assert holders(PIN, tmp_path) == []
        # The watchdog logs verbs and masked numbers, no message text.
        log = box.watchdog.log.read_text()
        assert "refused STATUS from +4915•••678 (wrong_pin)" in log
        assert ONCALL not in log
        assert "Status:" not in log
