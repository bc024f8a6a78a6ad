"""The checks as tables: facts in, finding (or none) out."""

from __future__ import annotations

import pytest

from watchdog import checks
from watchdog.canary import Canary
from watchdog.checks import Facts, evaluate
from watchdog.thresholds import Thresholds

NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("heartbeat_at", "started", "stale_s", "fires"),
    [
        (NOW - 1, 0.0, 20, False),
        (NOW - 20, 0.0, 20, False),  # exactly at the threshold: not yet
        (NOW - 21, 0.0, 20, True),
        (None, NOW - 5, 20, False),  # never written, but the watchdog only just started looking
        (None, NOW - 25, 20, True),
    ],
)
def test_heartbeat_stale(heartbeat_at: float | None, started: float, stale_s: float, fires: bool) -> None:
    f = checks.heartbeat_stale(Facts(now=NOW, heartbeat_at=heartbeat_at, watch_started_at=started), stale_s)
    assert (f is not None) is fires
    if f is not None:
        assert f.subject == "daemon"
        assert "heartbeat" in f.what


@pytest.mark.parametrize(
    ("failing_since", "fail_s", "fires"),
    [(None, 8, False), (NOW - 7.9, 8, False), (NOW - 8, 8, True), (NOW - 60, 8, True)],
)
def test_healthz_down(failing_since: float | None, fail_s: float, fires: bool) -> None:
    facts = Facts(now=NOW, healthz_failing_since=failing_since, healthz_error="refused")
    f = checks.healthz_down(facts, fail_s)
    assert (f is not None) is fires
    if f is not None:
        assert "refused" in f.what
        assert f.since == failing_since


@pytest.mark.parametrize(
    ("state", "down_since", "fires"),
    [
        (None, NOW - 100, False),  # not under systemd
        ("active", None, False),
        ("failed", NOW - 5, False),
        ("failed", NOW - 10, True),
        ("inactive", NOW - 30, True),
    ],
)
def test_unit_inactive(state: str | None, down_since: float | None, fires: bool) -> None:
    f = checks.unit_inactive(Facts(now=NOW, unit_state=state, unit_down_since=down_since), 10)
    assert (f is not None) is fires


@pytest.mark.parametrize(
    ("oldest", "last_sent", "fires"),
    [
        (None, None, False),  # empty queue
        (NOW - 100, None, False),  # young
        (NOW - 1000, None, True),  # old and nothing ever sent
        (NOW - 1000, NOW - 10, False),  # old, but sending goes on (a long queue, not a stall)
        (NOW - 1000, NOW - 950, True),
    ],
)
def test_queue_stalled(oldest: float | None, last_sent: float | None, fires: bool) -> None:
    f = checks.queue_stalled(Facts(now=NOW, oldest_queued_at=oldest, last_sent_at=last_sent), 900)
    assert (f is not None) is fires


@pytest.mark.parametrize(
    ("since", "fires"), [(None, False), (NOW - 299, False), (NOW - 300, True), (NOW - 3600, True)]
)
def test_modem_down(since: float | None, fires: bool) -> None:
    f = checks.modem_down(Facts(now=NOW, modem_down_since=since, modem_detail="unregistered"), 300)
    assert (f is not None) is fires
    if f is not None:
        assert f.what == "modem unregistered"


@pytest.mark.parametrize(
    ("delivered", "failed", "fires"),
    [
        (0, 0, False),
        (0, 9, False),  # below the minimum sample: no ratio worth a text
        (0, 10, True),
        (5, 5, False),  # exactly at the floor
        (4, 6, True),
        (100, 1, False),
    ],
)
def test_delivery_low(delivered: int, failed: int, fires: bool) -> None:
    facts = Facts(now=NOW, delivered_last_hour=delivered, failed_last_hour=failed)
    assert (checks.delivery_low(facts, 0.5, 10) is not None) is fires


@pytest.mark.parametrize(
    ("used", "total", "fires"),
    [(None, None, False), (0, 0, False), (5, 10, False), (9, 10, True), (10, 10, True)],
)
def test_sim_nearly_full(used: int | None, total: int | None, fires: bool) -> None:
    assert (checks.sim_nearly_full(Facts(now=NOW, sim_used=used, sim_total=total), 0.9) is not None) is fires


@pytest.mark.parametrize(
    ("free", "total", "fires"),
    [(None, None, False), (50, 100, False), (5, 100, False), (4, 100, True), (0, 100, True)],
)
def test_disk_nearly_full(free: int | None, total: int | None, fires: bool) -> None:
    facts = Facts(now=NOW, disk_free_bytes=free, disk_total_bytes=total)
    assert (checks.disk_nearly_full(facts, 0.05) is not None) is fires


def test_canary_missed() -> None:
    assert checks.canary_missed(Facts(now=NOW)) is None
    f = checks.canary_missed(Facts(now=NOW, canary_missed_since=NOW - 700))
    assert f is not None
    assert f.since == NOW - 700


@pytest.mark.parametrize(
    ("value", "floor", "fires"),
    [(None, 5.0, False), (4.99, 5.0, True), (5.0, 5.0, False), (0.0, 0.0, False), (0.5, 0.0, False)],
)
def test_balance_low(value: float | None, floor: float, fires: bool) -> None:
    facts = Facts(now=NOW, heartbeat_at=NOW, sim_balance=value, sim_balance_at=NOW - 60)
    finding = checks.balance_low(facts, floor)
    assert (finding is not None) == fires
    if finding is not None:
        assert (finding.subject, finding.what, finding.since) == (
            "balance",
            "SIM balance 4.99 below 5.00",
            NOW - 60,
        )
    assert [f.subject for f in evaluate(facts, Thresholds(), floor)] == (["balance"] if fires else [])


def test_evaluate_groups_daemon_checks_under_one_subject() -> None:
    facts = Facts(
        now=NOW,
        heartbeat_at=NOW - 60,
        healthz_failing_since=NOW - 30,
        healthz_error="refused",
        disk_free_bytes=1,
        disk_total_bytes=100,
    )
    found = evaluate(facts, Thresholds())
    assert [(f.subject, f.check) for f in found] == [
        ("daemon", "heartbeat"),
        ("daemon", "healthz"),
        ("disk", "disk"),
    ]


def test_evaluate_healthy_box_finds_nothing() -> None:
    facts = Facts(
        now=NOW, heartbeat_at=NOW - 1, disk_free_bytes=50, disk_total_bytes=100, sim_used=1, sim_total=30
    )
    assert evaluate(facts, Thresholds()) == []


def test_canary_round_trip_and_miss() -> None:
    off = Canary(every_s=0, timeout_s=60)
    assert off.due(NOW) is None
    c = Canary(every_s=3600, timeout_s=60)
    text = c.due(NOW)
    assert text is not None
    assert c.due(NOW + 1) is None  # one in flight at a time
    assert not c.received("something else")
    assert c.received(f"fwd: {text}")
    assert c.check(NOW + 100) is None
    assert c.due(NOW + 1800) is None
    text = c.due(NOW + 3600)
    assert text is not None
    assert c.check(NOW + 3650) is None
    assert c.check(NOW + 3661) == NOW + 3600  # missed: an incident since it was sent
    assert c.check(NOW + 4000) == NOW + 3600  # stays until a canary comes back
    text = c.due(NOW + 7200)
    assert text is not None
    assert c.received(text)
    assert c.check(NOW + 7211) is None
