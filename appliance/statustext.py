"""`smsgw status` for a person: the `/api/v1/status` document as aligned sections with units and ages.

Machines read `smsgw status --json` (the document itself); this text may change wording freely.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from appliance.web_filters import bytes_size  # the page's sizes: one formatter for both

LABEL_WIDTH = 10  # "watchdog" and "webhooks" plus a gap: every section's text starts in one column


def render(doc: dict[str, Any], *, now: float | None = None) -> str:
    """The whole status as lines of text (no trailing newline)."""
    now = time.time() if now is None else now
    gateway = doc.get("gateway", {})
    verdict = doc.get("verdict", {})
    lines = [f"{gateway.get('name', 'smsgw')}: {str(verdict.get('state', '?')).upper()}"]
    lines += [f"  - {reason}" for reason in verdict.get("reasons", [])]
    lines.append("")
    sections: list[tuple[str, list[str]]] = [
        ("gateway", _gateway(gateway)),
        ("modems", _modems(doc.get("modems", []))),
        ("queue", _queue(doc.get("queue", {}))),
        ("sent", _sent(doc.get("throughput", {}), doc.get("history", {}))),
        (
            "webhooks",
            [f"{_count(doc.get('webhooks', {}).get('backlog', 0), 'delivery', 'deliveries')} waiting"],
        ),
        ("disk", _disk(doc.get("disk", {}))),
        ("watchdog", _watchdog(doc.get("watchdog", {}), now)),
    ]
    for label, body in sections:
        for i, text in enumerate(body or ["-"]):
            lines.append(f"{label if i == 0 else '':<{LABEL_WIDTH}}{text}".rstrip())
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """A duration in words a person reads at a glance: "3 s", "4 min 10 s", "2 h 5 min", "3 d 4 h"."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min" if s % 3600 // 60 else f"{s // 3600} h"
    return f"{s // 86400} d {s % 86400 // 3600} h" if s % 86400 // 3600 else f"{s // 86400} d"


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _ago(at: object, now: float) -> str:
    """How long ago a Unix time or an RFC 3339 timestamp was, in words."""
    if isinstance(at, str):
        try:
            return f"{duration(now - datetime.fromisoformat(at.replace('Z', '+00:00')).timestamp())} ago"
        except ValueError:
            return at
    if not isinstance(at, int | float):
        return "?"
    return f"{duration(now - at)} ago"


def _gateway(g: dict[str, Any]) -> list[str]:
    up = g.get("uptime_s")
    return [f"version {g.get('version', '?')}, up {duration(up) if isinstance(up, int | float) else '?'}"]


def _modems(modems: list[dict[str, Any]]) -> list[str]:
    if not modems:
        return ["none configured"]
    width = max(len(str(m.get("name", ""))) for m in modems) + 2
    lines = []
    for m in modems:
        reg = m.get("registration") or {}
        sig = m.get("signal") or {}
        network = m.get("operator") or "no operator"
        if reg.get("text"):
            network += f" ({reg['text']}{', ' + reg['technology'] if reg.get('technology') else ''})"
        signal = f"signal {sig['dbm']} dBm" if sig.get("dbm") is not None else "signal unknown"
        if sig.get("bars") is not None:
            signal += f" ({sig['bars']}/5 bars)"
        model = " ".join(x for x in (m.get("manufacturer"), m.get("model")) if x) or "unidentified"
        lines.append(f"{m.get('name', '?'):<{width}}{m.get('state', '?')}, {model}, {network}, {signal}")
        details = [f"port {m.get('port', '?')}"]
        storage = m.get("storage") or {}
        if storage.get("total"):
            details.append(
                f"SMS storage {storage.get('memory', '')} {storage.get('used')}/{storage['total']}"
            )
        if m.get("set_aside_s"):
            details.append(f"set aside for {duration(m['set_aside_s'])} more")
        if m.get("reopens") or m.get("resets"):
            details.append(
                f"{_count(m.get('reopens') or 0, 'reopen')}, {_count(m.get('resets') or 0, 'reset')}"
            )
        if m.get("last_error"):
            details.append(f"last error: {m['last_error']}")
        lines.append(" " * width + "; ".join(details))
        traffic = m.get("traffic")
        if isinstance(traffic, dict):
            age = traffic.get("last_sent_age_s")
            lines.append(
                " " * width
                + f"last hour: {traffic.get('sent', 0)} sent, {traffic.get('failed', 0)} failed, "
                + f"{traffic.get('in_flight', 0)} in flight now; last send "
                + ("none in 24 h" if age is None else f"{duration(age)} ago")
            )
    return lines


def _queue(q: dict[str, Any]) -> list[str]:
    depth = q.get("depth", 0)
    head = f"{depth} waiting"
    if q.get("oldest_age_s") is not None and depth:
        head += f", the oldest for {duration(q['oldest_age_s'])}"
    lines = [head]
    counts = [f"{n} {state}" for state, n in (q.get("by_status") or {}).items() if n]
    if counts:
        lines.append("by status: " + ", ".join(counts))
    for held in q.get("held_back") or []:
        lines.append(
            f"held back by {held['reason']}: {_count(held['messages'], 'message')} until {held['until']}"
        )
    extra = [
        _count(q[k], what)
        for k, what in (
            ("ambiguous_total", "ambiguous send"),
            ("reports_lost_total", "lost report"),
            ("quarantined_total", "quarantined PDU"),
        )
        if q.get(k)
    ]
    if extra:
        lines.append(", ".join(extra))
    return lines


def _sent(throughput: dict[str, Any], history: dict[str, Any]) -> list[str]:
    age = throughput.get("last_sent_age_s")
    last = "nothing sent yet" if age is None else f"last one {duration(age)} ago"
    day = f"24 h: {history.get('sent', 0)} sent, {history.get('delivered', 0)} delivered"
    ratio = history.get("delivery_ratio")
    if ratio is not None:
        day += f" ({ratio * 100:.0f} %)"
    return [f"{last}; {day}"]


def _disk(d: dict[str, Any]) -> list[str]:
    if "free_bytes" not in d:
        return []
    lines = [
        f"{bytes_size(d['free_bytes'])} free of {bytes_size(d.get('total_bytes', 0))} (reserve {bytes_size(d.get('reserve_bytes', 0))})"
    ]
    if d.get("problem"):
        lines.append(str(d["problem"]))
    return lines


def _watchdog(w: dict[str, Any], now: float) -> list[str]:
    incidents = [i for i in w.get("incidents", []) if i.get("open")]
    alerts = w.get("alerts", [])
    if not incidents and not alerts:
        return ["no incidents, no alerts"]
    lines = [f"{_count(len(incidents), 'open incident')}"]
    for i in incidents:
        acked = ", acknowledged" if i.get("acked_at") else ""
        lines.append(
            f"#{i.get('id')} {i.get('subject', '')}: {i.get('what', '')} (since {_ago(i.get('since'), now)}{acked})"
        )
    if alerts:
        last = alerts[0]
        lines.append(
            f"last alert {_ago(last.get('at'), now)}: {last.get('kind', '')} ({last.get('outcome', '')})"
        )
    return lines
