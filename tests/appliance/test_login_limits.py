"""Login limits, the hashing pool, allowed Host names and the TLS/Host config keys."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import edge, login
from appliance.config import ConfigError, from_dict
from appliance.session import HashPool, HashPoolBusy, hash_password
from tests.support.certificates import self_signed
from tests.support.waiting import eventually


class Clock:
    """Time the test moves by hand: the limits' arithmetic over an hour runs in microseconds."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_an_address_is_locked_out_with_doubling_backoff_after_the_free_failures() -> None:
    clock = Clock()
    throttle = login.LoginThrottle(clock=clock)
    for _ in range(login.FREE_FAILURES):
        assert throttle.wait_s("10.0.0.5") == 0
        throttle.begin("10.0.0.5")
        assert throttle.failed("10.0.0.5") == 0
    locks = []
    for _ in range(5):
        throttle.begin("10.0.0.5")
        locks.append(throttle.failed("10.0.0.5"))
        assert throttle.wait_s("10.0.0.5") == locks[-1]
        clock.t += locks[-1]
    assert locks == [1, 2, 4, 8, 16]
    assert throttle.wait_s("10.0.0.6") == 0  # another address is not affected
    clock.t += login.FORGET_S + 1  # an hour without failures: free again
    throttle.begin("10.0.0.5")
    assert throttle.failed("10.0.0.5") == 0


def test_the_lockout_is_capped_and_success_clears_it() -> None:
    clock = Clock()
    throttle = login.LoginThrottle(clock=clock)
    for _ in range(login.FREE_FAILURES + 40):
        lock = throttle.failed("10.0.0.5")
        clock.t += lock
    assert lock == login.MAX_LOCK_S
    throttle.succeeded("10.0.0.5")
    assert throttle.wait_s("10.0.0.5") == 0


def test_one_attempt_in_flight_per_address() -> None:
    throttle = login.LoginThrottle(clock=Clock())
    throttle.begin("10.0.0.5")
    assert throttle.wait_s("10.0.0.5") > 0
    throttle.abandoned("10.0.0.5")  # refused before checking: no failure counted
    assert throttle.wait_s("10.0.0.5") == 0


def test_ipv6_addresses_share_the_limits_of_their_64() -> None:
    assert login.bucket("2001:db8:1:2::1") == login.bucket("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert login.bucket("2001:db8:1:3::1") != login.bucket("2001:db8:1:2::1")
    assert login.bucket("::ffff:192.0.2.7") == "192.0.2.7"
    clock = Clock()
    throttle = login.LoginThrottle(clock=clock)
    for i in range(login.FREE_FAILURES + 1):
        throttle.failed(f"2001:db8:1:2::{i + 1}")  # a fresh privacy address for every guess
    assert throttle.wait_s("2001:db8:1:2::abcd") > 0


def test_the_box_wide_budget_refills_slowly() -> None:
    clock = Clock()
    throttle = login.LoginThrottle(clock=clock)
    assert [throttle.take_check() for _ in range(login.BURST)] == [0] * login.BURST
    wait = throttle.take_check()
    assert wait == pytest.approx(1 / login.CHECKS_PER_S)
    clock.t += wait
    assert throttle.take_check() == 0
    assert throttle.take_check() > 0


def test_many_addresses_cannot_push_a_locked_one_out() -> None:
    clock = Clock()
    throttle = login.LoginThrottle(clock=clock)
    for _ in range(login.FREE_FAILURES + 3):
        throttle.failed("10.0.0.5")
    for i in range(login.MAX_ADDRESSES + 10):
        throttle.failed(f"10.1.{i // 256}.{i % 256}")
    assert throttle.wait_s("10.0.0.5") > 0
    assert len(throttle._records) <= login.MAX_ADDRESSES


@pytest.mark.slow
async def test_hash_pool_refuses_beyond_its_threads_instead_of_queueing() -> None:
    stored = hash_password("pw", iterations=1000)
    slow = hash_password("pw", iterations=3_000_000)  # ~2 s: certainly still running below
    pool = HashPool(workers=1)
    running = asyncio.create_task(pool.check("nope", slow))
    await asyncio.sleep(0)
    assert pool.busy == 1
    with pytest.raises(HashPoolBusy):
        await pool.check("pw", stored)
    running.cancel()  # the caller goes away; the slot stays taken until the hash ends
    with pytest.raises(asyncio.CancelledError):
        await running
    assert pool.busy == 1
    await eventually(lambda: pool.busy == 0, timeout_s=30, interval_s=0.05)
    assert await pool.check("pw", stored)
    assert not await pool.check("pW", stored)


@pytest.mark.parametrize(
    ("host", "local", "allowed"),
    [
        ("gw.lan", None, True),
        ("GW.LAN.:8080", None, True),
        ("x.ops.lan", None, True),
        ("ops.lan", None, False),
        ("evil.example", None, False),
        ("evilgw.lan", None, False),
        ("127.0.0.1:8080", None, True),
        ("127.8.9.10", None, True),
        ("[::1]:8080", None, True),
        ("localhost", None, True),
        ("192.0.2.10:8080", "192.0.2.10", True),  # the address the request arrived on
        ("192.0.2.11", "192.0.2.10", False),
        ("[fd00::2]:8080", "fd00::2", True),
    ],
)
def test_allowed_hosts(host: str, local: str | None, allowed: bool) -> None:
    hosts = edge.AllowedHosts(["gw.lan", "*.ops.lan"])
    assert hosts.allows(host, local) is allowed


def test_default_allowed_hosts_are_the_box_names_and_addresses() -> None:
    hosts = edge.allowed_hosts(from_dict({}).api)
    import socket  # noqa: PLC0415

    assert hosts.allows(socket.gethostname())
    for address in edge.interface_addresses():
        assert hosts.allows(address), address
    assert not hosts.allows("rebind.attacker.example")
    assert edge.allowed_hosts(from_dict({"api": {"allowed_hosts": ["*"]}}).api).allows("anything")


@pytest.mark.parametrize(
    ("api", "expected"),
    [
        ({"allowed_hosts": ["http://gw.lan"]}, "api.allowed_hosts[0]"),
        ({"allowed_hosts": ["gw.lan:8080"]}, "api.allowed_hosts[0]"),
        ({"allowed_hosts": ["ok.lan", "bad host"]}, "api.allowed_hosts[1]"),
        ({"tls_cert": "/nonexistent/cert.pem"}, "set both"),
        (
            {"tls_cert": "/nonexistent/cert.pem", "tls_key": "/nonexistent/key.pem"},
            "api.tls_cert: cannot read",
        ),
    ],
)
def test_bad_api_keys_name_the_key(api: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        from_dict({"api": api})


@pytest.mark.slow
def test_tls_files_must_be_readable_pem(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    config = from_dict({"api": {"tls_cert": str(cert), "tls_key": str(key)}})
    assert config.api.tls_cert == str(cert)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"api\.tls_key: .* is not a PEM file"):
        from_dict({"api": {"tls_cert": str(cert), "tls_key": str(junk)}})
    path = tmp_path / "smsgw.toml"
    path.write_text(f'[api]\ntls_cert = "{cert}"\ntls_key = "{tmp_path / "missing.pem"}"\n')
    result = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "config", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "api.tls_key: cannot read" in result.stderr
