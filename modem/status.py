"""What a modem says about itself, as plain values: state, identity, registration, signal, storage.

`Modem` fills a `ModemInfo` as it reads these; reading them never does I/O.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass


class ModemState(enum.StrEnum):
    """Where the modem connection stands, as the status page shows it."""

    DISCONNECTED = "disconnected"
    INITIALISING = "initialising"
    SIM_LOCKED = "sim_locked"  # needs a PIN we do not have, or PUK
    NO_SIM = "no_sim"
    READY = "ready"


@dataclass(frozen=True)
class Identity:
    manufacturer: str
    model: str
    revision: str
    imei: str


_REG_TEXT = {0: "not registered", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming"}


@dataclass(frozen=True)
class Registration:
    """+CREG/+CEREG status (27.007 §7.2): 1 home, 5 roaming are registered."""

    status: int
    lac: str = ""
    cell: str = ""
    act: int | None = None

    @property
    def registered(self) -> bool:
        return self.status in (1, 5)

    @property
    def text(self) -> str:
        return _REG_TEXT.get(self.status, f"status {self.status}")

    @property
    def technology(self) -> str:
        return {0: "GSM", 2: "UMTS", 3: "EDGE", 4: "HSDPA", 5: "HSUPA", 6: "HSPA", 7: "LTE"}.get(
            self.act if self.act is not None else -1, ""
        )


@dataclass(frozen=True)
class Signal:
    """+CSQ (27.007 §8.5): rssi 0..31 maps to -113..-51 dBm, 99 unknown."""

    rssi: int
    ber: int = 99

    @property
    def dbm(self) -> int | None:
        return None if not 0 <= self.rssi <= 31 else -113 + 2 * self.rssi

    @property
    def bars(self) -> int:
        """0..5 bars, the usual phone scale."""
        dbm = self.dbm
        if dbm is None:
            return 0
        return sum(dbm >= t for t in (-107, -99, -91, -83, -75))


@dataclass(frozen=True)
class Storage:
    memory: str
    used: int
    total: int

    @property
    def full(self) -> bool:
        return self.total > 0 and self.used >= self.total


@dataclass
class ModemInfo:
    """Last known facts about the modem (plain fields; reading them never does I/O)."""

    identity: Identity | None = None
    sim: str = ""
    iccid: str = ""
    registration: Registration | None = None
    operator: str = ""
    signal: Signal | None = None
    storage: Storage | None = None
    cnmi: str = ""
    report_recovery: str = ""  # "stored", "acknowledged" or "none" (see modem.profiles)
    profile: str = ""
    resets: int = 0
    reopens: int = 0
    last_error: str = ""


def parse_registration(payload: str, *, solicited: bool) -> Registration | None:
    """'<n>,<stat>[,lac,ci[,act]]' when solicited; '<stat>[,lac,ci[,act]]' as a URC."""
    fields = [f.strip().strip('"') for f in payload.split(",")]
    if solicited:
        fields = fields[1:]
    try:
        status = int(fields[0])
    except (ValueError, IndexError):
        return None
    act: int | None = None
    if len(fields) >= 4:
        with contextlib.suppress(ValueError):
            act = int(fields[3])
    return Registration(
        status=status,
        lac=fields[1] if len(fields) > 1 else "",
        cell=fields[2] if len(fields) > 2 else "",
        act=act,
    )
