"""How long a submit may stay silent before the modem is probed, learnt from this modem's recent submits.

A submit normally answers in a few seconds, but the network decides (14.4 s seen in a
real trace; Quectel allows 120 s). Probing a busy modem is not free: the probe answers
come back after the submit's and must be drained, and on some models any byte aborts
the submit. So the probe starts only when a submit is silent for several times what
this modem's submits took recently (their 90th percentile), never before a floor (a
network hiccup is not a freeze), and never after the ceiling (the submit timeout).
A network that is slow every time raises the deadline with it: no probing, no reset.
"""

from __future__ import annotations

import collections

# Submits remembered: enough to see the network's usual pace, few enough to follow a change.
WINDOW = 20
# Silence beyond this many times the usual submit is suspicious.
FACTOR = 3.0


class SubmitTimes:
    """Recent Ctrl-Z to +CMGS durations of one modem, and the probe deadline they give."""

    def __init__(self, floor_s: float, ceiling_s: float) -> None:
        self.floor_s = floor_s
        self.ceiling_s = ceiling_s
        self._recent: collections.deque[float] = collections.deque(maxlen=WINDOW)

    def __repr__(self) -> str:
        return f"SubmitTimes(probe_after_s={self.probe_after_s:.1f}, samples={len(self._recent)})"

    def record(self, seconds: float) -> None:
        """One submit the modem answered (success or error), and how long it took."""
        self._recent.append(max(0.0, seconds))

    @property
    def usual_s(self) -> float | None:
        """The 90th percentile of recent submits; None before the first."""
        if not self._recent:
            return None
        ordered = sorted(self._recent)
        return ordered[int(0.9 * (len(ordered) - 1))]

    @property
    def probe_after_s(self) -> float:
        """Seconds of silence after which the modem is probed."""
        usual = self.usual_s
        wanted = self.floor_s if usual is None else max(self.floor_s, FACTOR * usual)
        return min(self.ceiling_s, wanted)
