"""Send windows: parsing with errors naming the field, DST-correct opening and closing, precedence."""

from __future__ import annotations

import datetime
import math
import zoneinfo
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.states import Priority
from appliance.windows import (
    Window,
    WindowError,
    effective_window,
    hold,
    is_open,
    next_open,
    parse_window,
    parse_window_text,
    reason,
    window_from_json,
)

UTC = datetime.UTC


def spec(
    days: str = "mon-fri", start: str = "08:00", end: str = "20:00", tz: str = "Europe/Berlin"
) -> Window:
    return parse_window({"days": days, "start": start, "end": end, "tz": tz})


def local(tz: str, year: int, month: int, day: int, hour: int, minute: int, fold: int = 0) -> float:
    """Epoch seconds of a local wall time that exists (the tests pick their folds explicitly)."""
    zone = zoneinfo.ZoneInfo(tz)
    return datetime.datetime(year, month, day, hour, minute, tzinfo=zone, fold=fold).timestamp()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime.datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


# ------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("sat,sun", {5, 6}),
        ("mon,wed-fri", {0, 2, 3, 4}),
        ("Fri - Mon", {4, 5, 6, 0}),  # a range wraps over the weekend
        ("daily", set(range(7))),
        ("*", set(range(7))),
        ("sun", {6}),
    ],
)
def test_days_are_read_as_people_write_them(days: str, expected: set[int]) -> None:
    assert spec(days=days).days == frozenset(expected)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"days": "", "start": "08:00", "end": "20:00", "tz": "UTC"}, "window.days: no day given"),
        ({"days": " , ", "start": "08:00", "end": "20:00", "tz": "UTC"}, "window.days: '' is not a day"),
        (
            {"days": "mon-fry", "start": "08:00", "end": "20:00", "tz": "UTC"},
            "window.days: 'fry' is not a day",
        ),
        ({"days": 5, "start": "08:00", "end": "20:00", "tz": "UTC"}, "window.days: expected a string"),
        (
            {"days": "mon", "start": "8:00", "end": "20:00", "tz": "UTC"},
            "window.start: expected a 24-hour time",
        ),
        (
            {"days": "mon", "start": "24:00", "end": "20:00", "tz": "UTC"},
            "window.start: '24:00' can only end",
        ),
        (
            {"days": "mon", "start": "08:00", "end": "20:60", "tz": "UTC"},
            "window.end: expected a 24-hour time",
        ),
        ({"days": "mon", "start": "08:00", "end": "08:00", "tz": "UTC"}, "window.end: equals start (08:00)"),
        (
            {"days": "mon", "start": "08:00", "end": "20:00", "tz": "Europe/Berln"},
            "window.tz: unknown time zone 'Europe/Berln'",
        ),
        (
            {"days": "mon", "start": "08:00", "end": "20:00", "tz": "../../etc/passwd"},
            "window.tz: '../../etc/passwd'",
        ),
        ({"days": "mon", "start": "08:00", "end": "20:00"}, "window.tz: this field is required"),
        ({"days": "mon", "start": "08:00", "end": "20:00", "tz": "UTC", "x": 1}, "window.x: unknown field"),
        ("mon-fri 8-20", "window: expected an object"),
    ],
)
def test_a_bad_window_is_refused_naming_the_field(doc: Any, message: str) -> None:
    with pytest.raises(WindowError) as caught:
        parse_window(doc)
    assert caught.value.message.startswith(message), caught.value.message


def test_the_stored_form_reads_back_the_same_window() -> None:
    window = spec(days="mon,wed-fri", start="22:00", end="06:00", tz="America/New_York")
    assert window.to_json() == {
        "days": "mon,wed-fri",
        "start": "22:00",
        "end": "06:00",
        "tz": "America/New_York",
    }
    assert window_from_json(window.to_json()) == window
    assert window_from_json(None) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mon-fri 08:00 Europe/Berlin", "window: expected 'DAYS HH:MM-HH:MM ZONE'"),
        ("mon-fri 08:00-20:00", "window: expected 'DAYS HH:MM-HH:MM ZONE'"),
        ("mon-fri 8-20 Europe/Berlin", "window.start: expected a 24-hour time"),
        ("mon-fri 08:00-20:00 Berlin", "window.tz: unknown time zone 'Berlin'"),
    ],
)
def test_the_one_line_form_is_refused_naming_the_part_at_fault(text: str, message: str) -> None:
    with pytest.raises(WindowError) as caught:
        parse_window_text(text)
    assert caught.value.message.startswith(message), caught.value.message


# -------------------------------------------------- the case: 21:55, window ends 22:00, DST
@pytest.mark.parametrize(
    ("tz", "day", "next_day_utc"),
    [
        # Europe/Berlin falls back on Sun 2026-10-25 (CEST -> CET) and springs forward Sun 2026-03-29.
        ("Europe/Berlin", (2026, 10, 24), (2026, 10, 25, 7, 0)),  # Sun 08:00 CET
        ("Europe/Berlin", (2026, 10, 25), (2026, 10, 26, 7, 0)),  # Mon 08:00 CET
        ("Europe/Berlin", (2026, 3, 28), (2026, 3, 29, 6, 0)),  # Sun 08:00 CEST
        ("Europe/Berlin", (2026, 3, 29), (2026, 3, 30, 6, 0)),  # Mon 08:00 CEST
        # America/New_York falls back on Sun 2026-11-01 (EDT -> EST), springs forward Sun 2026-03-08.
        ("America/New_York", (2026, 10, 31), (2026, 11, 1, 13, 0)),  # Sun 08:00 EST
        ("America/New_York", (2026, 11, 1), (2026, 11, 2, 13, 0)),
        ("America/New_York", (2026, 3, 7), (2026, 3, 8, 12, 0)),  # Sun 08:00 EDT
        ("America/New_York", (2026, 3, 8), (2026, 3, 9, 12, 0)),
    ],
)
def test_a_message_at_2155_goes_at_once_and_one_at_2200_waits_for_the_next_morning_across_dst(
    tz: str, day: tuple[int, int, int], next_day_utc: tuple[int, int, int, int, int]
) -> None:
    window = spec(days="daily", start="08:00", end="22:00", tz=tz)
    at_2155 = local(tz, *day, 21, 55)
    at_2200 = local(tz, *day, 22, 0)
    assert is_open(window, at_2155)
    assert next_open(window, at_2155) == at_2155
    assert is_open(window, at_2200 - 1)
    assert not is_open(window, at_2200)
    assert next_open(window, at_2200) == utc(*next_day_utc)
    assert next_open(window, at_2155 + 301) == utc(*next_day_utc)


def test_the_night_of_the_fall_back_is_one_hour_longer_in_real_time() -> None:
    window = spec(days="daily", start="08:00", end="22:00", tz="Europe/Berlin")
    closes = local("Europe/Berlin", 2026, 10, 24, 22, 0)
    assert next_open(window, closes) - closes == 11 * 3600  # 22:00 CEST to 08:00 CET
    spring = local("Europe/Berlin", 2026, 3, 28, 22, 0)
    assert next_open(window, spring) - spring == 9 * 3600  # 22:00 CET to 08:00 CEST


# ------------------------------------------------------------ crossing midnight
def test_a_night_window_belongs_to_the_day_it_opens_on() -> None:
    window = spec(days="fri", start="22:00", end="06:00", tz="Europe/Berlin")
    tz = "Europe/Berlin"
    assert not is_open(window, local(tz, 2026, 12, 3, 23, 0))  # Thursday night: not allowed
    assert is_open(window, local(tz, 2026, 12, 4, 22, 0))  # Friday 22:00
    assert is_open(window, local(tz, 2026, 12, 5, 5, 59))  # Saturday 05:59, still Friday's window
    assert not is_open(window, local(tz, 2026, 12, 5, 6, 0))
    assert not is_open(window, local(tz, 2026, 12, 7, 2, 0))  # Monday 02:00 would be Sunday's
    assert next_open(window, local(tz, 2026, 12, 5, 6, 0)) == local(tz, 2026, 12, 11, 22, 0)


def test_a_night_window_across_the_fall_back_closes_at_its_end_in_local_time() -> None:
    window = spec(days="sat", start="22:00", end="06:00", tz="Europe/Berlin")
    assert is_open(window, utc(2026, 10, 24, 20, 0))  # Sat 22:00 CEST
    assert is_open(window, utc(2026, 10, 25, 4, 59))  # Sun 05:59 CET
    assert not is_open(window, utc(2026, 10, 25, 5, 0))  # Sun 06:00 CET: nine real hours later


def test_an_end_inside_the_repeated_hour_closes_the_first_time_the_clock_shows_it() -> None:
    window = spec(days="sat", start="22:00", end="02:30", tz="Europe/Berlin")
    assert is_open(window, utc(2026, 10, 25, 0, 29))  # 02:29 CEST
    assert not is_open(window, utc(2026, 10, 25, 0, 30))  # 02:30 CEST, the first 02:30
    assert not is_open(window, utc(2026, 10, 25, 1, 15))  # 02:15 CET, the clock's second pass


def test_a_start_inside_the_repeated_hour_opens_at_its_first_occurrence() -> None:
    window = spec(days="sun", start="02:30", end="04:00", tz="Europe/Berlin")
    assert next_open(window, utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 25, 0, 30)  # 02:30 CEST


def test_a_start_skipped_by_the_spring_forward_opens_when_the_clock_jumps() -> None:
    window = spec(days="sun", start="02:30", end="05:00", tz="Europe/Berlin")
    assert next_open(window, utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 29, 1, 0)  # 03:00 CEST
    assert not is_open(window, utc(2026, 3, 29, 0, 59))  # 01:59 CET
    assert is_open(window, utc(2026, 3, 29, 1, 0))


def test_a_window_inside_the_spring_forward_gap_is_empty_that_day() -> None:
    window = spec(days="daily", start="02:00", end="03:00", tz="Europe/Berlin")
    assert next_open(window, utc(2026, 3, 28, 12, 0)) == local("Europe/Berlin", 2026, 3, 30, 2, 0)


def test_a_window_with_a_half_hour_dst_shift_still_opens_in_the_gap_end() -> None:
    # Lord Howe Island moves its clocks by 30 minutes: 02:00 -> 02:30 on Sun 2026-10-04.
    window = spec(days="sun", start="02:15", end="04:00", tz="Australia/Lord_Howe")
    opens = next_open(window, local("Australia/Lord_Howe", 2026, 10, 3, 12, 0))
    shown = datetime.datetime.fromtimestamp(opens, zoneinfo.ZoneInfo("Australia/Lord_Howe"))
    assert (shown.day, shown.hour, shown.minute) == (4, 2, 30)


def test_the_whole_day_is_always_open() -> None:
    window = spec(days="daily", start="00:00", end="24:00", tz="America/New_York")
    for t in (
        utc(2026, 3, 8, 7, 0),
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 6, 30),
        utc(2026, 12, 31, 23, 59),
    ):
        assert is_open(window, t)


# ------------------------------------------------------------------- reason
def test_the_reason_names_the_window_and_when_it_opens() -> None:
    window = spec()
    friday_night = local("Europe/Berlin", 2026, 12, 4, 21, 0)
    assert reason(window, friday_night) == (
        "outside send window mon-fri 08:00-20:00 Europe/Berlin; opens Mon 2026-12-07 08:00 CET"
    )
    assert reason(window, local("Europe/Berlin", 2026, 12, 7, 9, 0)) == (
        "inside send window mon-fri 08:00-20:00 Europe/Berlin"
    )


# --------------------------------------------------------------- precedence
NIGHT = spec(days="daily", start="22:00", end="06:00", tz="UTC")
OFFICE = spec()
WEEKEND = spec(days="sat,sun", start="10:00", end="18:00")


@pytest.mark.parametrize(
    ("message", "template", "key", "priority", "bypass", "expected", "source", "bypassed"),
    [
        (NIGHT, OFFICE, WEEKEND, Priority.NORMAL, False, NIGHT, "message", ()),
        (None, OFFICE, WEEKEND, Priority.NORMAL, False, OFFICE, "template", ()),
        (None, None, WEEKEND, Priority.NORMAL, False, WEEKEND, "key", ()),
        (None, None, None, Priority.NORMAL, False, None, None, ()),
        (None, OFFICE, WEEKEND, Priority.HIGH, True, None, None, ("template", "key")),
        (None, None, WEEKEND, Priority.HIGH, True, None, None, ("key",)),
        (None, OFFICE, WEEKEND, Priority.HIGH, False, OFFICE, "template", ()),  # the key may not bypass
        (None, OFFICE, None, Priority.NORMAL, True, OFFICE, "template", ()),  # only high bypasses
        (NIGHT, OFFICE, WEEKEND, Priority.HIGH, True, NIGHT, "message", ()),  # the caller asked for it
    ],
)
def test_the_message_window_wins_then_the_template_then_the_key(
    message: Window | None,
    template: Window | None,
    key: Window | None,
    priority: Priority,
    bypass: bool,
    expected: Window | None,
    source: str | None,
    bypassed: tuple[str, ...],
) -> None:
    choice = effective_window(
        message=message, template=template, key_default=key, priority=priority, key_may_bypass=bypass
    )
    assert (choice.window, choice.source, choice.bypassed) == (expected, source, bypassed)
    assert (choice.note() is not None) == bool(bypassed)


def test_a_message_outside_its_window_is_held_until_it_opens_with_the_reason() -> None:
    friday_night = local("Europe/Berlin", 2026, 12, 4, 21, 0)
    monday_8 = local("Europe/Berlin", 2026, 12, 7, 8, 0)
    choice = effective_window(
        message=None, template=OFFICE, key_default=None, priority=Priority.NORMAL, key_may_bypass=False
    )
    held = hold(choice, now=friday_night)
    assert held.release_at == monday_8
    assert held.reason == (
        "outside send window mon-fri 08:00-20:00 Europe/Berlin; opens Mon 2026-12-07 08:00 CET (template's window)"
    )
    # A send_at inside the window is kept; one outside moves to the next opening.
    assert hold(choice, now=friday_night, send_at=monday_8 + 60) == hold(choice, now=monday_8 + 60)
    assert hold(choice, now=friday_night, send_at=monday_8 + 60).release_at == monday_8 + 60
    assert hold(choice, now=monday_8 - 60, send_at=None).release_at == monday_8


def test_a_message_without_a_window_or_bypassing_it_goes_when_due() -> None:
    friday_night = local("Europe/Berlin", 2026, 12, 4, 21, 0)
    nothing = effective_window(
        message=None, template=None, key_default=None, priority=Priority.NORMAL, key_may_bypass=False
    )
    assert hold(nothing, now=friday_night) == hold(nothing, now=friday_night, send_at=friday_night - 5)
    assert hold(nothing, now=friday_night).release_at == friday_night
    urgent = effective_window(
        message=None, template=None, key_default=OFFICE, priority=Priority.HIGH, key_may_bypass=True
    )
    bypassed = hold(urgent, now=friday_night)
    assert bypassed.release_at == friday_night
    assert bypassed.reason == "send window of key bypassed: priority high"


# --------------------------------------------------------------- properties
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST
    "America/Santiago",  # DST changes at midnight
    "Asia/Kolkata",  # half-hour offset, no DST
    "Pacific/Chatham",  # 45-minute offset with DST
]


@st.composite
def windows(draw: st.DrawFn) -> Window:
    days = draw(st.sets(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1))
    start = draw(st.integers(0, 1439))
    end = draw(st.integers(1, 1440).filter(lambda minute: minute != start))
    return parse_window(
        {
            "days": ",".join(sorted(days)),
            "start": f"{start // 60:02d}:{start % 60:02d}",
            "end": f"{end // 60:02d}:{end % 60:02d}",
            "tz": draw(st.sampled_from(ZONES)),
        }
    )


INSTANTS = st.integers(int(utc(2020, 1, 1)), int(utc(2036, 1, 1))).map(float)


@settings(max_examples=300, deadline=None)
@given(windows(), INSTANTS, st.floats(0.0, 1.0, exclude_max=True))
def test_next_open_is_open_never_earlier_and_skips_no_open_instant(
    window: Window, t: float, fraction: float
) -> None:
    opens = next_open(window, t)
    assert opens >= t
    assert is_open(window, opens)
    if is_open(window, t):
        assert opens == t
    else:
        between = min(t + math.floor((opens - t) * fraction), opens - 1)  # any instant before it is closed
        assert not is_open(window, between)
        assert not is_open(window, opens - 1)


@settings(max_examples=100, deadline=None)
@given(windows())
def test_the_one_line_form_reads_back_what_describe_prints(window: Window) -> None:
    assert parse_window_text(window.describe()) == window
    assert parse_window(window.to_json()) == window


@settings(max_examples=100, deadline=None)
@given(windows(), INSTANTS)
def test_away_from_clock_changes_open_means_the_wall_clock_is_inside_the_window(
    window: Window, t: float
) -> None:
    zone = zoneinfo.ZoneInfo(window.tz)
    wall = datetime.datetime.fromtimestamp(t, zone)
    offsets = {
        datetime.datetime.fromtimestamp(t + delta, zone).utcoffset()
        for delta in range(-2 * 86400, 2 * 86400 + 1, 1800)
    }
    if len(offsets) != 1:
        return  # near a clock change the module's documented rule decides; tested above
    minute = wall.hour * 60 + wall.minute
    yesterday = (wall.weekday() - 1) % 7
    if window.crosses_midnight:
        inside = (wall.weekday() in window.days and minute >= window.start_min) or (
            yesterday in window.days and minute < window.end_min
        )
    else:
        inside = wall.weekday() in window.days and window.start_min <= minute < window.end_min
    assert is_open(window, t) == inside
