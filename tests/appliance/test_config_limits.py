"""Config keys of the limits a hostile LAN needs: [api] connection limits, [webhooks] allow, [retention]."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from appliance.config import ConfigError, from_dict, load


def error_of(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        from_dict(raw)
    return str(info.value)


def test_defaults() -> None:
    config = from_dict({})
    assert config.api.request_timeout_s == 10.0
    assert config.api.max_connections == 512
    assert config.api.max_connections_per_client == 128
    assert config.alertmanager.max_alerts == 10
    assert config.webhook_policy.allow == ()
    assert config.retention.messages_days == 365
    assert config.retention.audit_days == 365


def test_webhooks_table_holds_allow_and_targets() -> None:
    text = """
[webhooks]
allow = ["127.0.0.1/32", "fd00::/8"]

[[webhooks.targets]]
url = "http://ops.lan/hook"
secret = "s"
"""
    config = from_dict(tomllib.loads(text))
    assert config.webhook_policy.allow == ("127.0.0.1/32", "fd00::/8")
    assert [w.url for w in config.webhooks] == ["http://ops.lan/hook"]


def test_webhooks_array_still_reads_as_targets() -> None:
    config = from_dict({"webhooks": [{"url": "http://ops.lan/hook"}]})
    assert [w.url for w in config.webhooks] == ["http://ops.lan/hook"]
    assert config.webhook_policy.allow == ()


def test_environment_sets_a_limit() -> None:
    assert load(None, environ={"SMSGW_API__MAX_CONNECTIONS": "64"}).api.max_connections == 64


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        ({"api": {"request_timeout_s": 0}}, "api.request_timeout_s", "positive"),
        ({"api": {"keepalive_timeout_s": -1}}, "api.keepalive_timeout_s", "positive"),
        ({"api": {"max_connections": 0}}, "api.max_connections", "positive"),
        ({"alertmanager": {"max_alerts": 0}}, "alertmanager.max_alerts", "at least 1"),
        ({"webhooks": {"allow": ["127.0.0.1/33"]}}, "webhooks.allow[0]", "CIDR"),
        ({"webhooks": {"allow": ["lan"]}}, "webhooks.allow[0]", "CIDR"),
        ({"webhooks": {"allow": "127.0.0.1/32"}}, "webhooks.allow", "list"),
        ({"webhooks": {"alow": []}}, "webhooks.alow", "allow"),
        ({"webhooks": {"targets": [{"url": "ftp://x"}]}}, "webhooks[0].url", "http"),
        ({"retention": {"events_days": -1}}, "retention.events_days", "negative"),
        ({"retention": {"numbers_days": "90"}}, "retention.numbers_days", "integer"),
        ({"retention": {"audit_days": -1}}, "retention.audit_days", "negative"),
        ({"retention": {"audit_days": 1.5}}, "retention.audit_days", "integer"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, Any], key: str, expected: str) -> None:
    message = error_of(raw)
    assert message.startswith(f"{key}:"), message
    assert expected in message
