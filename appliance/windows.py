"""Send windows: the local hours in which a message may go out ("mon-fri 08:00-20:00 Europe/Berlin").

Pure functions over epoch seconds; nothing here touches the ledger or the clock.

    window = parse_window({"days": "mon-fri", "start": "08:00", "end": "20:00", "tz": "Europe/Berlin"})
    window = parse_window_text("mon-fri 08:00-20:00 Europe/Berlin")   # CLI / page form; window.describe()
    is_open(window, t)      -> bool
    next_open(window, t)    -> float   (t itself when open; else the next opening instant)
    reason(window, t)       -> str     (one line for the message's timeline)
    effective_window(...)   -> Choice  (message > template > key default; the `high` bypass)
    hold(choice, now=, send_at=) -> Hold(release_at, reason)   (what the ledger stores)

Rules (documented here because DST makes "08:00" ambiguous twice a year):
- `days` names the days a window *opens* on. A window whose end is not after its start
  (22:00-06:00) crosses midnight: Friday's opens Fri 22:00 and closes Sat 06:00, and Monday
  00:00-06:00 belongs to Sunday's window. `end` "24:00" is the end of the start day.
- A local wall time is turned into an instant by one rule, for start and end alike:
  * a time that does not exist (skipped by a spring-forward, 02:30 on the last Sunday of
    March in Europe/Berlin) means the first instant after the gap (03:00 CEST);
  * a time that occurs twice (fall-back) means its first occurrence: the window opens the
    first time the clock shows `start` and closes the first time it shows `end`.
  So each allowed day gives one half-open interval [start, end) of real time; it can be
  shorter or longer than on other days, or empty (02:00-03:00 on a spring-forward day).
- `is_open(t)` is "t lies in one of those intervals"; `next_open(t)` is the start of the first
  non-empty interval that ends after t (or t itself). So next_open(t) >= t,
  is_open(next_open(t)) holds, and no open instant between t and next_open(t) is skipped.
"""

from __future__ import annotations

import datetime
import functools
import re
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from appliance.jsontypes import json_type
from appliance.states import Priority

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS = frozenset(range(7))
WINDOW_FIELDS = frozenset({"days", "start", "end", "tz"})
MAX_TZ_CHARS = 64  # the longest IANA name is ~32 characters
# A week always holds an allowed day, and an interval is empty on at most one day a year
# (a window inside a spring-forward gap): two weeks of days always find an opening.
_SEARCH_DAYS = 15

_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")
_DAY_TOKEN = re.compile(r"[a-z]{3}(?:-[a-z]{3})?")
_TZ_NAME = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")


class WindowError(ValueError):
    """A window spec refused: `field` is the dotted path at fault ("window.tz")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = f"{field}: {message}"

    def __repr__(self) -> str:
        return f"WindowError({self.message!r})"


@dataclass(frozen=True)
class Window:
    """A validated send window; build it with `parse_window`, store it with `to_json`."""

    days: frozenset[int]  # 0 = Monday ... 6 = Sunday: the days a window opens on
    start_min: int  # minutes after local midnight, 0..1439
    end_min: int  # 1..1440 (1440: "24:00"); not after start_min: the window crosses midnight
    tz: str  # IANA zone name, checked by zoneinfo
    days_text: str  # the days as the caller wrote them, normalised ("mon-fri")

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.tz)  # cached by zoneinfo itself

    @property
    def crosses_midnight(self) -> bool:
        return self.end_min <= self.start_min

    def to_json(self) -> dict[str, str]:
        """The canonical spec, as the API takes it and the ledger stores it."""
        return {
            "days": self.days_text,
            "start": _hhmm(self.start_min),
            "end": _hhmm(self.end_min),
            "tz": self.tz,
        }

    def describe(self) -> str:
        """'mon-fri 08:00-20:00 Europe/Berlin'."""
        return f"{self.days_text} {_hhmm(self.start_min)}-{_hhmm(self.end_min)} {self.tz}"


@dataclass(frozen=True)
class Choice:
    """Which window holds a message back, and why: `source` is "message", "template", "key" or None."""

    window: Window | None
    source: str | None
    bypassed: tuple[str, ...] = ()  # the sources skipped because priority is high and the key may

    def note(self) -> str | None:
        """A timeline line when a window was bypassed, else None."""
        if not self.bypassed:
            return None
        return f"send window of {' and '.join(self.bypassed)} bypassed: priority high"


# ---------------------------------------------------------------------- parsing
def parse_window(value: Any, *, field: str = "window") -> Window:
    """A JSON window spec -> Window; raises WindowError naming the sub-field at fault."""
    if not isinstance(value, dict):
        raise WindowError(
            field,
            'expected an object like {"days": "mon-fri", "start": "08:00", "end": "20:00", "tz": "Europe/Berlin"}',
        )
    for name in value:
        if name not in WINDOW_FIELDS:
            raise WindowError(
                f"{field}.{name}", f"unknown field (allowed: {', '.join(sorted(WINDOW_FIELDS))})"
            )
    for name in ("days", "start", "end", "tz"):
        if name not in value:
            raise WindowError(f"{field}.{name}", "this field is required")
    days, days_text = parse_days(value["days"], field=f"{field}.days")
    start = parse_hhmm(value["start"], field=f"{field}.start", allow_24=False)
    end = parse_hhmm(value["end"], field=f"{field}.end", allow_24=True)
    if end == start:
        raise WindowError(
            f"{field}.end", f"equals start ({_hhmm(start)}); for the whole day use 00:00 to 24:00"
        )
    tz = parse_tz(value["tz"], field=f"{field}.tz")
    return Window(days=days, start_min=start, end_min=end, tz=tz, days_text=days_text)


def parse_window_text(text: str, *, field: str = "window") -> Window:
    """The one-line form `describe` prints, for the CLI and the page: 'mon-fri 08:00-20:00 Europe/Berlin'."""
    words = text.split()
    start, dash, end = words[1].partition("-") if len(words) == 3 else ("", "", "")
    if not dash:
        raise WindowError(
            field,
            f"expected 'DAYS HH:MM-HH:MM ZONE' such as 'mon-fri 08:00-20:00 Europe/Berlin', got {text[:100]!r}",
        )
    return parse_window({"days": words[0], "start": start, "end": end, "tz": words[2]}, field=field)


def parse_days(value: Any, *, field: str = "window.days") -> tuple[frozenset[int], str]:
    """'mon-fri', 'sat,sun', 'mon,wed-fri', 'fri-mon' (wraps), 'daily' or '*' -> weekday numbers."""
    if not isinstance(value, str):
        raise WindowError(field, f"expected a string such as 'mon-fri', got {json_type(value)}")
    text = re.sub(r"\s+", "", value).lower()
    if text in ("daily", "*"):
        return ALL_DAYS, "daily"
    if not text:
        raise WindowError(field, "no day given: a window must allow at least one day (or 'daily')")
    days: set[int] = set()
    tokens = text.split(",")
    for token in tokens:
        if not _DAY_TOKEN.fullmatch(token):
            raise WindowError(
                field, f"{token!r} is not a day or a range like 'mon-fri' (days: {', '.join(DAY_NAMES)})"
            )
        first, _, last = token.partition("-")
        for name in (first, last or first):
            if name not in DAY_NAMES:
                raise WindowError(field, f"{name!r} is not a day (days: {', '.join(DAY_NAMES)})")
        a, b = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
        span = (b - a) % 7  # 'fri-mon' wraps over the weekend
        days.update((a + i) % 7 for i in range(span + 1))
    return frozenset(days), ",".join(tokens)


def parse_hhmm(value: Any, *, field: str, allow_24: bool) -> int:
    """'HH:MM' on a 24-hour clock -> minutes after midnight; '24:00' only where allowed (an end)."""
    if not isinstance(value, str) or not _HHMM.fullmatch(value):
        shown = repr(value) if isinstance(value, str) else json_type(value)
        raise WindowError(field, f"expected a 24-hour time 'HH:MM' such as '08:00', got {shown}")
    if value == "24:00":
        if not allow_24:
            raise WindowError(
                field, "'24:00' can only end a window; a window starting at midnight starts at '00:00'"
            )
        return 1440
    return int(value[:2]) * 60 + int(value[3:])


def parse_tz(value: Any, *, field: str = "window.tz") -> str:
    """An IANA time zone name that this box's zoneinfo knows."""
    if not isinstance(value, str):
        raise WindowError(
            field, f"expected an IANA time zone name such as 'Europe/Berlin', got {json_type(value)}"
        )
    # zoneinfo refuses path tricks itself, but only with a ValueError worded for programmers.
    if len(value) > MAX_TZ_CHARS or not _TZ_NAME.fullmatch(value):
        raise WindowError(
            field, f"{value[:MAX_TZ_CHARS]!r} is not an IANA time zone name such as 'Europe/Berlin'"
        )
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise WindowError(
            field, f"unknown time zone {value!r} (an IANA name such as 'Europe/Berlin')"
        ) from None
    return value


def window_from_json(doc: Mapping[str, Any] | None) -> Window | None:
    """The ledger's stored spec (`Window.to_json`) -> Window; None stays None.

    Remembered: the intake and the send queue read the same few windows again and again."""
    if doc is None:
        return None
    try:
        return _stored_window(tuple(sorted(doc.items())))
    except TypeError:  # an unhashable value: parse_window refuses it, naming the field
        return parse_window(dict(doc))


@functools.lru_cache(maxsize=256)
def _stored_window(items: tuple[tuple[str, Any], ...]) -> Window:
    return parse_window(dict(items))


# --------------------------------------------------------------------- queries
def is_open(window: Window, t: float) -> bool:
    """True when instant `t` (epoch seconds) lies inside one of the window's intervals."""
    return any(start <= t < end for start, end in _intervals(window, _local_date(window, t) - _DAY * 2, 4))


def next_open(window: Window, t: float) -> float:
    """`t` when open, else the first instant after `t` at which the window opens."""
    for start, end in _intervals(window, _local_date(window, t) - _DAY * 2, _SEARCH_DAYS + 2):
        if end > t and start < end:
            return max(start, t)
    raise RuntimeError(f"no opening within {_SEARCH_DAYS} days for {window.describe()}")  # see _SEARCH_DAYS


def reason(window: Window, t: float) -> str:
    """One line for the timeline: 'outside send window mon-fri 08:00-20:00 Europe/Berlin; opens Mon 2026-12-07 08:00 CET'."""
    if is_open(window, t):
        return f"inside send window {window.describe()}"
    opens = datetime.datetime.fromtimestamp(next_open(window, t), window.zone)
    return f"outside send window {window.describe()}; opens {opens:%a %Y-%m-%d %H:%M} {opens.tzname()}"


def effective_window(
    *,
    message: Window | None,
    template: Window | None,
    key_default: Window | None,
    priority: Priority,
    key_may_bypass: bool,
) -> Choice:
    """The window that holds a message: its own, else its template's, else its key's default.

    `priority: "high"` skips the template's and the key's windows when the key may bypass them;
    a window written on the message itself always holds (its sender asked for it on that message).
    """
    if message is not None:
        return Choice(message, "message")
    bypass = priority is Priority.HIGH and key_may_bypass
    skipped: list[str] = []
    for source, window in (("template", template), ("key", key_default)):
        if window is None:
            continue
        if bypass:
            skipped.append(source)
            continue
        return Choice(window, source)
    return Choice(None, None, tuple(skipped))


@dataclass(frozen=True)
class Hold:
    """When a message may be queued, and the timeline line saying why it waits (None: no window held it)."""

    release_at: float
    reason: str | None


def hold(choice: Choice, *, now: float, send_at: float | None = None) -> Hold:
    """Apply the chosen window to a message due at max(now, send_at).

    At acceptance: `release_at > now` means the message is stored `scheduled` with
    send_at = release_at and an event carrying `reason`. At promotion (send_at reached) call it
    again with the stored window: a daemon that was down past the window's end must not send
    at night, so a closed window moves send_at to its next opening with a new event.
    """
    due = now if send_at is None else max(now, send_at)
    if choice.window is None or is_open(choice.window, due):
        return Hold(due, choice.note())
    return Hold(next_open(choice.window, due), f"{reason(choice.window, due)} ({choice.source}'s window)")


# --------------------------------------------------------------------- helpers
_DAY = datetime.timedelta(days=1)


def _intervals(window: Window, first: datetime.date, count: int) -> Iterator[tuple[float, float]]:
    """[open, close) in epoch seconds for the windows opening on `count` local days from `first`."""
    for offset in range(count):
        day = first + offset * _DAY
        if day.weekday() not in window.days:
            continue
        end_day = day + _DAY if window.crosses_midnight else day
        yield _instant(window.zone, day, window.start_min), _instant(window.zone, end_day, window.end_min)


@functools.lru_cache(maxsize=4096)  # pure; every check of a window asks for the same few days
def _instant(zone: zoneinfo.ZoneInfo, day: datetime.date, minute: int) -> float:
    """Local wall time (day, minute) -> epoch seconds by the module's rule (gap: its end; repeat: first)."""
    wall = datetime.datetime.combine(day, datetime.time()) + datetime.timedelta(minutes=minute)
    candidates = []
    for fold in (0, 1):
        t = wall.replace(tzinfo=zone, fold=fold).timestamp()
        if datetime.datetime.fromtimestamp(t, zone).replace(tzinfo=None) == wall:
            candidates.append(t)
    if candidates:
        return min(candidates)
    # In a gap, fold=1 reads the wall with the offset after the change and fold=0 with the one
    # before (PEP 495), so the change itself lies between them: find its second.
    low = wall.replace(tzinfo=zone, fold=1).timestamp()
    high = wall.replace(tzinfo=zone, fold=0).timestamp()
    low, high = min(low, high), max(low, high)
    before = datetime.datetime.fromtimestamp(low, zone).utcoffset()
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.datetime.fromtimestamp(mid, zone).utcoffset() == before:
            low = mid
        else:
            high = mid
    return high


def _local_date(window: Window, t: float) -> datetime.date:
    return datetime.datetime.fromtimestamp(t, window.zone).date()


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
