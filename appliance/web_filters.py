"""How the status page shows values: its Jinja filters and tests (masked numbers, durations,
times, sizes, the meaning of a modem error code). Pure functions; appliance/web.py registers them.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

import phonenumbers

from modem.errors import describe

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_CODE = re.compile(r"\b(cms|cme)_(\d+)\b", re.IGNORECASE)


def mask_number(number: str) -> str:
    """`+4915112345678` -> `+49151•••5678`: country code and network prefix, then the last 4 digits."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number[:3] + "•••" + number[-4:] if len(number) > 7 else "•••"
    nsn = phonenumbers.national_significant_number(parsed)
    # At most 3 prefix digits (German mobile NDCs are 4: 1511): enough to tell the network.
    prefix = nsn[: min(3, phonenumbers.length_of_national_destination_code(parsed))]
    if len(prefix) + 4 >= len(nsn):
        prefix = prefix[: max(0, len(nsn) - 6)]
    return f"+{parsed.country_code}{prefix}•••{nsn[-4:]}"


def threadable(number: str) -> bool:
    """Whether a number has a conversation page: E.164, not masked by retention nor alphanumeric."""
    return _E164.fullmatch(number) is not None


def error_meaning(code: str | None) -> str:
    """The meaning of a `cms_NNN`/`cme_NNN` code (27.005/27.007), or ""."""
    m = _CODE.search(code or "")
    if m is None:
        return ""
    return describe(m.group(1).upper(), int(m.group(2)))[0]


def ago(seconds: float | None) -> str:
    return "—" if seconds is None else duration(seconds) + " ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def unix(stamp: str | None) -> float | None:
    """An RFC 3339 time of the status document (`rfc3339`) as Unix time, for `ago` and `when`."""
    return None if stamp is None else datetime.fromisoformat(stamp).timestamp()


def when(t: float | None) -> str:
    if t is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + " UTC"


def bytes_size(n: int | None) -> str:
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover
