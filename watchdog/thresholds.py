"""The watchdog's alert thresholds: one type for the daemon's config and the watchdog's settings.

Both `[watchdog]` in the daemon's config (appliance/config.py) and the watchdog's own `Settings`
are this dataclass plus their other keys, so the two sides cannot drift apart. It lives under
watchdog/ because the watchdog never imports appliance/; appliance imports it. A value out of
range is refused when the dataclass is made, naming its `[watchdog]` key.
"""

from __future__ import annotations

from dataclasses import dataclass

# The daemon writes its heartbeat every 2 s: a shorter limit would call it stale between beats.
HEARTBEAT_EVERY_S = 2.0


class ThresholdError(ValueError):
    """A threshold is out of range; the message names its `[watchdog]` key."""


@dataclass(frozen=True)
class Thresholds:
    """When a check turns into a finding (seconds, ratios 0..1, counts)."""

    heartbeat_stale_s: float = 20.0  # the ledger heartbeat older than this: the daemon is stuck or gone
    healthz_fail_s: float = 8.0  # /healthz failing this long
    unit_down_s: float = 10.0  # the systemd unit not active this long
    queue_stall_s: float = 900.0  # queued messages and nothing sent for this long
    modem_down_s: float = 300.0  # the modem not ready this long
    delivery_floor: float = 0.5  # delivered share of the last hour's finished messages below this...
    delivery_min_count: int = 10  # ...once at least this many finished
    sim_storage_full_ratio: float = 0.9  # SIM storage used at or above this share
    disk_free_floor_ratio: float = 0.05  # free disk below this share

    def __post_init__(self) -> None:
        for name in ("healthz_fail_s", "unit_down_s", "queue_stall_s", "modem_down_s"):
            if not getattr(self, name) > 0:
                _refuse(name, "must be positive (seconds)", getattr(self, name))
        if not self.heartbeat_stale_s > HEARTBEAT_EVERY_S:
            _refuse(
                "heartbeat_stale_s",
                f"must be more than {HEARTBEAT_EVERY_S:g} s (the daemon's heartbeat interval)",
                self.heartbeat_stale_s,
            )
        if not 0 <= self.delivery_floor <= 1:
            _refuse("delivery_floor", "must be a share from 0 to 1", self.delivery_floor)
        if self.delivery_min_count < 1:
            _refuse("delivery_min_count", "must be at least 1", self.delivery_min_count)
        if not 0 < self.sim_storage_full_ratio <= 1:
            _refuse(
                "sim_storage_full_ratio", "must be a share above 0, at most 1", self.sim_storage_full_ratio
            )
        if not 0 <= self.disk_free_floor_ratio < 1:
            _refuse("disk_free_floor_ratio", "must be a share from 0, below 1", self.disk_free_floor_ratio)


def _refuse(name: str, what: str, value: object) -> None:
    raise ThresholdError(f"watchdog.{name}: {what}, got {value!r}")
