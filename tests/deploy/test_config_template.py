"""The role's smsgw.toml.j2, rendered as Ansible would, loads with the daemon's config code.

A fast check for `make test`; scripts/deploy-test renders it with Ansible itself and runs
`smsgw config check` on the box.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from appliance.config import Config, ConfigError, from_dict

ROLE = Path(__file__).resolve().parents[2] / "ansible/roles/smsgw"


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("true", "yes", "1", "on")


def render(**overrides: Any) -> str:
    """The template with the role's defaults and these variables, through Ansible's filters it uses."""
    variables: dict[str, Any] = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    variables |= {
        "smsgw_box_name": "box-1",
        "smsgw_fleet": False,
        "smsgw_fleet_box": "box-1",
        "ansible_managed": "x",
    }
    variables |= overrides
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701  (TOML, not HTML)
    env.filters |= {"to_json": json.dumps, "bool": _bool, "comment": lambda text: f"#\n# {text}\n#"}
    return env.from_string((ROLE / "templates/smsgw.toml.j2").read_text()).render(**variables)


def load(**overrides: Any) -> Config:
    return from_dict(tomllib.loads(render(**overrides)))


def test_a_box_outside_the_fleet_keeps_its_sqlite_ledger() -> None:
    config = load()
    assert config.store.path == "/var/lib/smsgw/ledger.sqlite3"
    assert config.store.url == ""
    assert "fleet" not in tomllib.loads(render())


def test_a_fleet_box_gets_the_url_and_its_box_name_but_never_the_password() -> None:
    text = render(
        smsgw_fleet=True,
        smsgw_fleet_box="rack-a",
        smsgw_store_url="postgresql://smsgw@db.lan/smsgw",
        smsgw_store_password="s3cret:pw",  # noqa: S106  (a test value)
    )
    raw = tomllib.loads(text)
    assert raw["store"] == {"url": "postgresql://smsgw@db.lan/smsgw"}
    assert raw["fleet"] == {"box": "rack-a", "lease_s": 30.0}
    assert "s3cret" not in text
    config = from_dict(raw)
    assert config.fleet.box == "rack-a"


def test_the_round_2_sections_carry_the_daemons_defaults() -> None:
    rendered, defaults = load(), from_dict({})
    assert {"smtp", "ussd", "escalation", "inbound"} <= tomllib.loads(
        render()
    ).keys()  # written out, not left out
    for section in ("smtp", "ussd", "escalation", "inbound"):
        assert getattr(rendered, section) == getattr(defaults, section), section
    assert rendered.watchdog.escalate_after_s == defaults.watchdog.escalate_after_s
    assert rendered.watchdog.escalate_email == defaults.watchdog.escalate_email


def test_round_2_variables_reach_the_config() -> None:
    config = load(
        smsgw_smtp_host="mail.lan",
        smsgw_smtp_user="smsgw",
        smsgw_smtp_password='p"w\\x',  # noqa: S106  (quotes and backslashes survive TOML)
        smsgw_smtp_from="smsgw@box.lan",
        smsgw_ussd_balance_code="*101#",
        smsgw_ussd_balance_regex=r"(\d+,\d{2}) EUR",
        smsgw_escalation_min_after_s=60,
        smsgw_inbound_reply_window_s=3600,
        smsgw_inbound_stop_keywords=["STOP", "HALT"],
        smsgw_watchdog_escalate_email=["mailto:oncall@example.com"],
    )
    assert (config.smtp.host, config.smtp.user, config.smtp.secret()) == ("mail.lan", "smsgw", 'p"w\\x')
    assert config.ussd.balance_regex == r"(\d+,\d{2}) EUR"
    assert config.ussd.balance_code == "*101#"
    assert config.escalation.min_after_s == 60
    assert config.inbound.reply_window_s == 3600.0
    assert config.inbound.stop_keywords == ("stop", "halt")
    assert config.watchdog.escalate_email == ("mailto:oncall@example.com",)


def test_a_bad_role_variable_fails_the_config_check_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^ussd\.check_every_s:"):
        load(smsgw_ussd_check_every_s=5)
