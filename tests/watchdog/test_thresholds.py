"""One thresholds type for the daemon's `[watchdog]` and the watchdog's own settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from appliance.cli import _watchdog_settings
from appliance.config import ConfigError, load
from tests.support.cli import smsgw
from watchdog.settings import Settings
from watchdog.thresholds import ThresholdError, Thresholds

ONCALL = "+4915112345678"

# Every threshold set away from its default, as an operator would write it.
CUSTOM = {
    "heartbeat_stale_s": 45.0,
    "healthz_fail_s": 12.0,
    "unit_down_s": 30.0,
    "queue_stall_s": 600.0,
    "modem_down_s": 120.0,
    "delivery_floor": 0.75,
    "delivery_min_count": 25,
    "sim_storage_full_ratio": 0.8,
    "disk_free_floor_ratio": 0.1,
}

OUT_OF_RANGE = [
    ("heartbeat_stale_s", 2.0),  # not more than the 2 s heartbeat interval
    ("healthz_fail_s", 0.0),
    ("unit_down_s", -1.0),
    ("queue_stall_s", 0.0),
    ("modem_down_s", -5.0),
    ("delivery_floor", 1.5),
    ("delivery_min_count", 0),
    ("sim_storage_full_ratio", 0.0),
    ("sim_storage_full_ratio", 1.2),
    ("disk_free_floor_ratio", 1.0),
    ("disk_free_floor_ratio", -0.1),
]


def _config_file(tmp_path: Path, watchdog: dict[str, float | int]) -> Path:
    lines = ["[watchdog]", f'oncall = ["{ONCALL}"]', *(f"{k} = {v!r}" for k, v in watchdog.items())]
    path = tmp_path / "smsgw.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_both_sides_read_identical_thresholds_from_one_toml(tmp_path: Path) -> None:
    config = load(_config_file(tmp_path, CUSTOM), environ={})
    settings = _watchdog_settings(config)
    for f in dataclasses.fields(Thresholds):
        assert getattr(config.watchdog, f.name) == CUSTOM[f.name], f.name
        assert getattr(settings, f.name) == CUSTOM[f.name], f.name


def test_an_environment_override_reaches_both_sides(tmp_path: Path) -> None:
    config = load(_config_file(tmp_path, {}), environ={"SMSGW_WATCHDOG__QUEUE_STALL_S": "300"})
    assert config.watchdog.queue_stall_s == 300.0
    assert _watchdog_settings(config).queue_stall_s == 300.0


def test_defaults_are_the_same_on_both_sides() -> None:
    config = load(None, environ={})
    for f in dataclasses.fields(Thresholds):
        assert getattr(config.watchdog, f.name) == getattr(Settings(), f.name) == f.default, f.name


@pytest.mark.parametrize(("key", "value"), OUT_OF_RANGE)
def test_a_threshold_out_of_range_is_refused_naming_its_key_by_both_loaders(
    tmp_path: Path, key: str, value: float
) -> None:
    with pytest.raises(ConfigError, match=rf"^watchdog\.{key}: must "):
        load(_config_file(tmp_path, {key: value}), environ={})
    with pytest.raises(ThresholdError, match=rf"^watchdog\.{key}: must "):
        Settings(**{key: value})  # type: ignore[arg-type]  # one threshold by name, as TOML gives it


async def test_smsgw_watchdog_refuses_a_bad_threshold_naming_the_key(tmp_path: Path) -> None:
    path = _config_file(tmp_path, {"queue_stall_s": 0})
    result = await smsgw("watchdog", "--config", str(path))
    assert result.returncode == 2
    assert "watchdog.queue_stall_s: must be positive (seconds), got 0.0" in result.stderr
