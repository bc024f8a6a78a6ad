"""Reads the facts of one cycle: the ledger (read-only), /healthz and /readyz, systemd, the disk, its modem.

The ledger is read only through its `*_facts` views (appliance/ledger/migrations.py, migration 9):
the daemon reads the same views, so a fact such as "oldest queued" has one definition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sqlite3
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from modem import Modem
from watchdog.checks import Facts
from watchdog.ledgerdb import on_postgres, open_readonly, run_blocking
from watchdog.settings import Settings

_LOGGER = logging.getLogger(__name__)

FINAL_FAILED = ("undelivered", "failed")


@dataclass(frozen=True)
class Ledger:
    """What the ledger says, read in one read-only transaction."""

    heartbeat_at: float | None = None
    heartbeat_detail: str = ""
    oldest_queued_at: float | None = None
    last_sent_at: float | None = None
    modem_sample_at: float | None = None
    modem_first_bad_at: float | None = None  # the first sample after the last good one
    modem_sample_state: str = ""
    delivered_last_hour: int = 0
    failed_last_hour: int = 0
    balance: float | None = None  # the lowest of the modems' latest SIM balances (balance_facts)
    balance_at: float | None = None


def read_ledger(path: str, now: float, box: str = "") -> Ledger | None:
    """The ledger's facts, opened read-only (mode=ro); None when it cannot be read.

    `path` may be a postgresql:// URL (the fleet's shared ledger): the same views, read over asyncpg.
    `box` ([fleet] box): in a ledger shared by a fleet every daemon writes the `serve` heartbeat,
    so this box's own daemon is judged by its own row in `peer_facts` (renewed with the heartbeat)."""
    if on_postgres(path):
        return run_blocking(_read_postgres(path, now, box))
    if not Path(path).exists():
        return None
    try:
        db = open_readonly(path)
    except sqlite3.Error as exc:
        _LOGGER.warning("cannot open the ledger read-only: %s", exc)
        return None
    try:
        hb = db.execute("SELECT at, detail FROM heartbeat_facts WHERE name = 'serve'").fetchone()
        oldest, last_sent = db.execute("SELECT oldest_queued_at, last_sent_at FROM queue_facts").fetchone()
        modem = _modem(db, box)
        counts = dict(
            db.execute(
                "SELECT status, COUNT(*) FROM outcome_facts WHERE final_at > ? GROUP BY status", (now - 3600,)
            ).fetchall()
        )
        balance = _lowest_balance(db, box)
        own = _own_heartbeat(db, box) if box else None
        if own is not None:
            hb = (own, hb[1] if hb else "")
    except sqlite3.Error as exc:
        _LOGGER.warning("reading the ledger failed: %s", exc)
        return None
    finally:
        db.close()
    return _ledger(hb, (oldest, last_sent), modem or _NO_SAMPLE, counts, balance)


async def _read_postgres(url: str, now: float, box: str) -> Ledger | None:
    try:
        db = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _LOGGER.warning("cannot connect to the ledger's server: %s", exc)
        return None
    try:
        async with db.transaction(readonly=True, isolation="repeatable_read"):  # one snapshot
            hb = await db.fetchrow("SELECT at, detail FROM heartbeat_facts WHERE name = 'serve'")
            queue = await db.fetchrow("SELECT oldest_queued_at, last_sent_at FROM queue_facts")
            per_box = bool(box) and await db.fetchval("SELECT to_regclass('box_modem_facts') IS NOT NULL")
            if per_box:  # this box's own samples and balances (migration 17)
                modem = await db.fetchrow(f"{_MODEM} FROM box_modem_facts WHERE box = $1", box)
                low = await db.fetchrow(f"{_LOW} WHERE box = $1 {_LOWEST}", box)
            else:
                modem = await db.fetchrow(f"{_MODEM} FROM modem_facts")
                low = await db.fetchrow(f"{_LOW} {_LOWEST}")
            rows = await db.fetch(
                "SELECT status, COUNT(*) FROM outcome_facts WHERE final_at > $1 GROUP BY status", now - 3600
            )
            own = (
                await db.fetchval("SELECT heartbeat_at FROM peer_facts WHERE name = $1", box) if box else None
            )
            if own is not None:
                hb = (float(own), hb[1] if hb else "")
    except (OSError, asyncpg.PostgresError) as exc:
        _LOGGER.warning("reading the ledger failed: %s", exc)
        return None
    finally:
        await db.close()
    balance = None if low is None or low[0] is None else (float(low[0]), float(low[1]))
    return _ledger(hb, tuple(queue), tuple(modem or _NO_SAMPLE), {r[0]: r[1] for r in rows}, balance)


def _ledger(
    hb: Any,
    queue: tuple[Any, ...],
    modem: tuple[Any, ...],
    counts: dict[str, int],
    balance: tuple[float, float] | None,
) -> Ledger:
    oldest, last_sent = queue
    sample_at, state, registered, first_bad = modem
    return Ledger(
        heartbeat_at=hb[0] if hb else None,
        heartbeat_detail=hb[1] or "" if hb else "",
        oldest_queued_at=oldest,
        last_sent_at=last_sent,
        modem_sample_at=sample_at,
        modem_sample_state=""
        if sample_at is None
        else ("registered" if registered else "unregistered")
        if state == "ready"
        else state,
        modem_first_bad_at=first_bad,
        delivered_last_hour=int(counts.get("delivered", 0)),
        failed_last_hour=sum(int(counts.get(s, 0)) for s in FINAL_FAILED),
        balance=balance[0] if balance else None,
        balance_at=balance[1] if balance else None,
    )


def _own_heartbeat(db: sqlite3.Connection, box: str) -> float | None:
    """When this box's daemon last renewed its lease; None before fleets (or before its first start)."""
    try:
        row = db.execute("SELECT heartbeat_at FROM peer_facts WHERE name = ?", (box,)).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return None if row is None else float(row[0])


# The modem facts: over the whole ledger (modem_facts), or one box's samples (box_modem_facts).
_MODEM = "SELECT sample_at, sample_state, sample_registered, first_bad_at"
_NO_SAMPLE = (None, None, None, None)  # a box that never wrote a sample (or is not registered yet)
_LOW = "SELECT value, at FROM balance_facts"
_LOWEST = "ORDER BY value LIMIT 1"


def _modem(db: sqlite3.Connection, box: str) -> Any:
    """The latest sample and the first bad one since the last good: in a fleet (`box`), of this
    box's modems only (another box's modem being down is that box's watchdog's business); on a
    ledger older than migration 17, or without a box, of every sample in it."""
    if box:
        try:
            return db.execute(f"{_MODEM} FROM box_modem_facts WHERE box = ?", (box,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
    return db.execute(f"{_MODEM} FROM modem_facts").fetchone()


def _lowest_balance(db: sqlite3.Connection, box: str = "") -> tuple[float, float] | None:
    """(amount, read at) of the lowest latest SIM balance (of this box's modems in a fleet); None
    before any check, or on a ledger older than the balance_facts view (the daemon migrates it at
    its next start)."""
    try:
        try:
            row = (
                db.execute(f"{_LOW} WHERE box = ? {_LOWEST}", (box,)).fetchone()
                if box
                else db.execute(f"{_LOW} {_LOWEST}").fetchone()
            )
        except sqlite3.OperationalError as exc:
            if "no such column" not in str(exc):
                raise
            row = db.execute(f"{_LOW} {_LOWEST}").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return None if row is None or row[0] is None else (float(row[0]), float(row[1]))


async def probe_http(client: httpx.AsyncClient, url: str) -> tuple[int | None, str]:
    """(status code, error text); status None when nothing answered."""
    try:
        response = await client.get(url)
    except httpx.TimeoutException:
        return None, "timeout"
    except httpx.HTTPError as exc:
        return None, "refused" if isinstance(exc, httpx.ConnectError) else type(exc).__name__
    return response.status_code, "" if response.status_code == 200 else f"HTTP {response.status_code}"


def under_systemd() -> bool:
    """Whether systemd runs this box (sd_booted(3): /run/systemd/system exists) and systemctl is there."""
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


async def unit_state(unit: str, *, systemd: bool) -> str | None:
    """`systemctl is-active <unit>`; None when not running under systemd."""
    if not systemd:
        return None
    proc = await asyncio.create_subprocess_exec(
        "systemctl", "is-active", unit, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    return out.decode().strip() or "unknown"


class FactsReader:
    """Reads facts each cycle and remembers since when each condition holds."""

    def __init__(self, settings: Settings, started_at: float) -> None:
        self.settings = settings
        self.started_at = started_at
        self.healthz_failing_since: float | None = None
        self.healthz_error = ""
        self.unit_down_since: float | None = None
        self.ready_failing_since: float | None = None
        self.last_ledger: Ledger | None = None
        self.canary_missed_since: float | None = None
        self.systemd = under_systemd()
        self.daemon_up_since: float | None = None
        # The box's own daemon over loopback (HTTPS when [api] tls_cert is set): nothing on the
        # path to verify, and its certificate names the box, not 127.0.0.1. Built once: a client
        # made with verify=True/False builds a context (and loads the CA bundle) each cycle.
        local = urllib.parse.urlsplit(settings.healthz_url).hostname in ("127.0.0.1", "::1", "localhost")
        self._tls = httpx.create_ssl_context(verify=not local)

    def __repr__(self) -> str:
        return f"FactsReader({self.settings.ledger_path!r})"

    def resume(self, open_since: dict[str, float]) -> None:
        """After a restart: the conditions of incidents still open (subject -> since) count as failing
        since then, not as unknown. Otherwise the first cycle, seeing /healthz fail for 0 s (less than
        healthz_fail_s) and a heartbeat not yet stale, would send RESOLVED for an open incident; now
        one only clears once its condition is seen cleared (/healthz 200, the unit active, /readyz 200)."""
        if "daemon" in open_since:
            self.healthz_failing_since = open_since["daemon"]
            self.unit_down_since = open_since["daemon"]
        if "modem" in open_since:
            self.ready_failing_since = open_since["modem"]

    async def read(self, now: float, modem: Modem | None) -> Facts:
        s = self.settings
        timeout = httpx.Timeout(s.healthz_timeout_s)
        async with httpx.AsyncClient(timeout=timeout, verify=self._tls) as client:
            (health, health_err), (ready, _) = await asyncio.gather(
                probe_http(client, s.healthz_url),
                probe_http(client, s.readyz_url) if s.readyz_url else _none(),
            )
        if health == 200:
            if self.healthz_failing_since is not None or self.daemon_up_since is None:
                self.daemon_up_since = now  # this life of the daemon, as seen from here
            self.healthz_failing_since = None
        elif self.healthz_failing_since is None:
            self.healthz_failing_since = now
        self.healthz_error = health_err
        if ready is None or ready == 200:
            # Ready, or no answer at all: a daemon that is down is the daemon incident, not the modem's.
            self.ready_failing_since = None
        elif self.ready_failing_since is None:
            self.ready_failing_since = now
        unit = await unit_state(s.unit, systemd=self.systemd)
        if unit in (None, "active", "reloading"):
            self.unit_down_since = None
        elif self.unit_down_since is None:
            self.unit_down_since = now
        ledger = await asyncio.to_thread(read_ledger, s.ledger, now, s.box)
        self.last_ledger = ledger
        free = total = None
        with contextlib.suppress(OSError):
            usage = shutil.disk_usage(s.ledger_dir)
            free, total = usage.free, usage.total
        modem_since, modem_detail = self._modem_down(ledger, now)
        storage = modem.info.storage if modem is not None and modem.ready.is_set() else None
        return Facts(
            now=now,
            heartbeat_at=ledger.heartbeat_at if ledger else None,
            watch_started_at=self.started_at,
            healthz_failing_since=self.healthz_failing_since,
            healthz_error=self.healthz_error,
            unit_state=unit,
            unit_down_since=self.unit_down_since,
            oldest_queued_at=ledger.oldest_queued_at if ledger else None,
            last_sent_at=ledger.last_sent_at if ledger else None,
            modem_down_since=modem_since,
            modem_detail=modem_detail,
            delivered_last_hour=ledger.delivered_last_hour if ledger else 0,
            failed_last_hour=ledger.failed_last_hour if ledger else 0,
            sim_used=storage.used if storage else None,
            sim_total=storage.total if storage else None,
            disk_free_bytes=free,
            disk_total_bytes=total,
            canary_missed_since=self.canary_missed_since,
            sim_balance=ledger.balance if ledger else None,
            sim_balance_at=ledger.balance_at if ledger else None,
        )

    def _modem_down(self, ledger: Ledger | None, now: float) -> tuple[float | None, str]:
        """Since when the gateway's modem is not ready: /readyz says so, or its samples do."""
        if self.ready_failing_since is not None:
            return self.ready_failing_since, "not ready (/readyz)"
        if ledger is None or ledger.modem_sample_at is None or ledger.modem_sample_state == "registered":
            return None, ""
        if ledger.heartbeat_at is None or now - ledger.heartbeat_at > self.settings.heartbeat_stale_s:
            return None, ""  # the samples stopped with the daemon: they say nothing about the modem now
        # Samples of an earlier life of the daemon (before it was restarted) do not count.
        since = max(ledger.modem_first_bad_at or ledger.modem_sample_at, self.daemon_up_since or 0.0)
        if ledger.modem_sample_at - since < self.settings.modem_down_s:
            return None, ""  # not bad for long enough *in the samples* (a start-up sample is no outage)
        return since, ledger.modem_sample_state


async def _none() -> tuple[int | None, str]:
    return None, ""
