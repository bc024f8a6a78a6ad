"""Checks on a root filesystem the Ansible role provisioned (run by scripts/deploy-test).

Not collected by `make test` (no test_ prefix): it needs DEPLOY_ROOT, a provisioned chroot.
There is no service manager in a chroot, so the gateway is started the way its unit would
start it (ExecStart, User, Group, SupplementaryGroups, Environment, UMask) with setpriv,
and must say READY=1 and WATCHDOG=1 over a NOTIFY_SOCKET this test listens on.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("DEPLOY_ROOT", "/nonexistent"))
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
UNITS = ("smsgw.service", "smsgw-watchdog.service")

pytestmark = pytest.mark.skipif(not (ROOT / "etc").is_dir(), reason="DEPLOY_ROOT is not a provisioned root")


def in_root(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chroot", str(ROOT), *argv], capture_output=True, text=True, check=check, timeout=60
    )


def passwd(name: str) -> list[str]:
    for line in (ROOT / "etc/passwd").read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    raise AssertionError(f"no user {name} in the chroot")


def members(group: str) -> set[str]:
    for line in (ROOT / "etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return set(filter(None, fields[3].split(",")))
    raise AssertionError(f"no group {group} in the chroot")


def unit(name: str) -> dict[str, list[str]]:
    """The [Service] section of an installed unit, every value of repeated keys kept."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in (ROOT / "etc/systemd/system" / name).read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_users() -> None:
    assert passwd("smsgw")[6] == "/usr/sbin/nologin"
    assert "smsgw" in members("dialout")


def test_files() -> None:
    config = ROOT / "etc/smsgw/smsgw.toml"
    st = config.stat()
    assert oct(st.st_mode & 0o777) == "0o640"
    assert st.st_uid == 0
    assert (ROOT / "etc/smsgw").stat().st_mode & 0o777 == 0o750
    for name in UNITS:
        text = (ROOT / "etc/systemd/system" / name).read_text()
        assert text.startswith("#\n# Ansible managed\n#\n")
    rules = ROOT / "etc/udev/rules.d/60-smsgw-modem.rules"
    assert rules.read_text() == (REPO / "systemd/60-smsgw-modem.rules").read_text()
    assert 'subject.user === "smsgw"' in (ROOT / "etc/polkit-1/rules.d/50-smsgw-watchdog.rules").read_text()
    assert (ROOT / "etc/tmpfiles.d/smsgw.conf").is_file()
    state = ROOT / "var/lib/smsgw"
    assert state.stat().st_mode & 0o7777 == 0o750


def test_a_box_outside_the_fleet_keeps_its_sqlite_store_and_no_postgresql_password() -> None:
    config = tomllib.loads((ROOT / "etc/smsgw/smsgw.toml").read_text())
    assert config["store"] == {"path": "/var/lib/smsgw/ledger.sqlite3"}
    assert "fleet" not in config
    assert not (ROOT / "etc/smsgw/pgpass").exists()
    for name in UNITS:
        assert not (ROOT / f"etc/systemd/system/{name}.d/fleet.conf").exists()


def test_venv_runs_pinned_version() -> None:
    out = in_root("/opt/smsgw/venv/bin/smsgw", "--version").stdout.strip()
    assert out == f"smsgw {VERSION}"


def test_config_check_passes_as_the_service_user() -> None:
    out = in_root(
        "runuser",
        "-u",
        "smsgw",
        "--",
        "/opt/smsgw/venv/bin/smsgw",
        "config",
        "check",
        "/etc/smsgw/smsgw.toml",
    )
    assert ": ok (" in out.stdout


def test_units_enabled_and_modemmanager_masked() -> None:
    wants = ROOT / "etc/systemd/system/multi-user.target.wants"
    for name in UNITS:
        assert str((wants / name).readlink()) == f"/etc/systemd/system/{name}"
    assert str((ROOT / "etc/systemd/system/ModemManager.service").readlink()) == "/dev/null"


def test_installed_units_verify_and_score() -> None:
    verify = in_root("systemd-analyze", "verify", *UNITS, check=False)
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr == ""
    score = in_root("systemd-analyze", "security", "--offline=true", "--threshold=25", "smsgw.service")
    assert "Overall exposure level for smsgw.service: 1." in score.stdout


def test_api_key_created_and_saved_on_the_controller() -> None:
    listing = in_root(
        "runuser",
        "-u",
        "smsgw",
        "--",
        "/opt/smsgw/venv/bin/smsgw",
        "keys",
        "list",
        "--config",
        "/etc/smsgw/smsgw.toml",
    )
    assert any(
        line.split("\t")[1] == "deploy-test" and line.endswith("active")
        for line in listing.stdout.splitlines()
    )
    saved = REPO / ".deploy-test/credentials" / "deploy-test-deploy-test.key"
    assert saved.read_text().startswith("sgw_")
    assert saved.stat().st_mode & 0o777 == 0o600


@contextlib.contextmanager
def notify_socket(name: str) -> Iterator[tuple[socket.socket, str]]:
    inside = f"/run/{name}.deploy-test.notify"
    path = ROOT / inside.lstrip("/")
    path.parent.mkdir(exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    # The service user must be able to send to it, as it can to systemd's.
    path.chmod(0o666)
    try:
        yield sock, inside
    finally:
        sock.close()
        path.unlink()


def wait_for(sock: socket.socket, field: str, timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen.extend(data.splitlines())
        if field in data.splitlines():
            return seen
        if "STOPPING=1" in data.splitlines():
            break  # it gave up; its output is in the assertion of started_like
    raise AssertionError(f"no {field} within {timeout_s}s; got {seen}")


@contextlib.contextmanager
def started_like(name: str) -> Iterator[tuple[socket.socket, dict[str, list[str]]]]:
    """Run the unit's ExecStart as its User/Group/SupplementaryGroups, with its UMask and
    Environment, and the variables systemd sets (NOTIFY_SOCKET, WATCHDOG_USEC, HOME, ...)."""
    service = unit(name)
    user, group = service["User"][0], service["Group"][0]
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
        "HOME": passwd(user)[5],
        "USER": user,
        "LOGNAME": user,
        "SHELL": passwd(user)[6],
        "WATCHDOG_USEC": str(int(service["WatchdogSec"][0]) * 1_000_000),
    }
    for assignment in service.get("Environment", []):
        for item in shlex.split(assignment):
            key, _, value = item.partition("=")
            env[key] = value
    groups = ",".join(g for line in service["SupplementaryGroups"] for g in line.split())
    with notify_socket(name) as (sock, inside):
        env["NOTIFY_SOCKET"] = inside
        cmd = [
            "chroot", str(ROOT),
            "setpriv", f"--reuid={user}", f"--regid={group}", f"--groups={groups}",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
            "sh", "-c", f'umask {service["UMask"][0]} && exec "$0" "$@"',
            "env", "-i", *(f"{k}={v}" for k, v in env.items()),
            *shlex.split(service["ExecStart"][0]),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            yield sock, service
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
            print(f"--- {name} output ---\n{out}")  # shown by pytest when the test fails
        assert proc.returncode == 0, out


def test_gateway_reaches_ready_with_the_units_execstart_user_and_environment() -> None:
    with started_like("smsgw.service") as (sock, service):
        seen = wait_for(sock, "READY=1", 60)
        readyz = httpx.get(f"http://{os.environ['DEPLOY_API_LISTEN']}/readyz", timeout=5)
        assert readyz.status_code == 200, readyz.text
        seen += wait_for(sock, "WATCHDOG=1", int(service["WatchdogSec"][0]))
        assert any(line.startswith("STATUS=") for line in seen)
        ledger = (ROOT / "var/lib/smsgw/ledger.sqlite3").stat()
        assert str(ledger.st_uid) == passwd("smsgw")[2]
        assert ledger.st_mode & 0o777 == 0o600  # UMask=0077


def test_watchdog_reaches_ready_with_the_units_execstart_user_and_environment() -> None:
    with started_like("smsgw-watchdog.service") as (sock, _service):
        wait_for(sock, "READY=1", 60)
