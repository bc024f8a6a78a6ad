"""Actions and access rules over real HTTP: login, CSRF, Origin, masking, headers, the read-only mode."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from appliance.session import Signer, check_password, hash_password
from appliance.status import watchdog_state_path
from appliance.web import error_meaning, mask_number
from modem.simulator import Simulator
from tests.support.gateway import Running, gateway_config, run_gateway
from tests.support.waiting import eventually
from tests.support.web_page import csrf_of, page_client
from watchdog.alert import SCHEMA as WATCHDOG_SCHEMA
from watchdog.audit import CommandFact, CommandLog

PHONE = "+4915112345678"


@pytest.mark.slow
async def test_action_without_login_is_refused(gw: Running) -> None:
    async with await page_client(f"http://{gw.config.api.listen}") as c:
        token = csrf_of((await c.get("/login")).text)
        r = await c.post("/actions/test-sms", data={"csrf": token, "to": PHONE, "body": "x"})
        assert r.status_code == 403
        assert "Actions need an admin login" in r.text
        r = await c.post("/actions/reset-modem", data={"csrf": token, "modem": "modem"})
        assert r.status_code == 403
    assert (await gw.client.get("/api/v1/messages")).json()["messages"] == []


@pytest.mark.slow
async def test_post_without_csrf_token_is_refused(gw: Running) -> None:
    async with await page_client(f"http://{gw.config.api.listen}") as c:
        await c.get("/")
        r = await c.post("/login", data={"password": gw.key})
        assert r.status_code == 403
        assert "CSRF token is missing" in r.text
        r = await c.post("/login", data={"password": gw.key, "csrf": "0" * 64})
        assert r.status_code == 403


@pytest.mark.slow
async def test_cross_origin_post_is_refused(gw: Running) -> None:
    async with await page_client(f"http://{gw.config.api.listen}") as c:
        token = csrf_of((await c.get("/login")).text)
        r = await c.post(
            "/login", data={"password": gw.key, "csrf": token}, headers={"Origin": "http://evil.example"}
        )
        assert r.status_code == 403
        assert "posted from http://evil.example" in r.text


@pytest.mark.slow
async def test_admin_key_login_sends_test_sms_and_resets(gw: Running) -> None:
    base = f"http://{gw.config.api.listen}"
    async with await page_client(base) as c:
        token = csrf_of((await c.get("/login")).text)
        r = await c.post("/login", data={"password": gw.key, "csrf": token}, headers={"Origin": base})
        assert r.status_code == 303
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        page = await c.get("/")
        token = csrf_of(page.text)  # rotated with the session at login
        assert "Send test SMS" in page.text
        r = await c.post(
            "/actions/test-sms", data={"csrf": token, "to": PHONE, "body": "hello from the page"}
        )
        assert r.status_code == 303, r.text
        msg_id = r.headers["location"].split("id=")[1]
        assert (await gw.final(msg_id))["status"] == "delivered"
        listing = (await c.get("/messages")).text
        assert PHONE in listing  # an admin sees full numbers
        r = await c.post("/actions/reset-modem", data={"csrf": token, "modem": "modem"})
        assert r.status_code == 303
        modem = gw.gateway.modem_list[0][2]
        await eventually(lambda: modem.info.resets >= 1, timeout_s=10)
        r = await c.post("/actions/ack-incident", data={"csrf": token, "incident": "inc_1"})
        assert r.status_code == 404
        assert "no open incident" in r.text.lower()
        r = await c.post("/actions/reset-modem", data={"csrf": token, "modem": "nope"})
        assert r.status_code == 404


@pytest.mark.slow
async def test_read_only_key_cannot_log_in(gw: Running) -> None:
    _rec, read_key = await gw.gateway.store.create_key("reader", ["read"])
    async with await page_client(f"http://{gw.config.api.listen}") as c:
        token = csrf_of((await c.get("/login")).text)
        r = await c.post("/login", data={"password": read_key, "csrf": token})
        assert r.status_code == 403
        assert "admin scope" in r.text


@pytest.mark.slow
async def test_security_headers(gw: Running) -> None:
    async with await page_client(f"http://{gw.config.api.listen}") as c:
        r = await c.get("/")
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-eval" not in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "src=" not in r.text
    assert "<link" not in r.text


@pytest.mark.slow
async def test_login_only_mode_with_password(tmp_path: Path, sim: Simulator) -> None:
    stored = hash_password("s3cret", iterations=1000)
    raw = gateway_config(
        tmp_path, str(sim.primary_path), web={"public": False, "admin_password_hash": stored}
    )
    async with run_gateway(raw, sim) as running:
        base = f"http://{running.config.api.listen}"
        async with await page_client(base) as c:
            r = await c.get("/")
            assert r.status_code == 303
            assert r.headers["location"] == "/login"
            assert (await c.get("/messages", headers={"X-Smsgw-Fragment": "1"})).status_code == 401
            token = csrf_of((await c.get("/login")).text)
            assert (await c.post("/login", data={"password": "wrong", "csrf": token})).status_code == 403
            r = await c.post("/login", data={"password": "s3cret", "csrf": token})
            assert r.status_code == 303
            assert (await c.get("/")).status_code == 200
        key_file = tmp_path / "session.key"
        assert key_file.stat().st_mode & 0o777 == 0o600


def test_mask_and_meaning() -> None:
    assert mask_number("+4915112345678") == "+49151•••5678"
    assert mask_number("+447700900123").endswith("0123")
    assert "•••" in mask_number("garbage-number")
    assert error_meaning("cms_38") != ""
    assert error_meaning("modem_timeout") == ""


def test_password_hash_and_cookie_signing() -> None:
    stored = hash_password("pw", iterations=1000)
    assert check_password("pw", stored)
    assert not check_password("pW", stored)
    signer = Signer(b"k" * 32)
    session = signer.new()
    cookie = signer.dump(session)
    assert signer.load(cookie) == session
    assert "password" not in cookie  # who is logged in is known server-side only
    assert signer.load(cookie[:-2] + "xx") is None
    assert signer.load(cookie[:-2] + "é€") is None  # non-ASCII: no TypeError from compare_digest
    assert signer.load("\udcff.\x00") is None
    assert not signer.csrf_ok(session, "é" * 64)
    assert signer.load(cookie, now=session.issued_at + 13 * 3600) is None
    assert not signer.csrf_ok(session, "")
    assert signer.csrf_ok(session, signer.csrf_token(session))
    assert not Signer(b"other" * 8).csrf_ok(session, signer.csrf_token(session))


@pytest.mark.slow
async def test_page_actions_and_logins_are_audited_and_the_trail_is_for_admins(gw: Running) -> None:
    base = f"http://{gw.config.api.listen}"
    async with await page_client(base) as c:
        r = await c.get("/audit")
        assert (r.status_code, r.headers["location"]) == (303, "/login")  # logged-in only, even when public
        token = csrf_of((await c.get("/login")).text)
        r = await c.post("/login", data={"password": "guess", "csrf": token})
        assert r.status_code == 403
        r = await c.post("/login", data={"password": gw.key, "csrf": token})
        assert r.status_code == 303
        token = csrf_of((await c.get("/")).text)
        r = await c.post("/actions/test-sms", data={"csrf": token, "to": PHONE, "body": "audited"})
        msg_id = r.headers["location"].split("id=")[1]
        await c.post("/actions/reset-modem", data={"csrf": token, "modem": "modem"})
        await asyncio.to_thread(_open_incident, watchdog_state_path(gw.config), 7)
        r = await c.post("/actions/ack-incident", data={"csrf": token, "incident": "7"})
        assert r.status_code == 303, r.text
        page = await c.get("/audit")
        assert page.status_code == 200
        assert 'href="/audit"' in page.text  # in the navigation once logged in
        rows = page.text.count('class="audit-row"')
        assert rows == 5, page.text
    events = (await gw.client.get("/api/v1/audit")).json()["events"]
    assert [(e["actor"], e["action"], e["target"]) for e in events] == [
        ("web:test", "incident_ack", "incident 7"),
        ("web:test", "modem_reset", "modem modem"),
        ("web:test", "test_sms", msg_id),
        ("web:test", "login", None),
        ("web:?", "login_failed", None),
    ]
    assert {e["source"] for e in events} == {"127.0.0.1"}
    assert "guess" not in str(events)  # a failed password is never recorded


def _open_incident(path: Path, incident_id: int) -> None:
    """An open incident in the watchdog's state file, as the watchdog records one."""
    with sqlite3.connect(path) as db:
        db.executescript(WATCHDOG_SCHEMA)
        db.execute(
            "INSERT INTO incidents (id, subject, what, since, opened_at) VALUES (?, 'queue', 'stalled', ?, ?)",
            (incident_id, time.time(), time.time()),
        )


@pytest.mark.slow
async def test_watchdog_commands_join_the_audit_trail_by_time(tmp_path: Path, sim: Simulator) -> None:
    """On-call commands the watchdog recorded in its state file show in GET /api/v1/audit and on /audit
    (actor `watchdog`, masked number), merged by time with the daemon's own rows, each once."""
    raw = gateway_config(tmp_path, str(sim.primary_path), inbound={"reassembly_timeout_s": 2.0})
    async with run_gateway(raw, sim) as box:
        state = watchdog_state_path(box.config)
        oncall = "+4915123456789"
        await asyncio.to_thread(
            _record_command,
            state,
            CommandFact(time.time() - 60, oncall, "RESTART", "refused", "wrong PIN", "sim"),
        )
        assert (await box.send(to=PHONE, body="between")).status_code == 202
        await asyncio.to_thread(
            _record_command, state, CommandFact(time.time() + 1, oncall, "STATUS", "accepted", "", "ledger")
        )

        async def trail(**params: str) -> list[dict[str, Any]]:
            r = await box.client.get("/api/v1/audit", params=params)
            assert r.status_code == 200, r.text
            events: list[dict[str, Any]] = r.json()["events"]
            return events

        async def copied(n: int) -> bool:
            return bool(sum(e["actor"] == "watchdog" for e in await trail()) >= n)

        await eventually(lambda: copied(2))
        events = await trail()
        assert [(e["actor"], e["action"], e["target"], e["detail"]) for e in events] == [
            ("watchdog", "watchdog_command", mask_number(oncall), "STATUS accepted"),
            ("test", "send", events[1]["target"], events[1]["detail"]),
            ("watchdog", "watchdog_command", mask_number(oncall), "RESTART refused: wrong PIN"),
        ]
        # Paging one row at a time walks the same order.
        walked, cursor = [], None
        while True:
            r = (
                await box.client.get(
                    "/api/v1/audit", params={"limit": "1"} | ({"cursor": cursor} if cursor else {})
                )
            ).json()
            walked += r["events"]
            if not (cursor := r["next_cursor"]):
                break
        assert walked == events
        # A later command is copied by a later pass; the earlier ones are not copied again.
        await asyncio.to_thread(
            _record_command, state, CommandFact(time.time() + 2, oncall, "ACK", "accepted", "", "sim")
        )
        await eventually(lambda: copied(3))
        assert [e["detail"] for e in await trail() if e["actor"] == "watchdog"] == [
            "ACK accepted",
            "STATUS accepted",
            "RESTART refused: wrong PIN",
        ]
        base = f"http://{box.config.api.listen}"
        async with await page_client(base) as c:
            token = csrf_of((await c.get("/login")).text)
            assert (await c.post("/login", data={"password": box.key, "csrf": token})).status_code == 303
            page = (await c.get("/audit")).text
        assert "RESTART refused: wrong PIN" in page
        assert mask_number(oncall) in page
        assert oncall not in page


def _record_command(path: Path, fact: CommandFact) -> None:
    """One command fact in the watchdog's state file, written by the watchdog's own CommandLog."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        CommandLog(db).record(fact)
        db.commit()
