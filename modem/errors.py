"""One error tree for everything that speaks AT.

```
ModemError ─┬─ TransportError            the port is gone or cannot be opened
            │   └─ PortBusy              another process holds it open (EBUSY/EAGAIN)
            ├─ AtTimeout (TimeoutError)  no final result code in time
            │   └─ SubmitLost            the modem froze mid-submit and answers again without it
            ├─ UnexpectedResponse        a reply we cannot make sense of
            └─ AtError(command, final) ─┬─ CmeError(code)   +CME ERROR: <n> (27.007 §9.2)
                                        └─ CmsError(code)   +CMS ERROR: <n> (27.005 §3.2.5)
PduError (ValueError)                    raised only by the PDU codec
```

Every +CMS/+CME code is classified by `retry_class()` into one of `Retry`'s
members, from the table in shared/modem-traces/error-codes.tsv (sources: Gammu's
atgen.c, smstools3's modeminit.c, python-gsmmodem, ModemManager).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modem.portlock import Holder


class Retry(enum.StrEnum):
    """What to do about an error; the dispatcher maps this to an outcome."""

    NOW = "now"  # wait and retry (SIM busy, init in progress): waited out with backoff during init
    LATER = "later"  # backoff seconds to minutes (network, radio, congestion)
    FIX = "fix"  # host/config/state problem: retrying unchanged will fail again
    NEVER = "never"  # permanent for this message or recipient
    RESET = "reset"  # modem or SIM needs recovery

    @property
    def transient(self) -> bool:
        return self in (Retry.NOW, Retry.LATER, Retry.RESET)


# code -> (meaning, retry). From error-codes.tsv; ranges expanded below.
_CMS: dict[int, tuple[str, Retry]] = {
    1: ("unassigned (unallocated) number", Retry.NEVER),
    8: ("operator determined barring", Retry.NEVER),
    10: ("call barred", Retry.NEVER),
    17: ("network failure", Retry.LATER),
    21: ("short message transfer rejected", Retry.NEVER),
    22: ("congestion", Retry.LATER),
    27: ("destination out of service", Retry.LATER),
    28: ("unidentified subscriber", Retry.NEVER),
    29: ("facility rejected", Retry.NEVER),
    30: ("unknown subscriber", Retry.NEVER),
    38: ("network out of order", Retry.LATER),
    41: ("temporary failure", Retry.LATER),
    42: ("congestion", Retry.LATER),
    47: ("resources unavailable, unspecified", Retry.LATER),
    50: ("requested facility not subscribed (no SMS subscription or credit)", Retry.NEVER),
    69: ("requested facility not implemented", Retry.NEVER),
    81: ("invalid short message transfer reference value", Retry.NOW),
    95: ("invalid message, unspecified", Retry.FIX),
    96: ("invalid mandatory information", Retry.FIX),
    97: ("message type non-existent or not implemented", Retry.FIX),
    98: ("message not compatible with short message protocol state", Retry.LATER),
    99: ("information element non-existent or not implemented", Retry.FIX),
    111: ("protocol error, unspecified", Retry.LATER),
    127: ("interworking, unspecified", Retry.LATER),
    176: ("TPDU not supported", Retry.FIX),
    192: ("SC busy", Retry.LATER),
    193: ("no SC subscription", Retry.NEVER),
    194: ("SC system failure", Retry.LATER),
    195: ("invalid SME address", Retry.NEVER),
    196: ("destination SME barred", Retry.NEVER),
    197: ("SM rejected: duplicate SM (already accepted)", Retry.NEVER),
    198: ("TP-VPF not supported", Retry.FIX),
    199: ("TP-VP not supported", Retry.FIX),
    208: ("SIM SMS storage full", Retry.FIX),
    209: ("no SMS storage capability in SIM", Retry.FIX),
    210: ("error in MS", Retry.NOW),
    211: ("memory capacity exceeded", Retry.FIX),
    212: ("SIM Application Toolkit busy", Retry.NOW),
    213: ("SIM data download error", Retry.NOW),
    255: ("unspecified error cause", Retry.LATER),
    300: ("ME failure", Retry.NOW),
    301: ("SMS service of ME reserved", Retry.NOW),
    302: ("operation not allowed", Retry.FIX),
    303: ("operation not supported", Retry.FIX),
    304: ("invalid PDU mode parameter", Retry.FIX),
    305: ("invalid text mode parameter", Retry.FIX),
    310: ("SIM not inserted", Retry.RESET),
    311: ("SIM PIN required", Retry.FIX),
    312: ("PH-SIM PIN required", Retry.FIX),
    313: ("SIM failure", Retry.RESET),
    314: ("SIM busy", Retry.NOW),
    315: ("SIM wrong", Retry.RESET),
    316: ("SIM PUK required", Retry.FIX),
    317: ("SIM PIN2 required", Retry.FIX),
    318: ("SIM PUK2 required", Retry.FIX),
    320: ("memory failure", Retry.NOW),
    321: ("invalid memory index", Retry.NEVER),
    322: ("memory full", Retry.FIX),
    330: ("SMSC address unknown", Retry.FIX),
    331: ("no network service", Retry.LATER),
    332: ("network timeout (the SMS may still have reached the SC)", Retry.LATER),
    340: ("no +CNMA acknowledgement expected", Retry.FIX),
    500: ("unknown error", Retry.LATER),
    512: ("vendor specific: MM establishment failure / weak signal", Retry.LATER),
    513: ("vendor specific: lower layer failure, ack timed out or radio link lost", Retry.LATER),
    514: ("vendor specific: network congestion", Retry.LATER),
    515: ("vendor specific: please wait, init in progress", Retry.NOW),
    516: ("vendor specific: invalid length", Retry.FIX),
    517: ("vendor specific: invalid character in PDU", Retry.FIX),
    535: ("vendor specific: PS busy", Retry.NOW),
}
for _lo, _hi, _what in (
    (128, 143, "TP-PID error"),
    (144, 159, "TP-DCS error"),
    (160, 175, "TP-Command error"),
):
    for _c in range(_lo, _hi + 1):
        _CMS.setdefault(_c, (_what, Retry.FIX))

_CME: dict[int, tuple[str, Retry]] = {
    3: ("operation not allowed", Retry.FIX),
    4: ("operation not supported", Retry.FIX),
    10: ("SIM not inserted", Retry.RESET),
    11: ("SIM PIN required", Retry.FIX),
    12: ("SIM PUK required", Retry.FIX),
    13: ("SIM failure", Retry.RESET),
    14: ("SIM busy", Retry.NOW),
    16: ("incorrect password", Retry.NEVER),
    20: ("memory full", Retry.FIX),
    21: ("invalid index", Retry.NEVER),
    22: ("not found", Retry.NEVER),
    23: ("memory failure", Retry.NOW),
    30: ("no network service", Retry.LATER),
    31: ("network timeout", Retry.LATER),
    32: ("network not allowed, emergency calls only", Retry.LATER),
    100: ("unknown", Retry.LATER),
    515: ("device busy, init or command processing in progress", Retry.NOW),
}

# What the operator should do, shown next to the error where it helps.
_HINTS: dict[tuple[str, int], str] = {
    ("CMS", 311): "the SIM asks for its PIN: set modem.pin",
    ("CME", 11): "the SIM asks for its PIN: set modem.pin",
    ("CMS", 316): "the SIM is PUK-locked: unlock it in a phone",
    ("CME", 12): "the SIM is PUK-locked: unlock it in a phone",
    ("CME", 16): "wrong PIN: check modem.pin before the SIM locks",
    ("CMS", 310): "no SIM: check it is seated",
    ("CME", 10): "no SIM: check it is seated",
    ("CMS", 330): "no SMSC number on the SIM: set one with AT+CSCA",
    ("CMS", 50): "the SIM has no SMS subscription or no credit: check the plan",
    ("CMS", 322): "SIM message storage is full: delete stored messages",
    ("CMS", 208): "SIM message storage is full: delete stored messages",
    ("CMS", 331): "no network: check antenna and coverage",
}


def describe(kind: str, code: int | None) -> tuple[str, Retry]:
    """Meaning and retry class of a +CMS/+CME code; unknown codes are LATER (limited retries)."""
    if code is None:
        return ("error without a code", Retry.LATER)
    table = _CMS if kind == "CMS" else _CME
    if code in table:
        return table[code]
    if kind == "CMS" and 128 <= code <= 255:
        return ("TP-layer error from the SC", Retry.LATER)
    return ("unknown error code", Retry.LATER)


def hint(kind: str, code: int | None) -> str | None:
    """What an operator should do about this code, when there is something to do."""
    return None if code is None else _HINTS.get((kind, code))


class ModemError(Exception):
    """Base of every error raised by modem/."""


class TransportError(ModemError):
    """The serial port is gone, closed, or could not be opened.

    `maybe_sent` is true when the port went away after an SMS's PDU was written: the
    network may have it although no +CMGS came back.
    """

    maybe_sent = False


class PortBusy(TransportError):
    """The port is there but another process holds it open exclusively: not a cable or udev fault.

    `holder` is that process, when it can be named (`modem.portlock.holder_of`): the
    gateway, its watchdog, or another program such as ModemManager.
    """

    def __init__(self, message: str, holder: Holder | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class AtTimeout(ModemError, TimeoutError):
    """A command got no final result code within its timeout."""

    def __init__(self, command: str, timeout_s: float, partial: list[str] | None = None) -> None:
        super().__init__(f"{command!r}: no final result after {timeout_s:g} s")
        self.command = command
        self.timeout_s = timeout_s
        self.partial = partial or []


class SubmitLost(AtTimeout):
    """The modem stopped answering during a submit, then answered a probe but never the submit.

    Modems answer in order, so a probe's OK with no +CMGS before it means the command was lost
    in the freeze. Whether the network got the part is unknown: it counts as possibly sent.
    """

    def __init__(self, command: str, silent_s: float) -> None:
        AtTimeout.__init__(self, command, silent_s)
        self.args = (
            f"{command!r}: the modem stopped answering for {silent_s:.0f} s and lost the command "
            "(the network may have the part)",
        )
        self.silent_s = silent_s


class CallbackDeferred(Exception):
    """A callback cannot take a message now (say the ledger's disk is full), an expected fault:
    a stored message stays on the SIM, a routed one is refused (RP-ERROR) for the network to
    re-send, and either is offered again later. Logged as one line, without a traceback."""


class UnexpectedResponse(ModemError):
    """The modem answered, but not in a form we can use."""

    def __init__(self, command: str, lines: list[str]) -> None:
        super().__init__(f"{command!r}: unexpected response {lines!r}")
        self.command = command
        self.lines = lines


class AtError(ModemError):
    """The command ended in an error result (ERROR, COMMAND NOT SUPPORT, ...)."""

    kind = "AT"
    code: int | None = None

    def __init__(self, command: str, final: str, lines: list[str] | None = None) -> None:
        super().__init__(f"{command!r} failed: {final}")
        self.command = command
        self.final = final
        self.lines = lines or []

    @property
    def meaning(self) -> str:
        return describe(self.kind, self.code)[0] if self.kind in ("CMS", "CME") else self.final

    @property
    def retry(self) -> Retry:
        if self.kind in ("CMS", "CME"):
            return describe(self.kind, self.code)[1]
        return Retry.LATER

    @property
    def transient(self) -> bool:
        return self.retry.transient

    @property
    def hint(self) -> str | None:
        return hint(self.kind, self.code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(command={self.command!r}, final={self.final!r})"


class CmeError(AtError):
    """+CME ERROR: <n> (equipment/SIM/network, 27.007 §9.2)."""

    kind = "CME"

    def __init__(self, command: str, final: str, code: int | None, lines: list[str] | None = None) -> None:
        super().__init__(command, final, lines)
        self.code = code

    def __str__(self) -> str:
        return f"{self.command!r} failed: +CME ERROR {self.code}: {self.meaning}"


class CmsError(AtError):
    """+CMS ERROR: <n> (SMS service, 27.005 §3.2.5)."""

    kind = "CMS"

    def __init__(self, command: str, final: str, code: int | None, lines: list[str] | None = None) -> None:
        super().__init__(command, final, lines)
        self.code = code

    def __str__(self) -> str:
        return f"{self.command!r} failed: +CMS ERROR {self.code}: {self.meaning}"


class PduError(ValueError):
    """A PDU could not be encoded or decoded; raised only by modem.pdu."""


# Verbose (+CMEE=2) texts back to codes, for modems left in verbose mode.
VERBOSE_CME: dict[str, int] = {meaning.lower(): code for code, (meaning, _r) in _CME.items()}
VERBOSE_CMS: dict[str, int] = {meaning.lower(): code for code, (meaning, _r) in _CMS.items()}
