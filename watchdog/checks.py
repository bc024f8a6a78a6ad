"""Pure predicates over facts read in one cycle: each returns a `Finding` or None.

Every check takes the facts and its threshold and does no I/O, so they are tested as tables.
A finding's `subject` groups checks into one incident ("daemon": heartbeat, /healthz, unit).
"""

from __future__ import annotations

from dataclasses import dataclass

from watchdog.thresholds import Thresholds


@dataclass(frozen=True)
class Finding:
    """Something wrong: the incident it belongs to, what, since when (epoch s), one hint."""

    subject: str
    check: str
    what: str
    since: float
    hint: str


@dataclass(frozen=True)
class Facts:
    """What the watchdog observed in one cycle (epoch seconds; None = unknown or never)."""

    now: float
    heartbeat_at: float | None = None
    watch_started_at: float = 0.0  # when the watchdog began looking (for "never seen" heartbeats)
    healthz_failing_since: float | None = None
    healthz_error: str = ""
    unit_state: str | None = None  # None: not under systemd
    unit_down_since: float | None = None
    oldest_queued_at: float | None = None
    last_sent_at: float | None = None
    modem_down_since: float | None = None
    modem_detail: str = ""
    delivered_last_hour: int = 0
    failed_last_hour: int = 0
    sim_used: int | None = None
    sim_total: int | None = None
    disk_free_bytes: int | None = None
    disk_total_bytes: int | None = None
    canary_missed_since: float | None = None
    sim_balance: float | None = None  # the lowest latest prepaid balance the daemon's check read
    sim_balance_at: float | None = None


def heartbeat_stale(facts: Facts, stale_s: float) -> Finding | None:
    """The daemon's ledger heartbeat (every 2 s) is older than `stale_s`."""
    since = facts.heartbeat_at if facts.heartbeat_at is not None else facts.watch_started_at
    if facts.now - since <= stale_s:
        return None
    seen = "never written" if facts.heartbeat_at is None else f"last {_ago(facts.now - since)} ago"
    return Finding(
        "daemon", "heartbeat", f"gateway heartbeat stale ({seen})", since, "check: systemctl status smsgw"
    )


def healthz_down(facts: Facts, fail_s: float) -> Finding | None:
    """/healthz has not answered 200 for longer than `fail_s`."""
    since = facts.healthz_failing_since
    if since is None or facts.now - since < fail_s:
        return None
    return Finding(
        "daemon",
        "healthz",
        f"/healthz not answering ({facts.healthz_error or 'error'})",
        since,
        "reply RESTART <pin>",
    )


def unit_inactive(facts: Facts, down_s: float) -> Finding | None:
    """Under systemd: the unit has not been active for longer than `down_s`."""
    since = facts.unit_down_since
    if facts.unit_state is None or since is None or facts.now - since < down_s:
        return None
    return Finding("daemon", "unit", f"smsgw unit {facts.unit_state}", since, "journalctl -u smsgw")


def queue_stalled(facts: Facts, stall_s: float) -> Finding | None:
    """The oldest queued message is older than `stall_s` and nothing was sent for as long."""
    oldest = facts.oldest_queued_at
    if oldest is None or facts.now - oldest <= stall_s:
        return None
    if facts.last_sent_at is not None and facts.now - facts.last_sent_at <= stall_s:
        return None
    since = max(oldest, facts.last_sent_at or oldest)
    return Finding(
        "queue",
        "queue",
        f"queue stalled: oldest waits {_ago(facts.now - oldest)}, nothing sent",
        since,
        "check modem/SIM credit",
    )


def modem_down(facts: Facts, down_s: float) -> Finding | None:
    """The gateway's modem has been unregistered, not ready or silent for longer than `down_s`."""
    since = facts.modem_down_since
    if since is None or facts.now - since < down_s:
        return None
    return Finding("modem", "modem", f"modem {facts.modem_detail or 'down'}", since, "check antenna/SIM/USB")


def delivery_low(facts: Facts, floor: float, min_count: int) -> Finding | None:
    """Over the last hour fewer than `floor` of at least `min_count` final messages were delivered."""
    total = facts.delivered_last_hour + facts.failed_last_hour
    if total < max(1, min_count):
        return None
    ratio = facts.delivered_last_hour / total
    if ratio >= floor:
        return None
    return Finding(
        "delivery",
        "delivery",
        f"only {ratio:.0%} of {total} delivered in 1h",
        facts.now - 3600,
        "carrier or SIM credit?",
    )


def sim_nearly_full(facts: Facts, full_ratio: float) -> Finding | None:
    """SIM SMS storage at or above `full_ratio` (received SMS would be held by the network)."""
    if facts.sim_used is None or not facts.sim_total:
        return None
    if facts.sim_used / facts.sim_total < full_ratio:
        return None
    return Finding(
        "sim",
        "sim",
        f"SIM storage {facts.sim_used}/{facts.sim_total}",
        facts.now,
        "is the daemon reading SMS?",
    )


def disk_nearly_full(facts: Facts, free_floor_ratio: float) -> Finding | None:
    """Free space on the ledger's disk below `free_floor_ratio`."""
    if facts.disk_free_bytes is None or not facts.disk_total_bytes:
        return None
    if facts.disk_free_bytes / facts.disk_total_bytes >= free_floor_ratio:
        return None
    return Finding(
        "disk",
        "disk",
        f"disk nearly full ({facts.disk_free_bytes // 2**20} MiB free)",
        facts.now,
        "purge logs/old bodies",
    )


def canary_missed(facts: Facts) -> Finding | None:
    """The loopback canary SMS did not come back in time."""
    if facts.canary_missed_since is None:
        return None
    return Finding(
        "canary", "canary", "loopback SMS not received", facts.canary_missed_since, "carrier drops SMS?"
    )


def balance_low(facts: Facts, floor: float) -> Finding | None:
    """The prepaid SIM's balance (the daemon's [ussd] check) is below `floor` (0 = never)."""
    value = facts.sim_balance
    if floor <= 0 or value is None or value >= floor:
        return None
    return Finding(
        "balance",
        "balance",
        f"SIM balance {value:.2f} below {floor:.2f}",
        facts.sim_balance_at if facts.sim_balance_at is not None else facts.now,
        "top up the prepaid SIM",
    )


def evaluate(facts: Facts, t: Thresholds, balance_floor: float = 0.0) -> list[Finding]:
    """Every finding of this cycle, in a stable order (`balance_floor`: [ussd] alert_below)."""
    results = [
        heartbeat_stale(facts, t.heartbeat_stale_s),
        healthz_down(facts, t.healthz_fail_s),
        unit_inactive(facts, t.unit_down_s),
        queue_stalled(facts, t.queue_stall_s),
        modem_down(facts, t.modem_down_s),
        delivery_low(facts, t.delivery_floor, t.delivery_min_count),
        sim_nearly_full(facts, t.sim_storage_full_ratio),
        disk_nearly_full(facts, t.disk_free_floor_ratio),
        canary_missed(facts),
        balance_low(facts, balance_floor),
    ]
    return [f for f in results if f is not None]


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    return f"{seconds / 3600:.1f}h"
