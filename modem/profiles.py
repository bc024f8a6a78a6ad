"""Per-model quirks as data: extra init commands, CNMI/CPMS choices, report recovery, timeouts.

ModemManager keeps these in plugins; here each profile is one frozen record,
chosen from the manufacturer and model strings the modem reports.

Status reports must survive the gateway being down or the port freezing. A routed
`+CDS` (CNMI ds=1) written while nobody reads the port is gone, so each profile picks
one of two recoveries (reference/modem-behaviour.md §1.3, §2; 27.005 §3.4.1, §3.4.4):

* `STORED` (ds=2): the modem keeps the report in its memory (normally "SR") and says
  `+CDSI`; the gateway reads it, commits it, then deletes it, and sweeps that memory at
  start, after every reconnect and now and then. A report that came while the daemon was
  dead is waiting in the modem. Needs a model that stores reports where it can be read.
* `ACKNOWLEDGED` (AT+CSMS=1, ds=1): each routed `+CDS`/`+CMT` is acknowledged with
  AT+CNMA only after it is committed. Without the ack the modem answers RP-ERROR to the
  network, which keeps the report and delivers it again later; the modem also turns
  routing off (mt=ds=0), so the gateway turns it on again. For models without a readable
  report memory. A report that arrives while routing is off can still be lost.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ReportRecovery(enum.StrEnum):
    """How a model keeps status reports that came while nobody read the port."""

    STORED = "stored"  # CNMI ds=2, +CDSI, read and delete after commit, swept
    ACKNOWLEDGED = "acknowledged"  # AT+CSMS=1, CNMI ds=1, AT+CNMA after commit


# CNMI values: mt=1 stores received SMS and says +CMTI (durable until we delete it).
_STORED_CNMI = "2,1,0,2,0"
_ROUTED_CNMI = "2,1,0,1,0"
_NO_REPORTS_CNMI = "2,1,0,0,0"


@dataclass(frozen=True)
class Profile:
    """How to drive one family of modems."""

    name: str
    match: tuple[str, ...] = ()  # lower-case substrings of "manufacturer model"
    extra_init: tuple[str, ...] = ()
    report_recovery: ReportRecovery = ReportRecovery.STORED
    why_recovery: str = ""  # the reason, shown in the log at init
    # Tried in order until one is accepted; ds=1 is always tried with AT+CSMS=1 first.
    cnmi: tuple[str, ...] = (_STORED_CNMI, _ROUTED_CNMI, _NO_REPORTS_CNMI)
    storage: str = "SM"  # memory for received SMS (read, delete, receive)
    # Where the model really keeps stored status reports (swept, and read on +CDSI).
    report_memory: str = "SR"
    # False when +CDSI names a memory the report is not in (Quectel EC25/EG25 say "SM").
    cdsi_memory_trusted: bool = True
    submit_timeout_s: float = 180.0
    # Any byte written while AT+CMGS waits for its result aborts the send (Fibocom G510): probing
    # a slow submit with ESC/AT on this port would cancel it; ask another port, or wait.
    send_aborted_by_input: bool = False


def _acknowledged_first(*cnmi: str) -> tuple[str, ...]:
    return (_ROUTED_CNMI, *cnmi)


GENERIC = Profile(
    name="generic",
    why_recovery="stored first: any modem with an SR memory keeps reports while nobody reads the port; "
    "many Qualcomm devices reject ds=1 but take ds=2 (ModemManager cnmi_sequence)",
)

PROFILES: tuple[Profile, ...] = (
    Profile(
        name="quectel",
        match=("quectel", "ec25", "eg25", "ec21", "bg96"),
        why_recovery="stored: EC25/EG25 keep reports in SR (and read them back from there) although "
        "+CDSI announces them in SM (asterisk-chan-quectel PR #75): SR is read whatever +CDSI says",
        cdsi_memory_trusted=False,
    ),
    Profile(
        name="simcom-sim800",
        match=("sim800", "sim900"),
        report_recovery=ReportRecovery.ACKNOWLEDGED,
        why_recovery="acknowledged: SIM800 takes CNMI ds 0/1 only and has no SR memory, "
        "so a routed +CDS is acked with AT+CNMA after commit and re-sent by the network otherwise",
        cnmi=(_ROUTED_CNMI, _NO_REPORTS_CNMI),
    ),
    Profile(
        name="simcom",
        match=("simcom", "sim7600", "sim7000"),
        why_recovery="stored: SIM7600 takes ds=2 and keeps reports in SR",
    ),
    Profile(
        name="huawei",
        match=("huawei", "e3372", "e17", "k37", "k45", "e353"),
        extra_init=("AT^CURC=0",),  # silence ^RSSI/^HCSQ/^MODE periodic noise
        report_recovery=ReportRecovery.ACKNOWLEDGED,
        why_recovery='acknowledged: E3372 stick firmware lists no SR memory (+CPMS: ("SM","ME"), '
        "gammu at-cpms/brovi-e3372-325), so stored reports have no readable home; +CNMA is supported",
        cnmi=_acknowledged_first(_STORED_CNMI, _NO_REPORTS_CNMI),
    ),
    Profile(
        name="cinterion",
        match=("cinterion", "gemalto", "bgs5", "mc35"),
        why_recovery='stored: BGS5 takes ds 0/2 only and announces reports correctly as +CDSI: "SR",n '
        "(gammu #759)",
        cnmi=("2,1,0,2,1", _NO_REPORTS_CNMI),
    ),
    Profile(
        name="telit",
        match=("telit", "le910", "he910", "me910"),
        why_recovery='stored: Telit stores reports in SR and announces +CDSI: "SR",n (ME910C1 manual); '
        "+CNMA (ds=1) remains the fallback",
    ),
    Profile(
        # ZTE sticks and modules (K3565-Z, MF series, ME3630) and other Qualcomm-based sticks.
        name="zte",
        match=("zte", "k3565", "mf190", "mf626", "mf79", "mf833", "me3630", "qualcomm", "m6280", "m7227"),
        # ModemManager zte: "+ZUSIMR:2" floods "fill up the device's buffers and make it crash"
        # until AT+CPMS? is issued; ModemManager sends it while probing, so do we, first thing.
        # (If the SIM is still locked it fails; the AT+CPMS? of the status read stops it later.)
        extra_init=("AT+CPMS?",),
        why_recovery="stored: Qualcomm-based ZTE devices refuse ds=1 (ModemManager cnmi_sequence), so "
        "reports are stored (+CDSI) and swept; there is no acknowledged fallback",
        # ModemManager cnmi_sequence: Qualcomm-based devices refuse <ds>=1 although +CNMI=?
        # lists it, and accept 2: stored reports (+CDSI) from the start, no refused command.
        cnmi=("2,1,0,2,0", "2,1,0,0,0"),
        # Never AT+CSMP here: it clears the SIM's SMSC on these sticks (python-gsmmodem #8);
        # PDU mode does not need it.
    ),
    # Fibocom G510: any byte written before the result of AT+CMGS aborts the send (G5/G6 AT
    # manual). The AT engine never writes while a send is pending (AtEngine.command_with_data
    # holds the port until +CMGS/+CMS ERROR/+CMGS ERROR); the flag warns anything that probes.
    Profile(
        name="fibocom",
        match=("fibocom", "g510", "g610"),
        send_aborted_by_input=True,
        why_recovery="stored: the generic order (ds=2 first, swept); the G510's report memory is "
        "taken from its AT manual, not seen on a device",
    ),
)


def choose(manufacturer: str, model: str) -> Profile:
    """The profile whose match strings occur in the modem's self-description."""
    text = f"{manufacturer} {model}".lower()
    for profile in PROFILES:
        if any(m in text for m in profile.match):
            return profile
    return GENERIC
