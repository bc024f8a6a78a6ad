"""Request parsing and validation: untrusted JSON in, a `NewMessage` (or an `ApiError`) out.

Every check names the field at fault, so that a LAN app's developer can fix the
request from the error alone. Nothing here touches the ledger or the network.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import json
import re
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

import phonenumbers

from appliance import addrpolicy, segments
from appliance.config import MAX_ESCALATION_AFTER_S, Config
from appliance.e164_form import parse_e164, split_e164
from appliance.jsontypes import json_type as _json_type
from appliance.ledger import EscalationSpec, NewMessage
from appliance.states import Priority
from appliance.windows import Window, WindowError, parse_window
from watchdog.mail import is_mailto, mailto_address

MAX_SCHEDULE_AHEAD_S = 30 * 86400  # a send_at further out is almost surely a units or year mistake
MIN_VALIDITY_S = 60
MAX_VALIDITY_S = 7 * 86400  # TS 23.040 relative validity tops out near 63 weeks; carriers keep ~7 days
MAX_METADATA_BYTES = 4096
MAX_URL_CHARS = 2048
MAX_IDEMPOTENCY_KEY_CHARS = 255  # Stripe's limit, widely copied
MAX_NUMBER_CHARS = 64
MAX_SEGMENTS = segments.MAX_SEGMENTS
MAX_PAGE = 200
DEFAULT_PAGE = 50

PRIORITIES = {"high": Priority.HIGH, "normal": Priority.NORMAL, "bulk": Priority.BULK}
SEND_FIELDS = frozenset(
    {
        "to",
        "body",
        "idempotency_key",
        "send_at",
        "validity_s",
        "priority",
        "status_callback",
        "metadata",
        "window",
        "escalation",
    }
)
ESCALATION_FIELDS = frozenset({"after_s", "until", "then"})
ESCALATION_UNTIL = ("delivered", "replied")
MAX_ESCALATION_TARGETS = 10

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})")
_NUMBER_CHARS = re.compile(r"[0-9+\-(). /]+")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")
_DIGITS = re.compile(r"[0-9]{1,9}")  # str.isdigit() also accepts "²", which int() refuses
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")  # \uD800-\uDFFF: a surrogate's escape


class ApiError(Exception):
    """A request the API refuses: HTTP status, snake_case code and a sentence for the developer."""

    def __init__(self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # A batch's refusals come back from its worker process (batch_worker.py) pickled.
        return (self.__class__, (self.status, self.code, self.message), {"headers": self.headers})


def invalid(field: str, message: str) -> ApiError:
    """422 invalid_field naming the field."""
    return ApiError(422, "invalid_field", f"{field}: {message}")


# ------------------------------------------------------------------- documents
def parse_json(raw: bytes) -> Any:
    """Bytes of a request body -> a JSON value; 400 invalid_json when it is not strict JSON."""

    def _no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
        # Lone surrogates ("\ud800") parse but cannot be stored or sent: refuse them here. Only a
        # \uD800-\uDFFF escape makes one (the UTF-8 decoder refuses encoded ones), so a body
        # without such an escape skips re-encoding the whole document (~10 ms for a batch).
        if _SURROGATE_ESCAPE.search(raw) is not None:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeError:
        raise ApiError(400, "invalid_json", "the request body is not valid UTF-8 JSON text") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the request body nests too deeply") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None
    return doc


def parse_send_request(
    doc: Any, *, header_key: str | None, config: Config, now: float | None = None
) -> NewMessage:
    """A POST /api/v1/messages document -> NewMessage; raises ApiError naming the field at fault."""
    now = time.time() if now is None else now
    if not isinstance(doc, dict):
        raise ApiError(
            400, "invalid_request", f"the request body must be a JSON object, not {_json_type(doc)}"
        )
    if not SEND_FIELDS.issuperset(doc):  # one set operation: a batch asks this 1,000 times
        for name in doc:
            if name not in SEND_FIELDS:
                raise ApiError(
                    422,
                    "unknown_field",
                    f"{name}: unknown field (allowed: {', '.join(sorted(SEND_FIELDS))})",
                )
    for name in ("to", "body"):
        if name not in doc:
            raise ApiError(422, "missing_field", f"{name}: this field is required")
    to_raw = doc["to"]
    if not isinstance(to_raw, str):
        raise invalid("to", f"expected a phone number as a string, got {_json_type(to_raw)}")
    to = parse_number(to_raw, config.gateway.default_region, field="to")
    body = parse_body(doc["body"], max_chars=config.api.max_text_chars)
    optional = doc.get  # a field absent or JSON null: None
    send_at = optional("send_at")
    validity_s = optional("validity_s")
    priority = optional("priority")
    callback = optional("status_callback")
    metadata = optional("metadata")
    window = optional("window")
    escalation = optional("escalation")
    return sized_message(
        to,
        body,
        priority=Priority.NORMAL if priority is None else parse_priority(priority),
        send_at=None if send_at is None else parse_send_at(send_at, now=now),
        validity_s=config.dispatcher.default_validity_s if validity_s is None else parse_validity(validity_s),
        status_callback=None if callback is None else parse_callback(callback, config.webhook_policy.allow),
        metadata=None if metadata is None else parse_metadata(metadata),
        idempotency_key=merge_idempotency_keys(optional("idempotency_key"), header_key),
        # Its own send window; send_windows.apply_window adds a template's or key's (intake).
        window=None if window is None else parse_send_window(window).to_json(),
        window_source=None if window is None else "message",
        escalation=None if escalation is None else parse_escalation(escalation, config),
    )


def sized_message(to: str, body: str, **fields: Any) -> NewMessage:
    """segments.new_message, with a text too long for one concatenated SMS as 422 body_too_long."""
    try:
        return segments.new_message(to, body, **fields)
    except segments.TooManySegments as exc:
        raise ApiError(422, "body_too_long", f"body: {exc}") from None


# ---------------------------------------------------------------------- fields
def parse_number(text: str, region: str, *, field: str = "to") -> str:
    """A phone number as a person would type it -> E.164; national numbers are read in `region`."""
    candidate = text.strip()
    if not candidate:
        raise ApiError(422, "invalid_number", f"{field}: empty phone number")
    if len(candidate) > MAX_NUMBER_CHARS or not _NUMBER_CHARS.fullmatch(candidate):
        raise ApiError(
            422,
            "invalid_number",
            f"{field}: {text[:MAX_NUMBER_CHARS]!r} is not a phone number (digits, optionally a leading +)",
        )
    return _e164(candidate, region, field)


# phonenumbers takes ~0.1 ms a number: a batch to a team's list repeats the same numbers, and this
# bounded cache (a valid number's answer only; refusals are raised, never cached) saves most of it.
@functools.lru_cache(maxsize=8192)
def _e164(candidate: str, region: str, field: str) -> str:
    split = split_e164(candidate)  # "+4915112345678" is its own E.164 form: the common case
    if split is not None:
        if not _possible_length(*split):
            raise _wrong_length(candidate, region, field)
        return candidate
    number = parse_e164(candidate)  # a quarter of parse's cost for "+3530871234567"
    if number is None:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException as exc:
            raise ApiError(
                422, "invalid_number", f"{field}: {candidate!r} is not a phone number ({exc})"
            ) from None
    # (A length possible for some type is possible at all: is_possible_number would add nothing.)
    if not _possible_subscriber(number):
        raise _wrong_length(candidate, region, field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _wrong_length(candidate: str, region: str, field: str) -> ApiError:
    return ApiError(
        422,
        "invalid_number",
        f"{field}: {candidate!r} cannot be a phone number (wrong length); "
        f"use E.164 such as +4915112345678, or a national number of region {region}",
    )


def _possible_subscriber(number: phonenumbers.PhoneNumber) -> bool:
    """A length some phone could have: not "12" read as +4912 (a bare possible-length check allows it)."""
    return _possible_length(number.country_code, len(phonenumbers.national_significant_number(number)))


# The answer depends on the country code and the national number's length alone (phonenumbers
# compares that length with the region's possible lengths): a few hundred pairs in all, where
# asking phonenumbers three times was a quarter of a new number's parse.
@functools.lru_cache(maxsize=4096)
def _possible_length(country_code: int | None, digits: int) -> bool:
    # IS_POSSIBLE_LOCAL_ONLY (dialable only inside an area code) is not enough for SMS.
    sample = phonenumbers.PhoneNumber(country_code=country_code, national_number=10 ** (digits - 1))
    return any(
        phonenumbers.is_possible_number_for_type_with_reason(sample, kind)
        == phonenumbers.ValidationResult.IS_POSSIBLE
        for kind in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE,
            phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
        )
    )


def parse_body(value: Any, *, max_chars: int) -> str:
    """The text to send: a non-empty string of at most max_chars characters."""
    if not isinstance(value, str):
        raise invalid("body", f"expected a string, got {_json_type(value)}")
    if not value.strip():
        raise ApiError(422, "empty_body", "body: the text to send is empty")
    if len(value) > max_chars:
        raise ApiError(422, "body_too_long", f"body: {len(value)} characters, the limit is {max_chars}")
    return value


# The items of a batch mostly share one send_at: each parse was ~3 µs of its validation.
@functools.lru_cache(maxsize=1024)
def parse_rfc3339(value: str) -> float:
    """RFC 3339 date-time with a time zone -> Unix time; ValueError otherwise (never cached)."""
    if not _RFC3339.fullmatch(value):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time with a time zone")
    text = value[:10] + "T" + value[11:]
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{value!r} is not a valid date-time: {exc}") from None


def parse_send_at(value: Any, *, now: float) -> float:
    """When to send: RFC 3339 with a zone; the past means now; at most 30 days ahead."""
    if not isinstance(value, str):
        raise ApiError(
            422, "invalid_send_at", f"send_at: expected an RFC 3339 string, got {_json_type(value)}"
        )
    try:
        when = parse_rfc3339(value)
    except ValueError as exc:
        raise ApiError(422, "invalid_send_at", f"send_at: {exc} (for example 2030-01-31T08:00:00Z)") from None
    if when > now + MAX_SCHEDULE_AHEAD_S:
        raise ApiError(
            422,
            "invalid_send_at",
            f"send_at: {value} is more than {MAX_SCHEDULE_AHEAD_S // 86400} days ahead",
        )
    return when


def parse_send_window(value: Any, *, field: str = "window") -> Window:
    """A message's `window` -> Window; 422 invalid_window naming the sub-field at fault."""
    try:
        return parse_window(value, field=field)
    except WindowError as exc:
        raise ApiError(422, "invalid_window", exc.message) from None


def parse_validity(value: Any) -> int:
    """Seconds the message may wait to be sent (and the network may keep it)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid("validity_s", f"expected a whole number of seconds, got {_json_type(value)}")
    if not MIN_VALIDITY_S <= value <= MAX_VALIDITY_S:
        raise invalid("validity_s", f"{value} is outside {MIN_VALIDITY_S}..{MAX_VALIDITY_S} seconds")
    return value


def parse_priority(value: Any) -> Priority:
    if not isinstance(value, str) or value not in PRIORITIES:
        shown = repr(value) if isinstance(value, str) else _json_type(value)
        raise invalid("priority", f"expected one of {', '.join(PRIORITIES)}, got {shown}")
    return PRIORITIES[value]


def parse_callback(value: Any, allow: tuple[str, ...] = (), *, field: str = "status_callback") -> str:
    """A per-message status webhook: an absolute http(s) URL to a host the address policy allows."""
    if not isinstance(value, str):
        raise invalid(field, f"expected a URL string, got {_json_type(value)}")
    if len(value) > MAX_URL_CHARS or not _PRINTABLE_ASCII.fullmatch(value) or " " in value:
        raise invalid(field, "expected an http:// or https:// URL without spaces")
    try:
        parts = urllib.parse.urlsplit(value)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise invalid(field, f"{value!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise invalid(field, f"{value!r} is not an http:// or https:// URL with a host")
    why = addrpolicy.policy_for(allow).check_host(host)
    if why is not None:
        raise invalid(field, f"{host} is {why}: the gateway does not call it ([webhooks] allow admits CIDRs)")
    return value


def parse_escalation(value: Any, config: Config) -> EscalationSpec:
    """`escalation`: {"after_s", "until"?, "then": [numbers..., "mailto:..."...]}; each entry checked
    (numbers as `to` is, mailto: targets only with an [smtp] server), numbers before e-mail."""
    if not isinstance(value, dict):
        raise _bad_escalation("escalation", f"expected a JSON object, got {_json_type(value)}")
    for name in value:
        if name not in ESCALATION_FIELDS:
            raise _bad_escalation(
                f"escalation.{name}", f"unknown field (allowed: {', '.join(sorted(ESCALATION_FIELDS))})"
            )
    low = config.escalation.min_after_s
    after_s = value.get("after_s")
    if isinstance(after_s, float) and after_s.is_integer():
        after_s = int(after_s)
    if not isinstance(after_s, int) or isinstance(after_s, bool):
        raise _bad_escalation(
            "escalation.after_s", f"expected a whole number of seconds, got {_json_type(after_s)}"
        )
    if not low <= after_s <= MAX_ESCALATION_AFTER_S:
        raise _bad_escalation(
            "escalation.after_s", f"{after_s} is outside {low}..{MAX_ESCALATION_AFTER_S} seconds"
        )
    until = value.get("until", "delivered")
    if until not in ESCALATION_UNTIL:
        shown = repr(until) if isinstance(until, str) else _json_type(until)
        raise _bad_escalation(
            "escalation.until", f"expected one of {', '.join(ESCALATION_UNTIL)}, got {shown}"
        )
    then = value.get("then")
    if not isinstance(then, list) or not 1 <= len(then) <= MAX_ESCALATION_TARGETS:
        shown = f"{len(then)} entries" if isinstance(then, list) else _json_type(then)
        raise _bad_escalation(
            "escalation.then",
            f"expected a list of 1 to {MAX_ESCALATION_TARGETS} numbers or mailto: targets, got {shown}",
        )
    targets: list[str] = []
    mail_seen = False
    for i, entry in enumerate(then):
        where = f"escalation.then[{i}]"
        if not isinstance(entry, str):
            raise _bad_escalation(
                where, f"expected a phone number or mailto: target as a string, got {_json_type(entry)}"
            )
        if is_mailto(entry):
            try:
                targets.append(f"mailto:{mailto_address(entry)}")
            except ValueError as exc:
                raise _bad_escalation(where, str(exc)) from None
            if not config.smtp.enabled:
                raise _bad_escalation(
                    where, "e-mail needs an [smtp] server, and this gateway has none configured"
                )
            mail_seen = True
            continue
        if mail_seen:
            raise _bad_escalation(
                where, "numbers come before the mailto: targets (e-mail is the last resort)"
            )
        targets.append(parse_number(entry, config.gateway.default_region, field=where))
    if len(set(targets)) != len(targets):
        raise _bad_escalation("escalation.then", "lists the same target twice")
    return EscalationSpec(after_s, until, tuple(targets))


def _bad_escalation(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_escalation", f"{field}: {message}")


def parse_metadata(value: Any) -> dict[str, Any]:
    """Caller's own data, returned with the message and its webhooks: a JSON object, capped."""
    if not isinstance(value, dict):
        raise invalid("metadata", f"expected a JSON object, got {_json_type(value)}")
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise invalid("metadata", f"{size} bytes as JSON, the limit is {MAX_METADATA_BYTES}")
    return value


def parse_idempotency_header(value: str) -> str:
    """`Idempotency-Key` as an sf-string ("...", RFC 8941 3.3.3) or, leniently, a bare token."""
    if value.startswith('"'):
        out: list[str] = []
        i = 1
        while i < len(value):
            ch = value[i]
            if ch == "\\":
                if i + 1 >= len(value) or value[i + 1] not in '"\\':
                    raise invalid("Idempotency-Key", "bad escape in the quoted string")
                out.append(value[i + 1])
                i += 2
                continue
            if ch == '"':
                if i != len(value) - 1:
                    raise invalid("Idempotency-Key", "text after the closing quote")
                return check_idempotency_key("".join(out), field="Idempotency-Key")
            out.append(ch)
            i += 1
        raise invalid("Idempotency-Key", "the quoted string is not closed")
    return check_idempotency_key(value.strip(), field="Idempotency-Key")


def check_idempotency_key(value: Any, *, field: str = "idempotency_key") -> str:
    if not isinstance(value, str):
        raise invalid(field, f"expected a string, got {_json_type(value)}")
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY_CHARS or not _PRINTABLE_ASCII.fullmatch(value):
        raise invalid(field, f"expected 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters")
    return value


def merge_idempotency_keys(body_value: Any, header_key: str | None) -> str | None:
    """The request's key from the body or the header; both given must agree."""
    body_key = None if body_value is None else check_idempotency_key(body_value)
    if body_key is not None and header_key is not None and body_key != header_key:
        raise invalid("idempotency_key", "differs from the Idempotency-Key header; send one key")
    return body_key if body_key is not None else header_key


# ------------------------------------------------------------- list parameters
def parse_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE
    if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= MAX_PAGE:
        raise ApiError(
            422, "invalid_parameter", f"limit: expected a whole number from 1 to {MAX_PAGE}, got {value!r}"
        )
    return int(value)


def encode_cursor(seq: int) -> str:
    """Opaque continuation token naming the last row returned."""
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        text = ""
    prefix, _, number = text.partition(":")
    if prefix != "v1" or not re.fullmatch(r"[0-9]{1,18}", number):
        raise ApiError(
            422, "invalid_cursor", "cursor: not a cursor this API returned (pass next_cursor unchanged)"
        )
    return int(number)


def check_query(params: Iterable[str], allowed: Iterable[str]) -> None:
    """Unknown query parameters are refused: a typo must not silently widen a listing."""
    known = set(allowed)
    for name in params:
        if name not in known:
            raise ApiError(
                422,
                "unknown_parameter",
                f"{name}: unknown query parameter (allowed: {', '.join(sorted(known))})",
            )
