"""The one status document: `/api/v1/status`, the status page and `/metrics` all read it.

Built from the ledger (queue, throughput, webhook backlog) and a `GatewayView` the
daemon implements (modem facts, readiness, start time), so the places that show
the gateway's health can never disagree.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from appliance.config import Config
from appliance.ledger import LatestBalance, LedgerUnreachable, Stats, Store, rfc3339
from appliance.ledger.telemetry import ModemTraffic
from appliance.states import State
from watchdog.alert import read_state, request_ack

MIN_FREE_BYTES = 5 * 1024 * 1024  # below this the API refuses new messages (507): a commit could fail
WEAK_SIGNAL_DBM = -105  # below this, submits start to time out on most networks
MAX_WEBHOOK_BACKLOG = 1000
MAX_QUEUED_AGE_S = 600.0  # the watchdog's default stall threshold is longer; warn earlier here

WAITING = (State.QUEUED, State.SCHEDULED, State.SENDING)


class GatewayView(Protocol):
    """What the API needs from the running daemon that the ledger cannot tell (USSD is not here:
    the daemon hands its `send_ussd` to `api.create_app` itself)."""

    def modems(self) -> list[dict[str, Any]]:
        """Per modem: name, port, state ("ready"/"disconnected"/...), manufacturer, model, revision,
        imei, sim, iccid, operator, registration {"status","text","technology"}, signal {"dbm","bars"},
        storage {"memory","used","total"}, last_error, reopens, resets."""
        ...

    def ready(self) -> tuple[bool, str]:
        """(ready, reason) for /readyz: a modem ready (registered) and the ledger writable."""
        ...

    def wake(self, *, chains: bool = True) -> None:
        """A message was committed: start the dispatcher now (and the escalator when `chains`:
        what was committed may start an escalation chain)."""
        ...

    def started_at(self) -> float:
        """Unix time the daemon started."""
        ...

    def reset_modem(self, name: str) -> bool:
        """Reset the named modem in the background (AT+CFUN=1,1, then reopen); False if no such modem.

        Optional: a view without it makes the status page say resets are unavailable."""
        ...


def version() -> str:
    try:
        return metadata.version("smsgw")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def disk_usage(store: Store) -> tuple[int, int]:
    """(free_bytes, total_bytes) of the filesystem holding the ledger."""
    where = Path(store.path).parent if store.path != ":memory:" and not store.postgres else Path()
    usage = shutil.disk_usage(where)
    return usage.free, usage.total


def ledger_problem(store: Store, *, min_free_bytes: int = MIN_FREE_BYTES) -> str | None:
    """Why the ledger cannot take a write now (a sentence), or None when it can."""
    if not store.is_open:
        return "The ledger is not open."
    if store.storage_problem is not None:
        return store.storage_problem
    if store.path != ":memory:" and not store.postgres:  # a PostgreSQL server minds its own disk
        return _filesystem_problem(store, min_free_bytes)
    return None


# The filesystem's answer stands for FILESYSTEM_CHECK_S: asked on every accept, its three system
# calls were ~9 % of the event loop's time under single POSTs, and half a second of accepts
# (~300 at full rate, ~1 KiB each) is far inside MIN_FREE_BYTES. A commit that meets a full
# disk still refuses at once (store.storage_problem, above).
FILESYSTEM_CHECK_S = 0.5
_FILESYSTEM_ANSWERS: dict[tuple[str, int], tuple[float, str | None]] = {}


def _filesystem_problem(store: Store, min_free_bytes: int) -> str | None:
    now = time.monotonic()
    ident = (str(store.path), min_free_bytes)
    known = _FILESYSTEM_ANSWERS.get(ident)
    if known is not None and now - known[0] < FILESYSTEM_CHECK_S:
        return known[1]
    path = Path(store.path)
    answer = None
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        answer = f"The ledger {path} is not writable by this process."
    else:
        free, _total = disk_usage(store)
        if free < min_free_bytes:
            answer = (
                f"Only {free // 1024} KiB are free on the ledger's disk: new messages are refused "
                "until space is freed."
            )
    if len(_FILESYSTEM_ANSWERS) > 64:  # a ledger or two per process (many in a test run)
        _FILESYSTEM_ANSWERS.clear()
    _FILESYSTEM_ANSWERS[ident] = (now, answer)
    return answer


async def build_status(
    store: Store,
    gateway: GatewayView,
    config: Config,
    *,
    now: float | None = None,
    min_free_bytes: int = MIN_FREE_BYTES,
) -> dict[str, Any]:
    """The `/api/v1/status` document."""
    now = time.time() if now is None else now
    try:
        stats = await store.stats()
        backlog = await store.webhook_backlog()
        balances = await store.latest_balances()
        held = await store.held_back(now)
        traffic = await store.per_modem(now - TRAFFIC_WINDOW_S, now - HISTORY_S)
        boxes = await store.boxes()
        recent = await history(store, now=now)
    except LedgerUnreachable:
        # The server is down: the document still answers (modems, spool), its ledger figures empty.
        hours = HISTORY_S // 3600
        stats, backlog, balances, held = Stats(), 0, {}, []
        recent = _history_payload([0] * hours, [0] * hours, {})
        traffic, boxes = {}, []
    modems = [
        {
            **m,
            "balance": balance_payload(balances.get(str(m.get("name"))), config.ussd.alert_below),
            "traffic": traffic_payload(traffic.get(str(m.get("name"))), now),
        }
        for m in gateway.modems()
    ]
    by_status = {state.value: stats.by_status.get(state.value, 0) for state in State}
    oldest_age_s = None if stats.oldest_queued_at is None else max(0.0, now - stats.oldest_queued_at)
    free, total = disk_usage(store)
    started = gateway.started_at()
    return {
        "gateway": {
            "name": config.gateway.name,
            "version": version(),
            "uptime_s": round(max(0.0, now - started), 3),
            "started_at": rfc3339(started),
        },
        "verdict": judge(
            modems=modems,
            ledger_problem=ledger_problem(store, min_free_bytes=min_free_bytes),
            spool_problem=None if store.spool is None else store.spool.problem(),
            webhook_backlog=backlog,
            oldest_queued_age_s=oldest_age_s,
        ),
        "modems": modems,
        "queue": {
            "depth": sum(by_status[s.value] for s in WAITING),
            "by_status": by_status,
            "oldest_age_s": None if oldest_age_s is None else round(oldest_age_s, 3),
            "ambiguous_total": stats.ambiguous_total,
            # Final as `sent` because their status report never came (report_timeout).
            "reports_lost_total": stats.reports_lost_total,
            # Undecodable PDUs kept by GET /api/v1/quarantine (received, never queued: counted here
            # so the status document keeps its sections).
            "quarantined_total": stats.quarantined_total,
            # Which limit (rate, anti-flood) holds messages back, how many, and until when.
            "held_back": [
                {"reason": reason, "messages": n, "until": rfc3339(until)} for reason, n, until in held
            ],
        },
        "throughput": {
            "last_sent_at": rfc3339(stats.last_sent_at),
            "last_sent_age_s": None
            if stats.last_sent_at is None
            else round(max(0.0, now - stats.last_sent_at), 3),
        },
        "webhooks": {"backlog": backlog},
        "watchdog": read_state(watchdog_state_path(config)),
        # reserve_bytes: held back for recording sends when the disk fills (store.reserve_bytes);
        # problem: why the ledger takes no new messages now, or null.
        "disk": {
            "free_bytes": free,
            "total_bytes": total,
            "reserve_bytes": store.reserve_bytes,
            "problem": store.storage_problem,
        },
        "history": recent,
        # Boxes sharing this ledger (ledger/fleet.py): this box's name, and each box's lease.
        "fleet": {
            "box": config.fleet.box,
            "boxes": [
                {
                    "name": b.name,
                    "heartbeat_at": rfc3339(b.heartbeat_at),
                    "heartbeat_age_s": round(max(0.0, now - b.heartbeat_at), 3),
                    "lease_until": rfc3339(b.lease_until),
                    "lease": "taken_over"
                    if b.taken_over_by
                    else "held"
                    if b.lease_until >= now
                    else "expired",
                    "taken_over_by": b.taken_over_by,
                    "taken_over_at": rfc3339(b.taken_over_at),
                }
                for b in boxes
            ],
        },
        # PostgreSQL: this box's local spool (messages accepted while the server was unreachable,
        # not yet moved to it), or null on a SQLite ledger.
        "spool": None
        if store.spool is None
        else {
            "messages": store.spool.messages,
            "journal": store.spool.journal,
            "sending_paused": store.spool.sending_paused,
            "problem": store.spool.problem(),
        },
    }


def traffic_payload(traffic: ModemTraffic | None, now: float) -> dict[str, Any]:
    """A modem's share of the sending from the ledger: messages sent, parts sent and messages failed
    in the last hour, messages in flight now, and its last send within the last 24 h (else null)."""
    t = traffic or ModemTraffic()
    last = t.last_sent_at
    return {
        "window_s": TRAFFIC_WINDOW_S,
        "sent": t.sent,
        "parts": t.parts,
        "failed": t.failed,
        "in_flight": t.in_flight,
        "last_sent_at": rfc3339(last),
        "last_sent_age_s": None if last is None else round(max(0.0, now - last), 3),
    }


def balance_payload(latest: LatestBalance | None, floor: float) -> dict[str, Any] | None:
    """A modem's SIM balance ([ussd] check): the last amount found and when, the last check's error
    (null when it found an amount), and whether the amount is below `alert_below`; null before any check."""
    if latest is None:
        return None
    good = latest.last_ok
    value = None if good is None else good.value
    return {
        "value": value,
        "at": None if good is None else rfc3339(good.at),
        "checked_at": rfc3339(latest.last.at),
        "error": None if latest.last.ok else latest.last.error,
        "below_floor": floor > 0 and value is not None and value < floor,
    }


HISTORY_S = 24 * 3600
TRAFFIC_WINDOW_S = 3600  # per-modem counts on the page and in /metrics: the last hour
SIGNAL_BUCKET_S = 300  # 288 points a day: finer than a phone screen shows


async def history(store: Store, *, now: float) -> dict[str, Any]:
    """The last 24 h: sent and delivered per hour (oldest first), delivery ratio, signal per modem."""
    start = now - HISTORY_S
    hours = HISTORY_S // 3600
    sent = [0] * hours
    delivered = [0] * hours
    for hour, n in await store.per_bucket("sent_at", start, now, 3600):
        sent[min(hours - 1, max(0, hour))] += n
    for hour, n in await store.per_bucket("delivered_at", start, now, 3600):
        delivered[min(hours - 1, max(0, hour))] += n
    signal: dict[str, list[dict[str, Any]]] = {}
    for modem, t, dbm in await store.signal_buckets(start, SIGNAL_BUCKET_S):
        signal.setdefault(modem, []).append({"at": rfc3339(t), "t": t, "dbm": dbm})
    return _history_payload(sent, delivered, signal)


def _history_payload(
    sent: list[int], delivered: list[int], signal: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    total_sent, total_delivered = sum(sent), sum(delivered)
    return {
        "window_s": HISTORY_S,
        "sent_per_hour": sent,
        "delivered_per_hour": delivered,
        "sent": total_sent,
        "delivered": total_delivered,
        # Reports lag sends: a ratio over the same window, capped at 1, None before anything was sent.
        "delivery_ratio": None if total_sent == 0 else round(min(1.0, total_delivered / total_sent), 3),
        "signal": signal,
    }


async def acknowledge_incident(config: Config, incident_id: str, *, by: str) -> bool:
    """Ask the watchdog to silence an open incident's repeats; False when there is no such open incident.

    The watchdog owns its state file; this only adds a request row it applies on its next cycle.
    """
    if not incident_id.isdigit():
        return False
    return await asyncio.to_thread(request_ack, watchdog_state_path(config), int(incident_id), by=by)


def watchdog_state_path(config: Config) -> Path:
    """Where `smsgw watchdog` keeps its incidents and alerts (read here, read-only)."""
    if config.watchdog.state_path:
        return Path(config.watchdog.state_path)
    return Path(config.store.path).parent / "watchdog.sqlite3"


def registered(modem: dict[str, Any]) -> bool:
    """Whether a modem's registration (27.007 +CREG status: 1 home, 5 roaming) lets it send."""
    status = (modem.get("registration") or {}).get("status")
    return status in (1, 5, "home", "roaming")


def usable(modem: dict[str, Any]) -> bool:
    """Ready and registered: this modem can send now."""
    return modem.get("state") == "ready" and registered(modem)


def judge(
    *,
    modems: list[dict[str, Any]],
    ledger_problem: str | None,
    webhook_backlog: int,
    oldest_queued_age_s: float | None,
    spool_problem: str | None = None,
) -> dict[str, Any]:
    """healthy / degraded / down, with one sentence per reason."""
    down: list[str] = []
    degraded: list[str] = []
    ready = [m for m in modems if usable(m)]
    if ledger_problem is not None:
        down.append(ledger_problem)
    if spool_problem is not None:  # still accepting (into the spool): degraded, not down
        degraded.append(spool_problem)
    if not modems:
        down.append("No modem is configured or detected.")
    elif not ready:
        down.append("No modem is ready: nothing can be sent.")
    for modem in modems:
        name = modem.get("name") or modem.get("port") or "modem"
        if not usable(modem):
            if modem.get("state") == "ready":
                reg = modem.get("registration") or {}
                what = f"not registered on a network ({reg.get('text') or 'no registration'})"
            else:
                what = str(modem.get("state", "in an unknown state"))
            if ready:
                degraded.append(f"Modem {name} is {what}; the others carry the load.")
            else:
                down.append(f"Modem {name} is {what}.")
            continue
        set_aside = modem.get("set_aside_s") or 0
        if set_aside > 0:
            degraded.append(
                f"Modem {name} failed repeatedly and is set aside for {set_aside:.0f} s more"
                f"{': the others carry the load' if len(ready) > 1 else ''}."
            )
        dbm = (modem.get("signal") or {}).get("dbm")
        if isinstance(dbm, int | float) and dbm < WEAK_SIGNAL_DBM:
            degraded.append(f"Modem {name} has a weak signal ({dbm} dBm): sends may time out.")
        storage = modem.get("storage") or {}
        used, total = storage.get("used"), storage.get("total")
        if isinstance(used, int) and isinstance(total, int) and total > 0 and used >= total:
            degraded.append(
                f"Modem {name}'s SMS storage is full ({used}/{total}): new messages and reports may be lost."
            )
    if webhook_backlog > MAX_WEBHOOK_BACKLOG:
        degraded.append(f"{webhook_backlog} webhook deliveries are waiting: a webhook target is failing.")
    if oldest_queued_age_s is not None and oldest_queued_age_s > MAX_QUEUED_AGE_S:
        degraded.append(
            f"The oldest waiting message has waited {oldest_queued_age_s / 60:.0f} minutes: sending is slow or stalled."
        )
    state = "down" if down else "degraded" if degraded else "healthy"
    return {"state": state, "reasons": down + degraded}
