"""What the decoder tolerates, and saying so once in the log.

Real modems hand over PDUs with odd fields that matter neither for matching a status report
nor for reading a text: an SMSC address with a filler inside the number (a D-Link DWM-156 /
Qualcomm stick, gammu #156), a time-zone octet whose nibbles are not decimal, unreadable
timestamp digits, octets after the TPDU, a reserved TP-DCS group or TP-MTI. The decoder reads
those as unknown and lists each oddity in the message's `warnings`; `log_once` writes every
distinct warning to the log at most once per `REPEAT_S`, so a modem that sends the same odd
field in every report costs one line, not one per report.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict

_LOGGER = logging.getLogger("modem.pdu")

REPEAT_S = 3600.0  # an identical warning is logged again at most this often
_MAX_REMEMBERED = 256  # distinct warnings remembered; the oldest is forgotten first

# The same oddity with other values (another timestamp, another SMSC) is the same warning.
_VALUES = re.compile(r"0x[0-9A-F]{2}|[0-9A-F]{4,}(?:\.\.\.)?|[+]?[0-9?]+|\([^)]*\)")

clock = time.monotonic  # replaceable in tests

# warning kind -> (monotonic time it was last logged, repeats suppressed since)
_seen: OrderedDict[str, tuple[float, int]] = OrderedDict()


def _kind(text: str) -> str:
    return _VALUES.sub("#", text)


def log_once(warnings: tuple[str, ...], *, kind: str) -> None:
    """Log each warning of a decoded `kind` ("StatusReport"); the same oddity at most once per REPEAT_S."""
    now = clock()
    for text in warnings:
        key = f"{kind}: {_kind(text)}"
        last = _seen.get(key)
        if last is not None and now - last[0] < REPEAT_S:
            _seen[key] = (last[0], last[1] + 1)
            continue
        repeats = f" ({last[1]} more like it since last logged)" if last and last[1] else ""
        _LOGGER.warning("%s decoded with a field read as unknown: %s%s", kind, text, repeats)
        _seen[key] = (now, 0)
        _seen.move_to_end(key)
        while len(_seen) > _MAX_REMEMBERED:
            _seen.popitem(last=False)


def forget() -> None:
    """Forget what was logged (tests)."""
    _seen.clear()
