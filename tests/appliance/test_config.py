"""The TOML configuration: every error names the key at fault; `smsgw config check` says the same."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from appliance.config import (
    Config,
    ConfigError,
    DispatcherConfig,
    FleetConfig,
    ModemConfig,
    box_name_of,
    from_dict,
    load,
)
from tests.support.cli import config_check

FULL = """\
[gateway]
name = "office-gw"
default_region = "GB"

[[modems]]
port = "/dev/gsmmodem"
name = "left"
baudrate = 115200
pin = "1234"
rate_per_minute = 10
rate_burst = 3
command_timeout_s = 5.5
submit_timeout_s = 120

[[modems]]
port = "socket://10.0.0.2:4001"
name = "right"

[api]
listen = "[::]:8443"
max_text_chars = 800
status_page_public = false
callback_secret = "whsec_abc"

[store]
path = "/srv/smsgw/ledger.sqlite3"
body_retention_days = 7

[dispatcher]
max_attempts = 3
per_recipient_per_minute = 2
unknown_outcome = "hold"
modem_failures_before_set_aside = 2

[inbound]
stop_keywords = ["STOP", "HALT"]

[[webhooks]]
url = "https://hooks.example.com/sms"
secret = "whsec_c2VjcmV0"
events = ["message.status"]

[watchdog]
port = "/dev/gsmmodem-aux"
oncall = ["+4915112345678", "+447700900123"]

[simulator]
control = ""
"""


def error_of(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        from_dict(raw)
    return str(info.value)


def test_defaults_are_a_valid_demo_config() -> None:
    config = from_dict({})
    assert config.modem == ModemConfig()
    assert config.modem.port == "sim"
    assert config.dispatcher == DispatcherConfig()
    assert config.dispatcher.unknown_outcome == "resend"


def test_a_full_file_reads_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "smsgw.toml"
    path.write_text(FULL)
    config = load(path, environ={})
    assert config.source == str(path)
    assert config.gateway.name == "office-gw"
    assert config.gateway.default_region == "GB"
    assert [m.name for m in config.modems] == ["left", "right"]
    left, right = config.modems
    assert left == ModemConfig(
        port="/dev/gsmmodem",
        name="left",
        baudrate=115200,
        pin="1234",
        rate_per_minute=10.0,
        rate_burst=3,
        command_timeout_s=5.5,
        submit_timeout_s=120.0,
    )
    assert isinstance(left.rate_per_minute, float)  # an integer in TOML is fine for a number key
    assert right.port == "socket://10.0.0.2:4001"
    assert right.baudrate == 115200  # defaults fill the rest
    assert right.rate_burst == 5
    assert config.api.listen == "[::]:8443"
    assert config.api.status_page_public is False
    assert config.store.body_retention_days == 7
    assert config.dispatcher.unknown_outcome == "hold"
    assert config.dispatcher.per_recipient_per_minute == 2.0
    assert config.dispatcher.max_attempts == 3
    assert config.inbound.stop_keywords == ("stop", "halt")  # folded at load (appliance.keywords)
    assert config.inbound.start_keywords == ("start", "unstop", "yes")
    (hook,) = config.webhooks
    assert hook.url == "https://hooks.example.com/sms"
    assert hook.events == ("message.status",)
    assert config.watchdog.oncall == ("+4915112345678", "+447700900123")
    assert config.simulator.control == ""
    # Reading the same file twice gives the same (frozen, comparable) config.
    assert load(path, environ={}) == config


@pytest.mark.parametrize(
    ("raw", "wanted"),
    [
        ({"modme": {}}, ["unknown section [modme]", "did you mean 'modem'"]),
        ({"webhook": [{"url": "https://x"}]}, ["unknown section [webhook]", "did you mean 'webhooks'"]),
        ({"modem": {"prot": "/dev/ttyUSB2"}}, ["modem.prot", "unknown key", "did you mean 'port'"]),
        ({"dispatcher": {"max_attempt": 3}}, ["dispatcher.max_attempt", "did you mean 'max_attempts'"]),
        ({"api": {"lisen": "0.0.0.0:8080"}}, ["api.lisen", "did you mean 'listen'"]),
        ({"modems": [{}, {"colour": "red"}]}, ["modems[1].colour", "unknown key"]),
    ],
)
def test_unknown_names_are_errors_with_a_suggestion(raw: dict[str, Any], wanted: list[str]) -> None:
    message = error_of(raw)
    for part in wanted:
        assert part in message


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        ({"modem": {"baudrate": "fast"}}, "modem.baudrate", "expected an integer"),
        ({"modem": {"baudrate": 9600.5}}, "modem.baudrate", "expected an integer"),
        ({"modem": {"baudrate": True}}, "modem.baudrate", "expected an integer"),
        ({"modem": {"port": 3}}, "modem.port", "expected a string"),
        ({"modem": {"rate_per_minute": "20"}}, "modem.rate_per_minute", "expected a number"),
        ({"modem": {"rate_burst": 2.5}}, "modem.rate_burst", "expected an integer"),
        ({"api": {"status_page_public": "yes"}}, "api.status_page_public", "expected true or false"),
        ({"watchdog": {"oncall": "+4915112345678"}}, "watchdog.oncall", "expected a list"),
        ({"watchdog": {"oncall": [4915112345678]}}, "watchdog.oncall[0]", "expected a string"),
        ({"api": "0.0.0.0:8080"}, "api", "expected a table"),
        ({"modems": {"port": "sim"}}, "modems", "[[modems]]"),
    ],
)
def test_wrong_types_name_the_key(raw: dict[str, Any], key: str, expected: str) -> None:
    message = error_of(raw)
    assert message.startswith(f"{key}:"), message
    assert expected in message


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        ({"modem": {"pin": "12"}}, "modem.pin", "4 to 8 digits"),
        ({"modem": {"pin": "12a4"}}, "modem.pin", "4 to 8 digits"),
        ({"modems": [{"port": "/dev/a"}, {"port": "/dev/b", "pin": "123456789"}]}, "modems[1].pin", "4 to 8"),
        ({"watchdog": {"pin": "4711"}}, "watchdog.pin", "6 to 32 digits"),
        ({"watchdog": {"pin": "123456x"}}, "watchdog.pin", "6 to 32 digits"),
        ({"modem": {"port": ""}}, "modem.port", "must not be empty"),
        ({"modem": {"rate_per_minute": 0}}, "modem.rate_per_minute", "positive"),
        ({"modem": {"rate_burst": 0}}, "modem.rate_burst", "must be 1 to 100"),
        ({"modem": {"rate_burst": 1000}}, "modem.rate_burst", "must be 1 to 100"),
        (
            {"modems": [{"port": "/dev/a"}, {"port": "/dev/b", "rate_burst": -1}]},
            "modems[1].rate_burst",
            "1 to",
        ),
        ({"store": {"reserve_bytes": 1000}}, "store.reserve_bytes", "1 MiB"),
        ({"store": {"reserve_bytes": 2**40}}, "store.reserve_bytes", "1 GiB"),
        ({"api": {"listen": "8080"}}, "api.listen", "host:port"),
        ({"api": {"listen": "localhost:http"}}, "api.listen", "host:port"),
        ({"api": {"listen": "0.0.0.0:70000"}}, "api.listen", "host:port"),
        ({"api": {"listen": ":8080"}}, "api.listen", "host:port"),
        ({"gateway": {"default_region": "Germany"}}, "gateway.default_region", "two-letter region"),
        ({"gateway": {"default_region": "de"}}, "gateway.default_region", "two-letter region"),
        ({"watchdog": {"oncall": ["+4915112345678", "015112345678"]}}, "watchdog.oncall[1]", "E.164"),
        ({"dispatcher": {"unknown_outcome": "drop"}}, "dispatcher.unknown_outcome", '"resend" or "hold"'),
        ({"dispatcher": {"max_attempts": 0}}, "dispatcher.max_attempts", "at least 1"),
        ({"webhooks": [{"url": "ftp://x"}]}, "webhooks[0].url", "http"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, Any], key: str, expected: str) -> None:
    message = error_of(raw)
    assert message.startswith(f"{key}:"), message
    assert expected in message


def test_modem_and_modems_together_are_refused() -> None:
    message = error_of({"modem": {"port": "/dev/a"}, "modems": [{"port": "/dev/b"}]})
    assert "[modem]" in message
    assert "[[modems]]" in message


def test_two_modems_on_one_port_are_refused() -> None:
    assert "share one port" in error_of({"modems": [{"port": "/dev/a"}, {"port": "/dev/a"}]})


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "smsgw.toml"
    path.write_text('[modem]\nport = "/dev/ttyUSB2"\nbaudrate = 9600\n')
    env = {
        "SMSGW_MODEM__PORT": "/dev/gsmmodem",  # a bare string needs no quotes
        "SMSGW_MODEM__RATE_PER_MINUTE": "12",  # parsed as a TOML value
        "SMSGW_API__LISTEN": '"127.0.0.1:9000"',
        "SMSGW_DISPATCHER__UNKNOWN_OUTCOME": "hold",
        "OTHER_VARIABLE": "ignored",
    }
    config = load(path, environ=env)
    assert config.modem.port == "/dev/gsmmodem"
    assert config.modem.baudrate == 9600  # from the file
    assert config.modem.rate_per_minute == 12.0
    assert config.api.listen == "127.0.0.1:9000"
    assert config.dispatcher.unknown_outcome == "hold"
    # Without a file, the environment alone configures the defaults.
    assert load(None, environ={"SMSGW_MODEM__PORT": "/dev/ttyACM0"}).modem.port == "/dev/ttyACM0"


def test_environment_values_are_validated_like_the_file() -> None:
    with pytest.raises(ConfigError, match=r"^modem\.baudrate: expected an integer"):
        load(None, environ={"SMSGW_MODEM__BAUDRATE": "fast"})
    with pytest.raises(ConfigError, match=r"modem\.prot: unknown key \(did you mean 'port'\?\)"):
        load(None, environ={"SMSGW_MODEM__PROT": "/dev/x"})


def test_environment_cannot_override_modems_tables(tmp_path: Path) -> None:
    path = tmp_path / "smsgw.toml"
    path.write_text('[[modems]]\nport = "/dev/a"\n')
    with pytest.raises(ConfigError, match="SMSGW_MODEM__PORT"):
        load(path, environ={"SMSGW_MODEM__PORT": "/dev/b"})


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "missing.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[modem\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load(broken, environ={})
    assert str(broken) in str(info.value)


def test_config_is_frozen() -> None:
    config: Config = from_dict({})
    with pytest.raises(AttributeError):
        config.modem.port = "/dev/x"  # type: ignore[misc]


@pytest.mark.slow
def test_config_check_says_ok(tmp_path: Path) -> None:
    path = tmp_path / "smsgw.toml"
    path.write_text(FULL)
    result = config_check(str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: ok")
    assert "2 modem(s)" in result.stdout
    assert result.stderr == ""


@pytest.mark.slow
def test_config_check_names_the_bad_key_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "smsgw.toml"
    path.write_text('[modem]\nport = "/dev/gsmmodem"\nbaud = 9600\n')
    result = config_check(str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "modem.baud: unknown key (did you mean 'baudrate'?)" in result.stderr
    result = config_check("--config", str(path))
    assert result.returncode == 2
    assert "modem.baud" in result.stderr


def test_environment_strings_that_look_like_numbers_stay_strings() -> None:
    # A SIM PIN is digits; a string key must not turn into an integer and be refused.
    env = {"SMSGW_MODEM__PIN": "1234", "SMSGW_GATEWAY__NAME": "2024", "SMSGW_API__CALLBACK_SECRET": "true"}
    config = load(None, environ=env)
    assert config.modem.pin == "1234"
    assert config.gateway.name == "2024"
    assert config.api.callback_secret == "true"  # noqa: S105  (a test value)
    assert load(None, environ={"SMSGW_MODEM__PIN": '"0042"'}).modem.pin == "0042"  # quoted TOML works too


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"modem": {"command_timeout_s": 0}}, "modem.command_timeout_s"),
        ({"modem": {"submit_timeout_s": -1}}, "modem.submit_timeout_s"),
        ({"dispatcher": {"per_recipient_per_minute": 0}}, "dispatcher.per_recipient_per_minute"),
        ({"dispatcher": {"backoff_base_s": -5}}, "dispatcher.backoff_base_s"),
    ],
)
def test_times_and_rates_must_be_positive(raw: dict[str, Any], key: str) -> None:
    message = error_of(raw)
    assert message.startswith(f"{key}:"), message
    assert "positive" in message


FLEET_STORE = {
    "store": {"url": "postgresql://smsgw@db.lan/smsgw"},
    "fleet": {"box": "rack-1.pi_2", "lease_s": 45},
}


def test_a_fleet_box_reads_its_postgresql_url_and_box_name(tmp_path: Path) -> None:
    path = tmp_path / "smsgw.toml"
    path.write_text('[store]\nurl = "postgres://smsgw@db.lan:5433/smsgw"\n\n[fleet]\nbox = "rack-1"\n')
    config = load(path, environ={"SMSGW_FLEET__LEASE_S": "45"})
    assert config.store.url == "postgres://smsgw@db.lan:5433/smsgw"
    assert config.fleet.box == "rack-1"
    assert config.fleet.lease_s == 45.0
    assert from_dict(FLEET_STORE).fleet == FleetConfig(box="rack-1.pi_2", lease_s=45.0)


def test_without_fleet_keys_the_box_is_named_after_its_host() -> None:
    config = from_dict({})
    assert config.store.url == ""
    assert config.fleet.box == box_name_of(socket.gethostname())
    assert config.fleet.lease_s == 30.0
    assert box_name_of("pi 4 (office)") == "pi-4--office-"
    assert box_name_of("x" * 80) == "x" * 63
    assert box_name_of("") == "smsgw"


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        (
            {"store": {"path": "/var/lib/smsgw/l.sqlite3", "url": "postgresql://db/smsgw"}},
            "store.url",
            "not both",
        ),
        ({"store": {"url": "mysql://smsgw:pw@db/smsgw"}}, "store.url", "got a 'mysql' one"),
        ({"store": {"url": "db.lan/smsgw"}}, "store.url", "postgresql://"),
        ({"fleet": {"box": ""}}, "fleet.box", "1 to 63"),
        ({"fleet": {"box": "rack 1"}}, "fleet.box", "1 to 63"),
        ({"fleet": {"box": "x" * 64}}, "fleet.box", "1 to 63"),
        ({"fleet": {"box": "rack/1"}}, "fleet.box", "1 to 63"),
        ({"fleet": {"lease_s": 0.5}}, "fleet.lease_s", "1 to 3600"),
        ({"fleet": {"lease_s": 3601}}, "fleet.lease_s", "1 to 3600"),
        ({"fleet": {"lease_s": "30"}}, "fleet.lease_s", "expected a number"),
        ({"fleet": {"boxname": "a"}}, "fleet.boxname", "did you mean 'box'"),
    ],
)
def test_bad_fleet_values_name_the_key(raw: dict[str, Any], key: str, expected: str) -> None:
    message = error_of(raw)
    assert message.startswith(f"{key}:"), message
    assert expected in message
    assert ":pw@" not in message  # a URL's password is never echoed


@pytest.mark.parametrize(
    ("store", "error"),
    [
        ({"url": "mysql://db.lan/smsgw"}, r"^store\.url: expected postgresql://"),
        ({"url": "postgresql://smsgw@db.lan"}, r"^store\.url: expected postgresql://"),
        ({"url": "postgresql://smsgw@db.lan:99999/smsgw"}, r"^store\.url: expected postgresql://"),
        ({"url": "postgresql://smsgw:hunter2@/smsgw"}, r"^store\.url: .*names no host"),
        (
            {"url": "postgresql://smsgw@db.lan/smsgw", "path": "/var/lib/smsgw/l.sqlite3"},
            r"^store\.url: .*not both",
        ),
        ({"directory": "/srv/smsgw"}, r"^store\.directory: only with store\.url"),
        (
            {"url": "postgresql://smsgw@db.lan/smsgw", "directory": "box"},
            r"^store\.directory: expected an absolute",
        ),
        ({"spool": "/srv/spool.sqlite3"}, r"^store\.spool: only with store\.url"),
        (
            {"url": "postgresql://smsgw@db.lan/smsgw", "spool": "spool.sqlite3"},
            r"^store\.spool: expected an absolute",
        ),
    ],
)
def test_a_bad_store_url_is_refused_naming_the_key(store: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigError, match=error) as info:
        from_dict({"store": store})
    assert "hunter2" not in str(info.value)


def test_a_store_url_puts_the_ledger_on_postgresql_and_the_boxs_files_in_directory() -> None:
    config = from_dict({"store": {"url": "postgresql://smsgw@db.lan:5433/smsgw", "directory": "/srv/smsgw"}})
    assert config.store.ledger == "postgresql://smsgw@db.lan:5433/smsgw"
    assert config.store.path == "/srv/smsgw/ledger.sqlite3"  # its directory: keys, locks, watchdog state
    assert config.store.spool == "/srv/smsgw/spool.sqlite3"  # taking messages while the server is down
    assert from_dict({}).store.ledger == "/var/lib/smsgw/ledger.sqlite3"
    secret = from_dict({"store": {"url": "postgresql://smsgw:hunter2@db.lan/smsgw"}}).store
    assert secret.shown == "postgresql://smsgw:******@db.lan/smsgw"  # what log lines say
