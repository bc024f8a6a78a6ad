"""Everything that speaks AT to a GSM/LTE modem; knows nothing of queues, ledgers or HTTP.

Layers, bottom up: `transport` (bytes; reopen after unplug), `at` (parser and
one-command engine, URC routing), `sms` (operations: send, read, delete,
status), `pdu` (TS 23.040 codec), `errors` (typed +CMS/+CME tree), `profiles`
(per-model quirks), `probe` (field check), `simulator` (a modem behind ptys).
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
from modem.sms import (
    Identity,
    Modem,
    ModemInfo,
    ModemState,
    Registration,
    SendError,
    Signal,
    Storage,
    StoredSms,
    Submitted,
    Undecodable,
    UndecodableCallback,
    same_subscriber,
)

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
