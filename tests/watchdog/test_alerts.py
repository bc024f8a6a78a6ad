"""The alert policy with a clock passed in: open, repeat, ACK, RESOLVED, cap per hour, daily alive."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from watchdog.alert import Policy, StateFile, read_state, request_ack
from watchdog.checks import Finding

T0 = datetime(2026, 3, 2, 8, 0).timestamp()  # noqa: DTZ001  (local 08:00: the policy uses the wall clock)


def down(since: float = T0) -> list[Finding]:
    return [Finding("daemon", "healthz", "/healthz not answering (refused)", since, "reply RESTART <pin>")]


def kinds(alerts: list) -> list[str]:  # type: ignore[type-arg]
    return [a.kind for a in alerts]


def test_one_alert_per_incident_then_repeats_every_repeat_s() -> None:
    p = Policy("box1", repeat_s=600, cap_per_hour=100, alive_at="")
    sent, _ = p.step(down(), T0)
    assert kinds(sent) == ["open"]
    assert sent[0].text.startswith("box1: /healthz not answering (refused) since ")
    assert "RESTART" in sent[0].text
    assert len(sent[0].text) <= 160  # one SMS
    for dt in (5, 300, 599):
        assert p.step(down(), T0 + dt)[0] == []
    assert kinds(p.step(down(), T0 + 600)[0]) == ["repeat"]
    assert p.step(down(), T0 + 900)[0] == []
    assert kinds(p.step(down(), T0 + 1200)[0]) == ["repeat"]


def test_resolved_when_it_clears() -> None:
    p = Policy("box1", repeat_s=600, alive_at="")
    p.step(down(), T0)
    sent, _ = p.step([], T0 + 95)
    assert kinds(sent) == ["resolved"]
    assert sent[0].text.startswith("RESOLVED box1: /healthz not answering")
    assert "95s" in sent[0].text
    assert p.step([], T0 + 100)[0] == []
    assert not p.incidents


def test_findings_of_one_subject_are_one_incident() -> None:
    p = Policy("box1", alive_at="")
    both = [*down(), Finding("daemon", "heartbeat", "gateway heartbeat stale", T0 - 5, "x")]
    sent, _ = p.step(both, T0)
    assert kinds(sent) == ["open"]
    assert "heartbeat" in sent[0].text
    assert "healthz" in sent[0].text


def test_ack_silences_repeats_but_not_resolved() -> None:
    p = Policy("box1", repeat_s=60, alive_at="")
    p.step(down(), T0)
    assert len(p.ack(T0 + 10)) == 1
    for dt in (60, 120, 600):
        assert p.step(down(), T0 + dt)[0] == []
    assert kinds(p.step([], T0 + 700)[0]) == ["resolved"]
    # A new incident after that is alerted again.
    assert kinds(p.step(down(T0 + 800), T0 + 800)[0]) == ["open"]


def test_cap_per_hour_across_all_alerts_for_a_flapping_box() -> None:
    p = Policy("box1", repeat_s=600, cap_per_hour=3, alive_at="")
    sent_total = 0
    suppressed_total = 0
    t = T0
    for _ in range(10):  # down 30 s, up 30 s, ten times within ten minutes
        for findings in (down(t), []):
            sent, suppressed = p.step(findings, t)
            sent_total += len(sent)
            suppressed_total += len(suppressed)
            t += 30
    assert sent_total == 3
    # Nine held back: the second RESOLVED and eight opens; a capped incident gets no RESOLVED either.
    assert suppressed_total == 9
    # An hour after the first alert the cap frees up again.
    t = T0 + 3600
    sent, _ = p.step(down(t), t)
    assert kinds(sent) == ["open"]


def test_a_capped_incident_is_alerted_when_the_cap_frees() -> None:
    p = Policy("box1", repeat_s=600, cap_per_hour=1, alive_at="")
    p.step([Finding("disk", "disk", "disk nearly full", T0, "h")], T0)
    sent, suppressed = p.step([*down(T0 + 10), Finding("disk", "disk", "disk nearly full", T0, "h")], T0 + 10)
    assert sent == []
    assert kinds(suppressed) == ["open"]
    sent, suppressed = p.step(
        [*down(T0 + 10), Finding("disk", "disk", "disk nearly full", T0, "h")], T0 + 3600
    )
    assert [(a.kind, a.subject) for a in sent] == [("open", "daemon")]  # still one per hour
    assert [(a.kind, a.subject) for a in suppressed] == [("repeat", "disk")]


def test_daily_alive_message_at_the_configured_time() -> None:
    p = Policy("box1", alive_at="09:00")
    assert p.step([], T0)[0] == []  # 08:00: not yet
    p2 = p
    sent, _ = p2.step([], T0 + 3600)  # 09:00, the watchdog was running before: today's is due
    assert kinds(sent) == ["alive"]
    assert sent[0].text == "box1 watchdog alive: all clear"
    assert p2.step([], T0 + 3700)[0] == []
    assert p2.step([], T0 + 86400)[0] == []  # next day 08:00
    assert kinds(p2.step([], T0 + 86400 + 3600)[0]) == ["alive"]


def test_started_after_the_alive_time_waits_for_tomorrow() -> None:
    p = Policy("box1", alive_at="07:00")
    assert p.step([], T0)[0] == []
    assert p.step([], T0 + 3600)[0] == []
    assert kinds(p.step([], T0 + 86400)[0]) == ["alive"]


def test_state_file_records_and_restores(tmp_path: Path) -> None:
    path = tmp_path / "watchdog.sqlite3"
    state = StateFile(path)
    p = Policy("box1", repeat_s=600, cap_per_hour=2, alive_at="")
    sent, _ = p.step(down(), T0)
    state.sync_incidents(p, T0)
    for alert in sent:
        state.record_alert(alert, "+4915112345678", "sent", T0)
    state.close()
    doc = read_state(path)
    assert doc["incidents"][0]["open"] is True
    assert doc["alerts"][0]["kind"] == "open"
    # A restarted watchdog neither re-alerts the open incident nor forgets the cap.
    state = StateFile(path)
    p2 = Policy("box1", repeat_s=600, cap_per_hour=2, alive_at="")
    state.restore(p2, T0 + 10)
    assert p2.step(down(), T0 + 10)[0] == []
    assert len(p2.sent_at) == 1
    sent, _ = p2.step([], T0 + 20)
    assert kinds(sent) == ["resolved"]
    state.sync_incidents(p2, T0 + 20)
    state.close()
    assert read_state(path)["incidents"][0]["open"] is False
    assert read_state(tmp_path / "absent.sqlite3") == {"incidents": [], "alerts": []}


def test_the_status_page_reads_a_state_file_named_by_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`[store] path = "ledger.sqlite3"` puts the state file at the relative "watchdog.sqlite3"."""
    monkeypatch.chdir(tmp_path)
    state = StateFile(tmp_path / "watchdog.sqlite3")
    p = Policy("box1", repeat_s=600, alive_at="")
    p.step(down(), T0)
    state.sync_incidents(p, T0)
    state.close()
    doc = read_state(Path("watchdog.sqlite3"))
    assert [i["open"] for i in doc["incidents"]] == [True]


def test_ack_from_the_status_page_silences_repeats(tmp_path: Path) -> None:
    """The page adds a request row; the watchdog applies it on its next cycle (it owns the file)."""
    path = tmp_path / "watchdog.sqlite3"
    state = StateFile(path)
    p = Policy("box1", repeat_s=60, alive_at="")
    p.step(down(), T0)
    state.sync_incidents(p, T0)
    (incident,) = p.incidents.values()
    assert not request_ack(path, incident.id + 99, by="admin")  # no such open incident
    assert request_ack(path, incident.id, by="admin")
    assert [i.id for i in state.apply_ack_requests(p, T0 + 1)] == [incident.id]
    assert state.apply_ack_requests(p, T0 + 2) == []  # applied once
    repeats, _ = p.step(down(), T0 + 600)
    assert repeats == []
    state.close()
