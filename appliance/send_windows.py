"""Send windows applied to a new message, whichever door it came through (see intake.Intake.submit).

The rules are windows.py's (pure); this module picks the window that holds a message (its own
`window`, else its template's, else its key's default; `priority: "high"` skips the last two
when the key may bypass) and records the outcome on the NewMessage for the ledger to store:
the effective window (checked again when the message falls due and when a modem would take it),
`release_at` when the window moves it later than asked (stored `scheduled`, validity counted
from there), and the timeline line saying why, or which window was bypassed.
"""

from __future__ import annotations

import dataclasses

from appliance.ledger import ApiKey, NewMessage
from appliance.windows import Window, effective_window, hold, window_from_json


def apply_window(
    new: NewMessage, *, key: ApiKey | None, template_window: Window | None, now: float
) -> NewMessage:
    """`new` with its effective window, and when that window holds it, its release time and why."""
    if new.window_source is None and template_window is None and (key is None or key.window is None):
        return new  # the common case, on the accept path of every door: nothing to decide
    own = window_from_json(new.window) if new.window_source == "message" else None
    choice = effective_window(
        message=own,
        template=template_window,
        key_default=None if key is None else window_from_json(key.window),
        priority=new.priority,
        key_may_bypass=key is not None and key.window_bypass_high,
    )
    held = hold(choice, now=now, send_at=new.send_at)
    due = now if new.send_at is None else max(now, new.send_at)
    return dataclasses.replace(
        new,
        window=None if choice.window is None else choice.window.to_json(),
        window_source=choice.source,
        release_at=held.release_at if held.release_at > due else None,
        window_note=held.reason,
    )
