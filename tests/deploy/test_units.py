"""The systemd units, udev and polkit rules in systemd/, and the role's copies of them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
UNITS_DIR = REPO / "systemd"
ROLE = REPO / "ansible/roles/smsgw"
UNITS = ("smsgw.service", "smsgw-watchdog.service")
MAX_EXPOSURE = 2.5


def need(tool: str) -> str:
    """The tool's path; a missing tool fails the test and says what to install (nothing is skipped)."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing (apt-get install {'nodejs' if tool == 'node' else 'systemd'})")
    return path


def sections(name: str) -> dict[str, list[tuple[str, str]]]:
    """Section -> [(key, value)] in file order, comments dropped."""
    out: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in (UNITS_DIR / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            out[current] = []
            continue
        key, _, value = line.partition("=")
        out[current].append((key, value))
    return out


def values(name: str, section: str, key: str) -> list[str]:
    return [v for k, v in sections(name)[section] if k == key]


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with the host's stock units, our units and an executable at the ExecStart path."""
    need("systemd-analyze")
    root = tmp_path_factory.mktemp("root")
    exe = root / "opt/smsgw/venv/bin/smsgw"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for name in UNITS:
        shutil.copy(UNITS_DIR / name, root / "etc/systemd/system" / name)
    return root


def test_systemd_analyze_verify_accepts_every_unit(fake_root: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={fake_root}", *UNITS],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "warnings are errors here"


def exposure(name: str) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNITS_DIR / name)],
        capture_output=True,
        text=True,
        check=True,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert m, result.stdout
    return float(m.group(1))


def test_exposure_score_within_target_and_as_the_readme_states() -> None:
    need("systemd-analyze")
    gateway, watchdog = exposure("smsgw.service"), exposure("smsgw-watchdog.service")
    assert gateway <= MAX_EXPOSURE
    assert watchdog <= MAX_EXPOSURE
    readme = (REPO / "README.md").read_text()
    assert f"exposure {gateway}" in readme, f"README must state the gateway's exposure score ({gateway})"


@pytest.mark.parametrize("name", UNITS)
def test_directives_are_alphabetical_within_sections(name: str) -> None:
    for section, pairs in sections(name).items():
        keys = [k for k, _ in pairs]
        assert keys == sorted(keys, key=str.lower), f"[{section}] of {name} is not in alphabetical order"


def test_gateway_unit_contract() -> None:
    service = dict(sections("smsgw.service")["Service"])
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "always"
    assert service["User"] == "smsgw"
    assert "dialout" in service["SupplementaryGroups"].split()
    assert service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == "smsgw"
    assert service["ConfigurationDirectory"] == "smsgw"
    assert service["DevicePolicy"] == "closed"
    assert set(values("smsgw.service", "Service", "DeviceAllow")) == {
        "/dev/gsmmodem rw",
        "/dev/gsmmodem-aux rw",
        "char-ttyUSB rw",
        "char-ttyACM rw",
    }
    assert service["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert service["CapabilityBoundingSet"] == ""
    assert "@system-service" in values("smsgw.service", "Service", "SystemCallFilter")


def test_start_limit_never_trips_on_automatic_restarts() -> None:
    unit = dict(sections("smsgw.service")["Unit"])
    restart_s = int(dict(sections("smsgw.service")["Service"])["RestartSec"])
    burst, interval_s = int(unit["StartLimitBurst"]), int(unit["StartLimitIntervalSec"])
    # `burst` automatic starts are at least (burst - 1) * RestartSec apart in all.
    assert (burst - 1) * restart_s > interval_s


def test_watchdog_unit_is_independent_of_the_gateway() -> None:
    unit = dict(sections("smsgw-watchdog.service")["Unit"])
    for key in ("Requires", "BindsTo", "PartOf", "Requisite", "Upholds"):
        assert "smsgw.service" not in unit.get(key, ""), key
    assert unit["StartLimitIntervalSec"] == "0"
    service = dict(sections("smsgw-watchdog.service")["Service"])
    assert service["Restart"] == "always"
    assert int(service["WatchdogSec"]) > 0
    # The gateway's user: SQLite -shm/-wal files made by another user would lock the gateway out.
    assert service["User"] == "smsgw"
    assert service["ExecStart"].endswith("smsgw watchdog --config /etc/smsgw/smsgw.toml")


def role_vars() -> dict[str, object]:
    variables: dict[str, object] = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    variables.update(yaml.safe_load((ROLE / "vars/main.yml").read_text()))
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701  (unit files, not HTML)
    for key in ("_smsgw_bin", "_smsgw_venv"):
        variables[key] = env.from_string(str(variables[key])).render(**variables)
    return variables


@pytest.mark.parametrize(
    ("template", "source"),
    [
        ("smsgw.service.j2", "smsgw.service"),
        ("smsgw-watchdog.service.j2", "smsgw-watchdog.service"),
        ("smsgw.tmpfiles.j2", "smsgw.tmpfiles"),
        ("50-smsgw-watchdog.rules.j2", "50-smsgw-watchdog.rules"),
    ],
)
def test_role_templates_render_to_the_files_in_systemd(template: str, source: str) -> None:
    first, _, body = (ROLE / "templates" / template).read_text().partition("\n")
    assert first.startswith("{{ ansible_managed | comment")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)  # noqa: S701  (unit files, not HTML)
    env.filters["dirname"] = os.path.dirname
    assert env.from_string(body).render(**role_vars()) == (UNITS_DIR / source).read_text()


def test_role_installs_the_udev_rules_from_systemd() -> None:
    assert (ROLE / "files/60-smsgw-modem.rules").resolve() == UNITS_DIR / "60-smsgw-modem.rules"


POLKIT_CASES = [
    ("smsgw", "org.freedesktop.systemd1.manage-units", "smsgw.service", "restart", "yes"),
    ("smsgw", "org.freedesktop.systemd1.manage-units", "smsgw.service", "reset-failed", "yes"),
    ("smsgw", "org.freedesktop.systemd1.manage-units", "smsgw.service", "stop", None),
    ("smsgw", "org.freedesktop.systemd1.manage-units", "smsgw.service", "start", None),
    ("smsgw", "org.freedesktop.systemd1.manage-units", "ssh.service", "restart", None),
    ("smsgw", "org.freedesktop.systemd1.manage-units", "smsgw-watchdog.service", "restart", None),
    ("smsgw", "org.freedesktop.systemd1.manage-unit-files", "smsgw.service", "restart", None),
    ("smsgw", "org.freedesktop.login1.reboot", "", "", None),
    ("pi", "org.freedesktop.systemd1.manage-units", "smsgw.service", "restart", None),
    ("smsgw-watchdog", "org.freedesktop.systemd1.manage-units", "smsgw.service", "restart", None),
]

_POLKIT_HARNESS = """
const fs = require("fs");
const rules = [];
const polkit = {Result: {YES: "yes", NO: "no", NOT_HANDLED: null, AUTH_ADMIN: "auth_admin"},
                addRule: (f) => rules.push(f), log: () => {}};
new Function("polkit", fs.readFileSync(process.argv[1], "utf8"))(polkit);
const out = JSON.parse(process.argv[2]).map(([user, id, unit, verb]) => {
  const action = {id: id, lookup: (k) => ({unit: unit, verb: verb})[k]};
  const subject = {user: user, isInGroup: () => false};
  for (const rule of rules) { const r = rule(action, subject); if (r !== null && r !== undefined) return r; }
  return null;
});
console.log(JSON.stringify(out));
"""


def test_polkit_rule_lets_the_watchdog_restart_the_gateway_and_nothing_else() -> None:
    node = need("node")
    cases = [case[:4] for case in POLKIT_CASES]
    result = subprocess.run(
        [node, "-e", _POLKIT_HARNESS, str(UNITS_DIR / "50-smsgw-watchdog.rules"), json.dumps(cases)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == [case[4] for case in POLKIT_CASES]


def test_udev_rules_name_each_modem_and_keep_modemmanager_off() -> None:
    text = (UNITS_DIR / "60-smsgw-modem.rules").read_text()
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    for vid_pid in ("2c7c:0125", "1e0e:9001", "12d1:1506", "12d1:1001"):
        vid, pid = vid_pid.split(":")
        mine = [r for r in rules if f'=="{vid}"' in r and f'=="{pid}"' in r]
        assert any('SYMLINK+="gsmmodem"' in r for r in mine), vid_pid
        assert any('SYMLINK+="gsmmodem-aux"' in r for r in mine), vid_pid
        assert all('ENV{ID_MM_DEVICE_IGNORE}="1"' in r for r in mine), vid_pid
    for rule in rules:
        # Every assignment uses = or +=; every match ==/!= (a typo "=" in a match would assign).
        for key, op in re.findall(r'([A-Z]+(?:\{[^}]*\})?)(==|!=|\+=|=)"', rule):
            if key.startswith(("ATTRS", "SUBSYSTEMS", "ACTION", "SUBSYSTEM", "ATTR{id")):
                assert op in ("==", "!="), rule
    assert 'LABEL="smsgw_modem_end"' in text


def test_the_daemon_has_descriptors_for_its_connection_limit() -> None:
    """Without LimitNOFILE systemd gives 1,024: ~1,000 idle connections then starve /healthz."""
    from appliance.config import ApiConfig  # noqa: PLC0415

    (limit,) = values("smsgw.service", "Service", "LimitNOFILE")
    assert int(limit) >= 4 * ApiConfig().max_connections  # sockets, ledger, serial ports, webhooks
