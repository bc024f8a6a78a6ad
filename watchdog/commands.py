"""On-call commands (`STATUS|ACK|RESTART <pin>`): their shape, the PIN check, and their redaction.

Shared by both processes that see a command: the daemon (it receives SMS on the primary port and
stores every one in the ledger) and the watchdog (it reads the ledger, or the SIM while the daemon
is down). The daemon never learns the PIN: it stores the text redacted ("RESTART ******") and
beside it a keyed digest of the word given as PIN; the watchdog, which holds the PIN, compares
digests. The key is a random file next to the ledger, so a copy of the ledger alone does not allow
an offline search of the PIN space.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from pathlib import Path

import phonenumbers

from watchdog.keyfile import load_or_make

_LOGGER = logging.getLogger(__name__)

COMMANDS = ("STATUS", "ACK", "RESTART")
MIN_PIN_DIGITS = 6
MAX_PIN_DIGITS = 32
REDACTED = "******"
KEY_NAME = "command.key"
KEY_BYTES = 32

# A text that starts with a verb is redacted however sloppily the rest is typed ("RESTART:123456").
_VERB = re.compile(r"\s*(status|ack|restart)(?![a-z])", re.IGNORECASE)


def valid_pin(pin: str) -> bool:
    """Digits only, at least MIN_PIN_DIGITS (a 4-digit PIN falls to 10,000 guesses)."""
    return bool(re.fullmatch(rf"[0-9]{{{MIN_PIN_DIGITS},{MAX_PIN_DIGITS}}}", pin))


def verb_of(text: str) -> str | None:
    """STATUS/ACK/RESTART when the text starts with one (any case), else None."""
    m = _VERB.match(text)
    return m.group(1).upper() if m else None


def redact(text: str) -> str:
    """What may be stored, shown or logged of a text: a command keeps only its verb."""
    m = _VERB.match(text)
    if m is None or not text[m.end() :].strip():
        return text
    return f"{m.group(1).upper()} {REDACTED}"


def token_of(text: str) -> str | None:
    """The word given as PIN when the text has a command's exact shape (`VERB <pin>`), else None."""
    words = text.split()
    if len(words) != 2 or words[0].upper() not in COMMANDS:
        return None
    return words[1]


def command_shaped(text: str) -> bool:
    """Exactly `VERB <6..32 digits>`: what no customer writes by chance, and what may hold a PIN."""
    token = token_of(text)
    return token is not None and valid_pin(token)


def digest(key: bytes, token: str) -> str:
    return hmac.new(key, token.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def seal(key: bytes, text: str) -> tuple[str, str | None]:
    """(text to store, digest of its PIN word or None): the daemon's side, at the ledger's door."""
    token = token_of(text)
    return redact(text), None if token is None else digest(key, token)


def pin_matches(key: bytes, pin: str, token_digest: str | None) -> bool:
    if not pin or token_digest is None:
        return False
    return hmac.compare_digest(digest(key, pin), token_digest)


def load_key(directory: Path) -> bytes:
    """The digest key next to the ledger; made by whichever process needs it first."""
    text = load_or_make(directory / KEY_NAME, lambda: secrets.token_hex(KEY_BYTES).encode(), _valid_key)
    return bytes.fromhex(text.decode("ascii").strip())


def _valid_key(data: bytes) -> bool:
    try:
        return len(bytes.fromhex(data.decode("ascii").strip())) == KEY_BYTES
    except (ValueError, UnicodeDecodeError):
        return False


def e164(number: str, region: str) -> str | None:
    """The number in E.164 (national forms read in `region`); None when it is no phone number."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mask(number: str) -> str:
    """For logs: enough to tell numbers apart (`+4915•••678`), not enough to text them."""
    if len(number) <= 8:
        return "•••"
    head = 5 if number.startswith("+") else 4
    return f"{number[:head]}•••{number[-3:]}"
