"""A logging filter that collapses repeated lines, so that an attack cannot fill the disk with logs.

A flood (thousands of bad requests, refused connections, failed logins) repeats the
same few log lines. Per kind (logger, level, and the message's first line with its
numbers blanked) the first `burst` records of a window pass; the rest are counted, not written. The next record of that kind
after the window carries "(N similar suppressed)", and `flush()` (called by the
daemon's maintenance loop) writes the count for kinds that went quiet.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 60.0
BURST = 10  # per kind and window: enough to see what happens, too few to matter on disk
_NUMBERS = re.compile(r"\d+")
MAX_KINDS = 1000  # distinct templates tracked at most (they come from code, not from requests)


@dataclass
class _Kind:
    window_start: float
    passed: int = 0
    suppressed: int = 0
    logger: str = ""
    level: int = logging.INFO
    template: str = ""


class RepeatFilter(logging.Filter):
    """Lets `burst` records of one kind through per `window_s`, counts the others."""

    def __init__(
        self,
        *,
        window_s: float = WINDOW_S,
        burst: int = BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.window_s = window_s
        self.burst = burst
        self.clock = clock
        self._kinds: dict[tuple[str, int, str], _Kind] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        template = _kind_of(str(record.msg))
        key = (record.name, record.levelno, template)
        now = self.clock()
        kind = self._kinds.get(key)
        if kind is None:
            if len(self._kinds) >= MAX_KINDS:
                self._forget_quiet(now)
            kind = self._kinds[key] = _Kind(now, logger=record.name, level=record.levelno, template=template)
        elif now - kind.window_start >= self.window_s:
            suppressed = kind.suppressed
            kind.window_start, kind.passed, kind.suppressed = now, 0, 0
            if suppressed:
                kind.passed = 1
                _note_suppressed(record, suppressed)
                return True
        if kind.passed < self.burst:
            kind.passed += 1
            return True
        kind.suppressed += 1
        return False

    def flush(self) -> None:
        """Write "(N similar suppressed)" for kinds whose window ended without another record."""
        now = self.clock()
        for key, kind in list(self._kinds.items()):
            if kind.suppressed and now - kind.window_start >= self.window_s:
                count = kind.suppressed
                del self._kinds[key]  # the summary line below starts a fresh window
                logging.getLogger(kind.logger).log(
                    kind.level, "%s (%d similar suppressed)", kind.template, count
                )

    def _forget_quiet(self, now: float) -> None:
        for key, kind in list(self._kinds.items()):
            if not kind.suppressed and now - kind.window_start >= self.window_s:
                del self._kinds[key]
        if len(self._kinds) >= MAX_KINDS:  # all busy: drop the oldest rather than grow
            oldest = min(self._kinds, key=lambda k: self._kinds[k].window_start)
            del self._kinds[oldest]


def _kind_of(message: str) -> str:
    """What makes two records "similar": the first line, numbers blanked (asyncio and uvicorn log
    pre-formatted text with fds, ports and addresses in it)."""
    return _NUMBERS.sub("#", message.split("\n", 1)[0][:200])


def _note_suppressed(record: logging.LogRecord, count: int) -> None:
    try:
        text = record.getMessage()
    except (TypeError, ValueError):  # a bad format is the handler's to report, not the filter's
        return
    record.msg, record.args = f"{text} ({count} similar suppressed)", ()


def install(handlers: list[logging.Handler] | None = None) -> RepeatFilter:
    """Attach one RepeatFilter to the root logger's handlers (all output passes through them)."""
    repeat = RepeatFilter()
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        handler.addFilter(repeat)
    return repeat
