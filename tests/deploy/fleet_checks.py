"""Checks on the chroot provisioned as a host of the inventory's `fleet` group (scripts/deploy-test).

Not collected by `make test` (no test_ prefix): it needs DEPLOY_ROOT, a root the role provisioned
with the fleet inventory. No PostgreSQL server is reachable here: these check what the role wrote,
that the daemon's config check accepts it, and that no PostgreSQL server was installed on the box.
"""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.deploy.chroot_checks import ROOT, UNITS, in_root

pytestmark = pytest.mark.skipif(not (ROOT / "etc").is_dir(), reason="DEPLOY_ROOT is not a provisioned root")

CONFIG = "/etc/smsgw/smsgw.toml"


def test_the_config_names_the_fleet_ledger_and_this_box() -> None:
    text = (ROOT / CONFIG.lstrip("/")).read_text()
    config = tomllib.loads(text)
    assert config["store"] == {"url": "postgresql://smsgw@db.invalid/smsgw"}
    # The role's default box name: the inventory host name (the chroot's path), other characters '-'.
    box = re.sub(r"[^A-Za-z0-9._-]", "-", str(ROOT))[:63]
    assert config["fleet"] == {"box": box, "lease_s": 30.0}
    assert "pa:ss" not in text  # the password is in pgpass alone


def test_config_check_accepts_it_as_the_service_user() -> None:
    out = in_root("runuser", "-u", "smsgw", "--", "/opt/smsgw/venv/bin/smsgw", "config", "check", CONFIG)
    assert ": ok (" in out.stdout


def test_the_password_file_is_roots_alone_with_pgpass_escapes() -> None:
    pgpass = ROOT / "etc/smsgw/pgpass"
    st = pgpass.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o600)
    assert pgpass.read_text() == "*:*:*:*:pa\\:ss\\\\word\n"
    denied = in_root("runuser", "-u", "smsgw", "--", "cat", "/etc/smsgw/pgpass", check=False)
    assert denied.returncode != 0


def test_both_services_get_it_as_a_credential_and_still_verify() -> None:
    for name in UNITS:
        dropin = (ROOT / f"etc/systemd/system/{name}.d/fleet.conf").read_text()
        assert "LoadCredential=pgpass:/etc/smsgw/pgpass" in dropin.splitlines()
        assert "Environment=PGPASSFILE=%d/pgpass" in dropin.splitlines()
    verify = in_root("systemd-analyze", "verify", *UNITS, check=False)
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr == ""


def test_no_postgresql_server_on_the_box() -> None:
    listing = in_root("dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n").stdout
    installed = [line.split()[0] for line in listing.splitlines() if line.endswith(" installed")]
    assert installed, "dpkg-query listed nothing"
    assert [p for p in installed if p.startswith("postgresql")] == []
    assert not list((ROOT / "usr/lib/postgresql").glob("*/bin/postgres"))
