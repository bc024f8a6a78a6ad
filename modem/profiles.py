"""Per-model quirks as data: extra init commands, CNMI/CPMS choices, timeouts.

ModemManager keeps these in plugins; here each profile is one frozen record,
chosen from the manufacturer and model strings the modem reports.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """How to drive one family of modems."""

    name: str
    match: tuple[str, ...] = ()  # lower-case substrings of "manufacturer model"
    extra_init: tuple[str, ...] = ()
    # Tried in order until one is accepted. mt=1: received SMS stored + +CMTI (durable until
    # we delete it); ds=1 routed +CDS first: Quectel announces stored reports in the wrong
    # memory, and many Qualcomm devices reject ds=1 but take ds=2 (ModemManager cnmi_sequence).
    cnmi: tuple[str, ...] = ("2,1,0,1,0", "2,1,0,2,0", "2,1,0,0,0")
    storage: str = "SM"  # memory for received SMS (read, delete, receive)
    # Some modems (Quectel EC25) announce a stored report as +CDSI: "SM",n while it sits in SR.
    report_memory_fallback: tuple[str, ...] = ("SR", "SM")
    submit_timeout_s: float = 180.0
    # Probe a submit that stays silent (ESC + AT on the same port, modem/at.py). Safe where a byte
    # during a submit is buffered or ignored; Fibocom G510 aborts AT+CMGS on any byte, so there
    # a silent submit is waited out to the timeout.
    submit_probe: bool = True


GENERIC = Profile(name="generic")

PROFILES: tuple[Profile, ...] = (
    Profile(name="quectel", match=("quectel", "ec25", "eg25", "ec21", "bg96")),
    Profile(
        name="simcom-sim800",
        match=("sim800", "sim900"),
        cnmi=("2,1,0,1,0", "2,1,0,0,0"),  # SIM800 supports ds 0/1 only
    ),
    Profile(name="simcom", match=("simcom", "sim7600", "sim7000")),
    Profile(
        name="huawei",
        match=("huawei", "e3372", "e17", "k37", "k45", "e353"),
        extra_init=("AT^CURC=0",),  # silence ^RSSI/^HCSQ/^MODE periodic noise
    ),
    Profile(
        name="cinterion", match=("cinterion", "gemalto", "bgs5", "mc35"), cnmi=("2,1,0,2,1", "2,1,0,0,0")
    ),
    Profile(name="telit", match=("telit", "le910", "he910", "me910")),
    Profile(name="fibocom", match=("fibocom", "g510"), submit_probe=False),
)


def choose(manufacturer: str, model: str) -> Profile:
    """The profile whose match strings occur in the modem's self-description."""
    text = f"{manufacturer} {model}".lower()
    for profile in PROFILES:
        if any(m in text for m in profile.match):
            return profile
    return GENERIC
