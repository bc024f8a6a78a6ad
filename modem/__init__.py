"""Everything that speaks AT to a GSM/LTE modem; knows nothing of queues, ledgers or HTTP.

Layers, bottom up: `transport` (bytes; reopen after unplug), `portlock` (who holds a
port: the daemon↔watchdog lock protocol), `at` (parser and one-command engine, URC
routing), `answers` (fields of AT answers in every shape modems print), `status` (what
the modem says about itself), `sms` (operations on messages: submit, read, delete,
sweep, reports), `modem` (the `Modem`: lifecycle, initialisation, status reads, URC
routing; it mixes in `sms`), `pdu` (TS 23.040 codec), `errors` (typed +CMS/+CME tree),
`profiles` (per-model quirks), `probe` (field check), `simulator` (a modem behind ptys).
"""

from modem.errors import (
    AtError,
    AtTimeout,
    CallbackDeferred,
    CmeError,
    CmsError,
    ModemError,
    PduError,
    Retry,
    SubmitLost,
    TransportError,
    UnexpectedResponse,
)
from modem.modem import Modem
from modem.sms import SendError, StoredSms, Submitted, Undecodable, UndecodableCallback, same_subscriber
from modem.status import Identity, ModemInfo, ModemState, Registration, Signal, Storage

__all__ = [
    "AtError",
    "AtTimeout",
    "CallbackDeferred",
    "CmeError",
    "CmsError",
    "Identity",
    "Modem",
    "ModemError",
    "ModemInfo",
    "ModemState",
    "PduError",
    "Registration",
    "Retry",
    "SendError",
    "Signal",
    "Storage",
    "StoredSms",
    "SubmitLost",
    "Submitted",
    "TransportError",
    "Undecodable",
    "UndecodableCallback",
    "UnexpectedResponse",
    "same_subscriber",
]
