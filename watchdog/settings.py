"""The watchdog's own settings: plain values, so `watchdog/` never imports the daemon's config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from watchdog.mail import SmtpSettings
from watchdog.thresholds import Thresholds


@dataclass(frozen=True)
class Settings(Thresholds):
    """Everything the watchdog needs; `smsgw watchdog` builds it from `[watchdog]` and friends.

    Its alert thresholds are the `Thresholds` fields, the very type `[watchdog]` extends."""

    ledger_path: str = "/var/lib/smsgw/ledger.sqlite3"  # its directory holds the box's own files
    ledger_url: str = ""  # a shared PostgreSQL ledger ([store] url): the facts are read there
    box_name: str = "smsgw"
    primary_port: str = "/dev/gsmmodem"  # the daemon's port; taken over only when `port` is empty
    port: str = ""  # its own AT port (aux); empty: take the primary over once the daemon is gone
    baudrate: int = 115200
    sim_pin: str = ""
    oncall: tuple[str, ...] = ()
    default_region: str = "DE"  # national sender numbers ("0151...") are read in this region
    pin: str = ""  # the PIN on-call replies must carry (6+ digits); empty: replies are ignored
    healthz_url: str = "http://127.0.0.1:8080/healthz"
    readyz_url: str = "http://127.0.0.1:8080/readyz"
    unit: str = "smsgw.service"
    restart_command: tuple[str, ...] = ("systemctl", "restart", "smsgw.service")
    state_path: str = ""  # default: watchdog.sqlite3 next to the ledger
    cycle_s: float = 5.0
    healthz_timeout_s: float = 4.0
    repeat_s: float = 1800.0
    cap_per_hour: int = 10
    alive_at: str = "09:00"  # local time of the daily "alive" SMS; "" = never
    command_timeout_s: float = 5.0
    submit_timeout_s: float = 30.0
    canary_number: str = ""  # the box's own number; empty: canary off
    canary_every_s: float = 0.0  # 0: canary off (each one costs an SMS)
    canary_timeout_s: float = 600.0
    # Escalation (watchdog/escalation.py): 0 = every on-call number at once, as before chains.
    escalate_after_s: float = 0.0
    escalate_email: tuple[str, ...] = ()  # "mailto:a@b" targets after the last number
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    balance_floor: float = 0.0  # [ussd] alert_below: a prepaid balance below it alerts; 0 = never
    box: str = ""  # this box in a fleet sharing the ledger ([fleet] box); "": watch no peers
    peer_silent_s: float = 90.0  # a fleet peer's heartbeat older than this: one text (watchdog/peers.py)

    @property
    def ledger(self) -> str:
        """Where the facts and peers are read: the PostgreSQL URL, else the SQLite file."""
        return self.ledger_url or self.ledger_path

    @property
    def ledger_dir(self) -> Path:
        return Path(self.ledger_path).parent

    @property
    def state_file(self) -> Path:
        return Path(self.state_path) if self.state_path else self.ledger_dir / "watchdog.sqlite3"

    @property
    def takeover(self) -> bool:
        """Whether the watchdog has no port of its own and borrows the daemon's."""
        return not self.port
