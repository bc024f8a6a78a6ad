"""Login over real HTTP against the real gateway: rate limits, hashing off the loop, server-side
sessions, hostile credential bytes, allowed Host names."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from appliance import login, web
from appliance.cli import _watchdog_settings
from appliance.config import from_dict
from appliance.session import COOKIE, hash_password
from modem.simulator import Simulator
from tests.support.certificates import self_signed
from tests.support.gateway import Running, gateway_config, run_gateway
from tests.support.web_page import csrf_of
from watchdog.facts import FactsReader

PASSWORD = "correct horse battery staple"  # noqa: S105  (the test box's own)
TWILIO = "/2010-04-01/Accounts/AC0123/Messages.json"


@pytest.fixture
async def box(tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    """The gateway with an admin password (cheap to hash: these tests count attempts, not CPU),
    refusals held 50 ms instead of 1 s (the mechanism is the same)."""
    monkeypatch.setattr(web, "TARPIT_S", 0.05)
    monkeypatch.setattr(web, "TARPIT_REFUSED_MAX_S", 0.05)
    raw = gateway_config(
        tmp_path, str(sim.primary_path), web={"admin_password_hash": hash_password(PASSWORD, iterations=1000)}
    )
    async with run_gateway(raw, sim) as running:
        yield running


def client_from(box: Running, address: str) -> httpx.AsyncClient:
    """A browser-like client whose connections come from `address` (127.0.0.0/8 is all ours)."""
    return httpx.AsyncClient(
        base_url=f"http://{box.config.api.listen}",
        transport=httpx.AsyncHTTPTransport(local_address=address),
        timeout=10,
    )


async def try_login(c: httpx.AsyncClient, password: str) -> httpx.Response:
    token = csrf_of((await c.get("/login")).text)
    return await c.post("/login", data={"password": password, "csrf": token})


async def raw_request(box: Running, head: bytes) -> int:
    """Send request bytes exactly as given (no client library cleans them); the status code."""
    host, _, port = box.config.api.listen.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(status_line.split()[1])


@pytest.mark.slow
async def test_guessers_get_429_after_the_free_failures(
    box: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(login, "LOCK_BASE_S", 60.0)  # the lockout outlasts a slow CI machine
    async with client_from(box, "127.0.0.2") as guesser:
        for _ in range(login.FREE_FAILURES + 1):
            assert (await try_login(guesser, "wrong")).status_code == 403
        r = await try_login(guesser, PASSWORD)  # locked out: even the right password waits
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert "Too many login attempts" in r.text
    async with client_from(box, "127.0.0.3") as admin:  # another address is not locked out
        r = await try_login(admin, PASSWORD)
        assert r.status_code == 303
        assert "Send test SMS" in (await admin.get("/")).text


@pytest.mark.slow
async def test_a_flood_of_distinct_addresses_is_held_by_the_box_wide_budget(box: Running) -> None:
    # One failure from each address, all at once: no address is locked out on its own.
    guessers = [client_from(box, f"127.0.1.{i + 1}") for i in range(login.BURST + 5)]

    async def guess(c: httpx.AsyncClient) -> int:
        async with c:
            return (await try_login(c, "wrong")).status_code

    outcomes = Counter(await asyncio.gather(*(guess(c) for c in guessers)))
    assert outcomes[403] <= login.BURST + 1  # +1: the bucket refills 0.5 a second meanwhile
    assert outcomes[429] >= 4
    assert set(outcomes) == {403, 429}
    # An admin API key costs no PBKDF2 and still logs in while the password budget is spent.
    async with client_from(box, "127.0.2.1") as admin:
        assert (await try_login(admin, box.key)).status_code == 303


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_healthz_answers_while_20_guessers_run(tmp_path: Path, sim: Simulator) -> None:
    # The real cost (600k rounds, ~0.4 s each): on the event loop this stalled /healthz for seconds.
    raw = gateway_config(
        tmp_path, str(sim.primary_path), web={"admin_password_hash": hash_password(PASSWORD)}
    )
    async with run_gateway(raw, sim) as box:
        statuses: Counter[int] = Counter()
        stop = asyncio.Event()

        async def guess(c: httpx.AsyncClient, n: int) -> None:
            async with c:
                while not stop.is_set():
                    statuses[(await try_login(c, f"guess{n}")).status_code] += 1

        # Clients made first: each loads a TLS context, which costs the (shared) loop ~50 ms.
        clients = [client_from(box, f"127.0.3.{n + 1}") for n in range(20)]
        guessers = [asyncio.create_task(guess(c, n)) for n, c in enumerate(clients)]
        slowest = 0.0
        probes = 0
        try:
            async with httpx.AsyncClient(base_url=f"http://{box.config.api.listen}", timeout=10) as probe:
                async with asyncio.timeout(60):
                    # Probe until the guessers spent the box-wide burst and were refused at least once.
                    while probes < 40 or statuses[429] < 20:
                        started = time.monotonic()
                        assert (await probe.get("/healthz")).status_code == 200
                        slowest = max(slowest, time.monotonic() - started)
                        probes += 1
                        await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.gather(*guessers, return_exceptions=True)
        assert statuses[403] >= 1  # passwords were checked ...
        assert statuses[429] >= 20  # ... and the rest refused
        # A sanity bound, not a benchmark (tests/benchmarks/bench_login.py measures p99): with
        # PBKDF2 on the loop, one probe waited behind up to 20 hashes of ~0.4 s each.
        assert slowest < 2.0, f"/healthz took {slowest:.2f} s while guessers ran"


@pytest.mark.slow
async def test_logout_ends_the_session_server_side(box: Running) -> None:
    async with client_from(box, "127.0.4.1") as c:
        assert (await try_login(c, PASSWORD)).status_code == 303
        stolen = c.cookies[COOKIE]
        token = csrf_of((await c.get("/")).text)
        assert (await c.post("/logout", data={"csrf": token})).status_code == 303
    async with client_from(box, "127.0.4.2") as thief:  # the old cookie replayed after logout
        thief.cookies.set(COOKIE, stolen)
        page = await thief.get("/")
        assert "Send test SMS" not in page.text
        token = csrf_of((await thief.get("/login")).text)  # the old id's token: the cookie still verifies
        r = await thief.post("/actions/test-sms", data={"csrf": token, "to": "+4915112345678", "body": "x"})
        assert r.status_code == 403


@pytest.mark.slow
async def test_revoking_the_key_ends_its_session(box: Running) -> None:
    rec, key = await box.gateway.store.create_key("ops", ["admin"])
    async with client_from(box, "127.0.5.1") as c:
        assert (await try_login(c, key)).status_code == 303
        assert "Send test SMS" in (await c.get("/")).text
        await box.gateway.store.revoke_key(str(rec.id))
        assert "Send test SMS" not in (await c.get("/")).text
        token = csrf_of((await c.get("/login")).text)
        r = await c.post("/actions/reset-modem", data={"csrf": token, "modem": "modem"})
        assert r.status_code == 403


@pytest.mark.slow
async def test_malformed_credentials_get_401_never_500(box: Running) -> None:
    host = box.config.api.listen.encode()
    bad_basic = b"Basic " + base64.b64encode(b"AC0123:") + b"\xc3\xa9\xff"
    for path, auth in (
        (b"/api/v1/messages", b"Bearer sgw_\xff\xfe\x80"),
        (b"/api/v1/messages", bad_basic),
        (b"/api/v1/alertmanager", bad_basic),
        (b"/api/v1/alertmanager", b"Basic \xe2\x82\xac\xe2\x82\xac"),
        (TWILIO.encode(), bad_basic),
        (TWILIO.encode(), b"Basic \xe2\x82\xac\xe2\x82\xac"),
        (TWILIO.encode(), b"Basic " + base64.b64encode("AC0123:kéy".encode("latin-1"))),
    ):
        method = b"GET" if path == b"/api/v1/messages" else b"POST"
        head = (
            method + b" " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nAuthorization: " + auth + b"\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        assert await raw_request(box, head) == 401, (path, auth)
    # A session cookie of hostile bytes is no session: the page answers as to any visitor.
    for cookie in (b"\xff\xfe.\x80", b"e30." + b"\xc3\xa9" * 40, b"x" * 3000):
        get = b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nCookie: " + COOKIE.encode() + b"=" + cookie
        assert await raw_request(box, get + b"\r\nConnection: close\r\n\r\n") == 200
        body = b"csrf=%C3%A9%FF&to=%2B4915112345678&body=x"
        post = (
            b"POST /actions/test-sms HTTP/1.1\r\nHost: " + host + b"\r\nCookie: " + COOKIE.encode() + b"="
            b"" + cookie + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "
            b"" + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
        )
        assert await raw_request(box, post) == 403
    assert (await box.client.get("/api/v1/messages")).json()["messages"] == []


@pytest.mark.slow
async def test_unknown_host_names_get_400(box: Running) -> None:
    port = box.config.api.listen.rpartition(":")[2]
    async with httpx.AsyncClient(base_url=f"http://{box.config.api.listen}", timeout=10) as c:
        for path in ("/", "/login", "/api/v1/status", "/healthz"):
            r = await c.get(path, headers={"Host": f"rebind.attacker.example:{port}"})
            assert r.status_code == 400, path
            assert "allowed_hosts" in r.text
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
            assert (await c.get("/healthz", headers={"Host": host})).status_code == 200, host


@pytest.mark.slow
async def test_configured_allowed_hosts(tmp_path: Path, sim: Simulator) -> None:
    raw = gateway_config(tmp_path, str(sim.primary_path), api={"allowed_hosts": ["smsgw.lan", "*.ops.lan"]})
    async with (
        run_gateway(raw, sim) as box,
        httpx.AsyncClient(base_url=f"http://{box.config.api.listen}", timeout=10) as c,
    ):
        for host, status in (
            ("smsgw.lan", 200),
            ("SMSGW.lan.:8080", 200),
            ("box.ops.lan", 200),
            ("ops.lan.attacker.example", 400),
            ("attacker.example", 400),
            ("127.0.0.1", 200),  # loopback always: the watchdog probes it
        ):
            assert (await c.get("/", headers={"Host": host})).status_code == status, host


@pytest.mark.slow
async def test_tls_serves_https_with_secure_cookies_and_the_watchdog_still_probes(
    tmp_path: Path, sim: Simulator
) -> None:
    cert, key = self_signed(tmp_path)
    raw = gateway_config(tmp_path, str(sim.primary_path), api={"tls_cert": str(cert), "tls_key": str(key)})
    config = from_dict(raw)
    async with (
        run_gateway(raw, sim) as box,
        httpx.AsyncClient(
            base_url=f"https://{box.config.api.listen}",
            verify=ssl.create_default_context(cafile=str(cert)),
            timeout=10,
        ) as c,
    ):
        assert (await c.get("/healthz")).status_code == 200
        token = csrf_of((await c.get("/login")).text)
        r = await c.post("/login", data={"password": box.key, "csrf": token})
        assert r.status_code == 303
        assert "secure" in r.headers["set-cookie"].lower()
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
            await box.client.get("/healthz")
        # The watchdog's probe follows the scheme and reaches the daemon over loopback.
        settings = _watchdog_settings(config)
        assert settings.healthz_url.startswith("https://127.0.0.1:")
        facts = await FactsReader(settings, time.time()).read(time.time(), None)
        assert facts.healthz_failing_since is None, facts.healthz_error
