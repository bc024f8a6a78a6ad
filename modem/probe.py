"""`smsgw modem probe PORT`: the field engineer's first look at a new modem.

Read-only: it never sets routing, never reads or deletes stored messages. Each
line says what was found and, when it is wrong, what to do about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass

from modem.errors import AtError, AtTimeout, ModemError, PortBusy, TransportError
from modem.modem import Modem


@dataclass(frozen=True)
class Finding:
    """One probe line: a name, what was found, whether it is fine, and what to do if not."""

    name: str
    value: str
    ok: bool
    hint: str = ""

    def render(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        line = f"[{mark}] {self.name:<15} {self.value}"
        return f"{line}\n       -> {self.hint}" if self.hint and not self.ok else line


async def probe(url: str, *, baudrate: int = 115200, timeout_s: float = 5.0) -> list[Finding]:
    """Probe the modem at url; stops early when the port or AT does not work."""
    found: list[Finding] = []
    modem = Modem(url, baudrate=baudrate, command_timeout_s=timeout_s)
    try:
        await modem.connect()
    except PortBusy as exc:
        found.append(Finding("port", str(exc), False, _held_hint(url, exc)))
        return found
    except TransportError as exc:
        found.append(
            Finding(
                "port",
                str(exc),
                False,
                "check the cable, `ls -l /dev/gsmmodem*` (udev rule), and that this user is in group dialout",
            )
        )
        return found
    found.append(Finding("port", url, True))
    try:
        await _probe_open(modem, found)
    except (TransportError, AtTimeout) as exc:
        found.append(
            Finding("connection", str(exc), False, "the modem stopped answering: replug it or power-cycle")
        )
    finally:
        await modem.stop()
    return found


async def _probe_open(modem: Modem, found: list[Finding]) -> None:
    try:
        await modem.command("AT", timeout_s=3)
    except AtTimeout:
        with contextlib.suppress(ModemError):
            await modem.command("AT", timeout_s=3)  # first bytes after open can be eaten
    try:
        await modem.command("ATE0", timeout_s=3)
    except AtTimeout:
        found.append(
            Finding(
                "AT",
                "no answer",
                False,
                "wrong port (try the modem's other ttyUSB), or a HiLink/NCM stick: switch it to serial mode (hardware.md)",
            )
        )
        return
    found.append(Finding("AT", "answers", True))
    with contextlib.suppress(AtError):
        await modem.command("AT+CMEE=1")
    ident = await modem.read_identity()
    found.append(
        Finding("modem", f"{ident.manufacturer} {ident.model}".strip() or "unknown", bool(ident.model))
    )
    found.append(Finding("firmware", ident.revision or "unknown", True))
    found.append(
        Finding(
            "IMEI", ident.imei or "unknown", bool(re.fullmatch(r"\d{15}", ident.imei)), "not a 15-digit IMEI"
        )
    )
    sim = await modem.read_sim_state()
    sim_hint = {
        "SIM PIN": "the SIM wants its PIN: set modem.pin in /etc/smsgw/smsgw.toml",
        "SIM PUK": "the SIM is PUK-locked: unlock it in a phone, then set modem.pin",
        "NO SIM": "no SIM: power off, seat the SIM (contacts down), power on",
        "SIM FAILURE": "SIM failure: re-seat the SIM; after brown-outs only re-seating helps",
    }.get(sim, "unexpected SIM state: try another SIM")
    found.append(Finding("SIM", sim, sim == "READY", sim_hint))
    if sim != "READY":
        return
    iccid = await modem.read_iccid()
    found.append(
        Finding("ICCID", iccid or "not readable", bool(iccid), "the modem has no ICCID command; harmless")
    )
    reg = await modem.read_registration()
    found.append(
        Finding(
            "registration",
            f"{reg.text} {reg.technology}".strip(),
            reg.registered,
            "not on a network: check antenna, coverage, that the SIM is activated; 'denied' = SIM barred or no roaming",
        )
    )
    operator = ""
    with contextlib.suppress(ModemError, IndexError):
        operator = await modem.read_operator()
    found.append(Finding("operator", operator or "none", bool(operator), "no operator: see registration"))
    try:
        signal = await modem.read_signal()
        dbm = signal.dbm
        found.append(
            Finding(
                "signal",
                f"{dbm} dBm ({signal.bars}/5 bars)" if dbm is not None else "unknown (99)",
                dbm is not None and dbm >= -105,
                "weak or no signal: fit an external antenna, move the box, or check the antenna connector",
            )
        )
    except (AtError, ValueError, IndexError) as exc:
        found.append(Finding("signal", f"unreadable: {exc}", False, "AT+CSQ failed"))
    smsc = ""
    with contextlib.suppress(AtError, IndexError):
        smsc = (await modem.command("AT+CSCA?")).first("+CSCA:").split(",")[0].strip('"')
    found.append(
        Finding(
            "SMSC",
            smsc or "none",
            bool(smsc),
            'no SMS centre number: set it with AT+CSCA="+...",145 (ask the operator)',
        )
    )
    try:
        await modem.command("AT+CMGF=0")
        found.append(Finding("PDU mode", "supported", True))
    except AtError as exc:
        found.append(
            Finding(
                "PDU mode", f"refused ({exc})", False, "this modem cannot send in PDU mode: not supported"
            )
        )
    reports = "unknown"
    ok = False
    try:
        cnmi = (await modem.command("AT+CNMI=?")).first("+CNMI:")
        groups = re.findall(r"\(([^)]*)\)", cnmi)
        ds = groups[3] if len(groups) >= 4 else ""
        modes = _expand(ds)
        if 1 in modes:
            reports, ok = "routed (+CDS)", True
        elif 2 in modes:
            reports, ok = "stored (+CDSI)", True
        else:
            reports = f"not offered (ds {ds or 'none'})"
    except (AtError, IndexError):
        pass
    found.append(
        Finding(
            "status reports",
            reports,
            ok,
            "the modem cannot report delivery: messages end as 'sent' and expire to a final state",
        )
    )
    try:
        storage = await modem.read_storage()
        found.append(
            Finding(
                "storage",
                f"{storage.memory} {storage.used}/{storage.total} used",
                not storage.full,
                "SIM storage full: incoming SMS are refused; the gateway deletes after reading once it runs",
            )
        )
    except (AtError, ValueError, IndexError) as exc:
        found.append(Finding("storage", f"unreadable: {exc}", False, "AT+CPMS? failed"))


def _held_hint(url: str, exc: PortBusy) -> str:
    """What to do about a port another process holds: the cable and udev are fine."""
    holder = exc.holder
    if holder is None:
        return f"`fuser -v {url}` names the program (often ModemManager: `systemctl stop ModemManager`)"
    if holder.role == "gateway":
        return "stop it with `systemctl stop smsgw` or probe the aux port"
    if holder.role == "watchdog":
        return "it took the port over while the gateway is down: `systemctl stop smsgw-watchdog` or probe the aux port"
    return f"stop that program (`kill {holder.pid}`; ModemManager: `systemctl stop ModemManager`) or probe another port"


def _expand(spec: str) -> set[int]:
    """'0-2,4' -> {0, 1, 2, 4}."""
    values: set[int] = set()
    for raw in spec.split(","):
        part = raw.strip()
        if "-" in part:
            lo, _, hi = part.partition("-")
            if lo.isdigit() and hi.isdigit():
                values.update(range(int(lo), int(hi) + 1))
        elif part.isdigit():
            values.add(int(part))
    return values


def main(url: str, *, baudrate: int = 115200) -> int:
    """Print the probe; exit status 0 when every line is fine."""
    findings = asyncio.run(probe(url, baudrate=baudrate))
    for f in findings:
        print(f.render())
    bad = [f for f in findings if not f.ok]
    print(
        f"\n{len(findings) - len(bad)} ok, {len(bad)} to fix"
        if bad
        else "\nall good: this modem can run smsgw"
    )
    return 1 if bad else 0
