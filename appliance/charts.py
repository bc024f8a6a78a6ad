"""Inline SVG charts for the status page: pure functions from numbers to markup (no assets, no JS).

Every chart scales to its container (`viewBox` plus `width="100%"`), so one drawing
serves a phone and a desktop.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH = 600
HEIGHT = 140
PAD_LEFT = 44
PAD_BOTTOM = 22
PAD_TOP = 8
SIGNAL_FLOOR_DBM = -113  # 27.007 +CSQ 0
SIGNAL_CEIL_DBM = -51  # 27.007 +CSQ 31


def signal_bars(bars: int | None, *, size: int = 28) -> Markup:
    """Four ascending bars, the filled ones for `bars` (0..4, None = unknown)."""
    filled = -1 if bars is None else max(0, min(4, bars))
    rects = []
    for i in range(4):
        h = 6 + i * 6
        cls = "on" if i < filled else "off"
        rects.append(f'<rect class="{cls}" x="{i * 7}" y="{24 - h}" width="5" height="{h}" rx="1"/>')
    label = "unknown" if bars is None else f"{filled} of 4 bars"
    return Markup(  # noqa: S704  (built from integers only)
        f'<svg class="bars" viewBox="0 0 26 24" width="{size}" height="{size}" role="img" '
        f'aria-label="{label}">{"".join(rects)}</svg>'
    )


def signal_history(points: Sequence[tuple[float, int | None]], *, start: float, end: float) -> Markup:
    """A line of signal dBm over [start, end]; gaps (None: no signal known) break the line."""
    span = max(1.0, end - start)
    plot_w = WIDTH - PAD_LEFT - 4
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(t: float) -> float:
        return PAD_LEFT + (t - start) / span * plot_w

    def y(dbm: float) -> float:
        frac = (min(SIGNAL_CEIL_DBM, max(SIGNAL_FLOOR_DBM, dbm)) - SIGNAL_FLOOR_DBM) / (
            SIGNAL_CEIL_DBM - SIGNAL_FLOOR_DBM
        )
        return PAD_TOP + (1 - frac) * plot_h

    grid = []
    for level in (-60, -80, -100):
        grid.append(
            f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - 4}" y1="{y(level):.1f}" y2="{y(level):.1f}"/>'
            f'<text class="axis" x="{PAD_LEFT - 4}" y="{y(level) + 4:.1f}" text-anchor="end">{level}</text>'
        )
    paths: list[str] = []
    current: list[str] = []
    for t, dbm in points:
        if dbm is None:
            if current:
                paths.append(" ".join(current))
            current = []
            continue
        current.append(f"{'M' if not current else 'L'}{x(t):.1f},{y(dbm):.1f}")
    if current:
        paths.append(" ".join(current))
    lines = "".join(f'<path class="line" d="{d}"/>' for d in paths)
    dots = ""
    known = [(t, d) for t, d in points if d is not None]
    if len(known) == 1:
        dots = f'<circle class="dot" cx="{x(known[0][0]):.1f}" cy="{y(known[0][1]):.1f}" r="3"/>'
    empty = (
        f'<text class="axis" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no samples yet</text>'
        if not any(d is not None for _t, d in points)
        else ""
    )
    return Markup(  # noqa: S704  (numbers only)
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-label="signal in dBm over 24 hours">{"".join(grid)}{_time_axis()}{lines}{dots}{empty}</svg>'
    )


def hourly_bars(series: Sequence[tuple[str, Sequence[int]]]) -> Markup:
    """Grouped bars per hour (oldest left) for each (css class, counts) series, with a legend."""
    hours = max((len(counts) for _cls, counts in series), default=0)
    top = max((c for _cls, counts in series for c in counts), default=0)
    scale_top = max(1, top)
    plot_w = WIDTH - PAD_LEFT - 4
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / max(1, hours)
    bar_w = max(1.0, (slot - 2) / max(1, len(series)))
    bars = []
    for s, (cls, counts) in enumerate(series):
        for i, count in enumerate(counts):
            if count <= 0:
                continue
            h = count / scale_top * plot_h
            bx = PAD_LEFT + i * slot + 1 + s * bar_w
            bars.append(
                f'<rect class="{escape(cls)}" x="{bx:.1f}" y="{PAD_TOP + plot_h - h:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}"><title>{count}</title></rect>'
            )
    peak = f'<text class="axis" x="{PAD_LEFT - 4}" y="{PAD_TOP + 12}" text-anchor="end">{top}</text>'
    axis = (
        (peak if top else "")
        + f'<text class="axis" x="{PAD_LEFT - 4}" y="{PAD_TOP + plot_h}" text-anchor="end">0</text>'
        f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - 4}" y1="{PAD_TOP + plot_h}" y2="{PAD_TOP + plot_h}"/>'
    )
    return Markup(  # noqa: S704  (numbers and escaped class names)
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-label="messages per hour over 24 hours">{axis}{_time_axis()}{"".join(bars)}</svg>'
    )


def _time_axis() -> str:
    labels = ((0, "-24 h", "start"), (0.5, "-12 h", "middle"), (1, "now", "end"))
    plot_w = WIDTH - PAD_LEFT - 4
    return "".join(
        f'<text class="axis" x="{PAD_LEFT + frac * plot_w:.1f}" y="{HEIGHT - 4}" text-anchor="{anchor}">{text}</text>'
        for frac, text, anchor in labels
    )
