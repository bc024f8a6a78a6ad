"""Holding this box's `[fleet] box` name at start: one start per name in a fleet (ledger/fleet.py).

A second box given the same name would renew the first one's lease and recover its in-flight
messages as its own; so a start refused by a live lease of another start waits for that lease to
run out (the other start crashed less than a lease ago), and gives up with one line naming the
box and the other holder as soon as that start renews it (a second box runs with this name).

The start's token is left in the box's own directory (INSTANCE_FILE): the next start here knows
its own crashed predecessor and takes the name at once (a restart must be fast: the modem stops
routing reports that are not acknowledged within seconds), where a box cloned from this one's
SD card later has a stale token and waits like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from appliance.ledger.backend import LedgerBackend
from appliance.ledger.fleet import Box
from appliance.ledger.payloads import rfc3339

_LOGGER = logging.getLogger(__name__)

INSTANCE_FILE = "fleet-instance"
POLL_S = 1.0  # how often a waiting start looks at the other start's lease


class NameTaken(Exception):
    """Another start holds this box's name and renews its lease."""


def previous_instance(directory: Path | None) -> str | None:
    """The token the last start on this box left, or None (first start, unreadable)."""
    if directory is None:
        return None
    try:
        text = (directory / INSTANCE_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def remember_instance(directory: Path | None, instance: str) -> None:
    """Leave this start's token for the next start here (atomically: a crash leaves old or new)."""
    if directory is None:
        return
    path = directory / INSTANCE_FILE
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(instance + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        # Only the next start's speed after a crash depends on it: it waits out the lease instead.
        _LOGGER.warning("cannot keep this start's fleet token in %s: %s", path, exc)


def refusal(box: str, holder: Box, now: float) -> str:
    """The one line said when the name is held by another live start."""
    return (
        f"fleet.box {box}: another box runs with this name (start {holder.instance}, lease renewed "
        f"{max(0.0, now - holder.heartbeat_at):.0f} s ago, held until {rfc3339(holder.lease_until)}): "
        "refusing to start; give each box of the fleet its own [fleet] box"
    )


async def hold_name(
    store: LedgerBackend, lease_s: float, directory: Path | None, stop: asyncio.Event
) -> None:
    """Register this start under the box's name, waiting out a crashed start's lease; raises
    NameTaken when another start renews it meanwhile (or `stop` is set while waiting).
    `directory`: the box's own files (None: an in-memory ledger keeps no token)."""
    holder = await store.register_box(lease_s, previous=previous_instance(directory))
    if holder is not None:
        first_beat = holder.heartbeat_at
        _LOGGER.info(
            "fleet.box %s: held by start %s until %s: waiting for that lease to run out",
            store.box,
            holder.instance,
            rfc3339(holder.lease_until),
        )
        while holder is not None:
            if holder.heartbeat_at != first_beat:
                raise NameTaken(refusal(str(store.box), holder, time.time()))
            wait_s = min(POLL_S, max(0.0, holder.lease_until - time.time()) + 0.05)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait_s)
            if stop.is_set():
                raise NameTaken(f"fleet.box {store.box}: stopped while waiting for the name's lease")
            holder = await store.register_box(lease_s)
    remember_instance(directory, store.instance)
