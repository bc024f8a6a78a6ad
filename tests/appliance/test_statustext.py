"""`smsgw status` text: what a person reads when the box is in trouble."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.statustext import duration, render
from appliance.web_filters import bytes_size as size

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 s"),
        (59.4, "59 s"),
        (60, "1 min"),
        (250, "4 min 10 s"),
        (3600, "1 h"),
        (7500, "2 h 5 min"),
        (86400 * 3 + 3600 * 4, "3 d 4 h"),
        (-5, "0 s"),  # a clock step never prints a negative age
    ],
)
def test_duration_in_words(seconds: float, words: str) -> None:
    assert duration(seconds) == words


@pytest.mark.parametrize(
    ("n", "text"), [(512, "512 B"), (8 * 1024 * 1024, "8.0 MiB"), (int(12.34 * 1024**3), "12.3 GiB")]
)
def test_size_in_binary_units(n: int, text: str) -> None:
    assert size(n) == text


def troubled() -> dict[str, Any]:
    return {
        "gateway": {"name": "box7", "version": "1.2.3", "uptime_s": 7500.0},
        "verdict": {"state": "down", "reasons": ["No modem is ready: nothing can be sent."]},
        "modems": [
            {
                "name": "modem",
                "port": "/dev/gsmmodem",
                "state": "disconnected",
                "manufacturer": "Quectel",
                "model": "EC25",
                "operator": None,
                "registration": None,
                "signal": None,
                "storage": None,
                "reopens": 3,
                "resets": 1,
                "last_error": "port vanished",
                "set_aside_s": 0.0,
                "traffic": {"sent": 7, "failed": 1, "in_flight": 0, "last_sent_age_s": 1200.0},
            }
        ],
        "queue": {
            "depth": 4,
            "by_status": {"queued": 4, "sent": 0, "delivered": 2},
            "oldest_age_s": 250.0,
            "held_back": [{"reason": "rate", "messages": 2, "until": "2027-01-15T08:00:30Z"}],
            "ambiguous_total": 1,
        },
        "throughput": {"last_sent_at": "x", "last_sent_age_s": 3700.0},
        "history": {"sent": 2, "delivered": 2, "delivery_ratio": 1.0},
        "webhooks": {"backlog": 1},
        "disk": {"free_bytes": 5 * 1024**3, "total_bytes": 32 * 1024**3, "reserve_bytes": 8 * 1024**2},
        "watchdog": {
            "incidents": [
                {"id": 9, "subject": "modem", "what": "modem silent", "since": NOW - 300, "open": True},
                {"id": 8, "subject": "queue", "what": "old", "since": NOW - 9000, "open": False},
            ],
            "alerts": [{"at": NOW - 240, "kind": "alert", "outcome": "sent"}],
        },
    }


def test_a_down_box_reads_as_sections_with_ages_in_words() -> None:
    text = render(troubled(), now=NOW)
    assert text.splitlines()[:2] == ["box7: DOWN", "  - No modem is ready: nothing can be sent."]
    assert "gateway   version 1.2.3, up 2 h 5 min" in text
    assert "modems    modem  disconnected, Quectel EC25, no operator, signal unknown" in text
    assert "port /dev/gsmmodem; 3 reopens, 1 reset; last error: port vanished" in text
    assert "last hour: 7 sent, 1 failed, 0 in flight now; last send 20 min ago" in text
    assert "queue     4 waiting, the oldest for 4 min 10 s" in text
    assert "by status: 4 queued, 2 delivered" in text  # states with no message are left out
    assert "held back by rate: 2 messages until 2027-01-15T08:00:30Z" in text
    assert "1 ambiguous send" in text
    assert "sent      last one 1 h 1 min ago; 24 h: 2 sent, 2 delivered (100 %)" in text
    assert "webhooks  1 delivery waiting" in text
    assert "disk      5.0 GiB free of 32.0 GiB (reserve 8.0 MiB)" in text
    assert "watchdog  1 open incident" in text  # the resolved one is not counted
    assert "#9 modem: modem silent (since 5 min ago)" in text
    assert "last alert 4 min ago: alert (sent)" in text


def test_an_empty_document_still_prints_every_section() -> None:
    lines = render({}, now=NOW).splitlines()
    assert lines[0] == "smsgw: ?"
    assert [ln.split()[0] for ln in lines[2:]] == [
        "gateway",
        "modems",
        "queue",
        "sent",
        "webhooks",
        "disk",
        "watchdog",
    ]
