"""The Twilio-compatible subset: apps using a Twilio client switch to the box by base URL.

`POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form: To, Body, StatusCallback,
ValidityPeriod; From and the other Twilio fields are ignored) and
`GET /2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}.json`, with HTTP Basic
auth: any username (the client's Account SID), an smsgw API key as the password
(scope send; read or send for GET, which shows only the key's own messages unless it
has read_all or admin: another key's message is 404, as on the native API). The key's
quota (429, Twilio code 20429) and highest priority apply. Answers and errors are Twilio-shaped.

Status callbacks: the message keeps its callback URL with `callback_format` "twilio"
(the webhook relay POSTs Twilio's form fields instead of our JSON; see `callback_form`) and its Account SID in `metadata.twilio.account_sid`. They are
signed with `X-Twilio-Signature` keyed by `[api] callback_secret`: Twilio keys it
with the account's auth token, but our API keys are stored hashed and cannot be
used after the request; validate with `RequestValidator(callback_secret)`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from appliance import auth, segments, validation
from appliance.bodies import BadContentLength, BodyTooLarge, form_fields, read_body
from appliance.config import Config
from appliance.intake import Intake, Refusal, refusal
from appliance.ledger import ApiKey, Message, Store, StoreError
from appliance.states import State
from appliance.validation import ApiError

API_VERSION = "2010-04-01"
MAX_FORM_BYTES = 65536
MAX_VALIDITY_PERIOD_S = 36000  # Twilio's ValidityPeriod range is 1..36000 s (older docs; 14400 today)
_SID = re.compile(r"SM0*([1-9a-f][0-9a-f]{21,31})")
_STATUS = {
    State.SCHEDULED: "queued",
    State.QUEUED: "queued",
    State.SENDING: "sending",
    State.SENT: "sent",
    State.DELIVERED: "delivered",
    State.UNDELIVERED: "undelivered",
    State.FAILED: "failed",
    State.CANCELED: "canceled",
}
# Our error codes -> Twilio's (twilio.com/docs/api/errors): 30005 unknown handset, 30003 unreachable.
_ERRORS = {"cms_1": 30005, "cms_30": 30005, "cms_27": 30003}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class TwilioError(Exception):
    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(exc: TwilioError) -> JSONResponse:
    body = {
        "code": exc.code,
        "message": exc.message,
        "more_info": f"https://www.twilio.com/docs/errors/{exc.code}",
        "status": exc.status,
    }
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def rfc2822(t: float | None) -> str | None:
    """Twilio's date format: "Thu, 30 Jul 2015 20:12:31 +0000" (locale-independent)."""
    if t is None:
        return None
    g = time.gmtime(t)
    return f"{_DAYS[g.tm_wday]}, {g.tm_mday:02d} {_MONTHS[g.tm_mon - 1]} {g.tm_year} {g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d} +0000"


def message_sid(msg_id: str) -> str:
    """Our `msg_<hex>` as a Twilio-shaped `SM<32 hex>` (zero-filled, reversible); other ids unchanged."""
    prefix, _, rest = msg_id.partition("_")
    if prefix == "msg" and re.fullmatch(r"[1-9a-f][0-9a-f]{21,31}", rest):
        return "SM" + rest.zfill(32)
    return msg_id


def message_id(sid: str) -> str:
    m = _SID.fullmatch(sid)
    return f"msg_{m.group(1)}" if m else sid


def twilio_status(status: str) -> str:
    return _STATUS.get(State(status), status) if status in State._value2member_map_ else status


def error_code(status: str, code: str | None) -> int | None:
    """Twilio's numeric error code for a failed or undelivered message; None otherwise."""
    if status not in ("failed", "undelivered"):
        return None
    if code in _ERRORS:
        return _ERRORS[code or ""]
    return 30003 if status == "undelivered" else 30008


def resource(msg: Message, account_sid: str) -> dict[str, Any]:
    sid = message_sid(msg.id)
    status = msg.status.value
    code = error_code(status, msg.error_code)
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
    return {
        "sid": sid,
        "account_sid": account_sid,
        "messaging_service_sid": None,
        "to": msg.to,
        "from": None,
        "body": msg.body,
        "status": _STATUS[msg.status],
        "num_segments": str(msg.segments),
        "num_media": "0",
        "direction": "outbound-api",
        "api_version": API_VERSION,
        "price": None,
        "price_unit": None,
        "error_code": code,
        "error_message": (msg.error_message or msg.error_code) if code is not None else None,
        "date_created": rfc2822(msg.created_at),
        "date_updated": rfc2822(msg.updated_at),
        "date_sent": rfc2822(msg.sent_at),
        "uri": uri + ".json",
        "subresource_uris": {"media": uri + "/Media.json"},
    }


def signature(token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1 of the URL followed by the sorted key+value pairs."""
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def callback_form(data: dict[str, Any]) -> dict[str, str]:
    """A message.status webhook's `data` (store.status_payload) as Twilio's callback fields."""
    status = twilio_status(str(data.get("status", "")))
    meta = (data.get("metadata") or {}).get("twilio") or {}
    form = {
        "MessageSid": message_sid(str(data.get("id", ""))),
        "SmsSid": message_sid(str(data.get("id", ""))),
        "MessageStatus": status,
        "SmsStatus": status,
        "To": str(data.get("to", "")),
        "From": "",
        "AccountSid": str(meta.get("account_sid", "")),
        "ApiVersion": API_VERSION,
    }
    error = data.get("error") or {}
    code = error_code(str(data.get("status", "")), error.get("code"))
    if code is not None:
        form["ErrorCode"] = str(code)
    return form


# The intake's refusals (intake.refusal codes) as Twilio errors (twilio.com/docs/api/errors).
_REFUSALS: dict[str, tuple[int, int, str]] = {
    "opted_out": (400, 21610, "Attempt to send to unsubscribed recipient"),
    "idempotency_mismatch": (409, 20409, "This idempotency token was already used with a different request."),
    "queue_full": (503, 20503, "The gateway's queue is full; retry later."),
    "storage_full": (503, 20503, "The gateway's disk is full; retry later."),
}


def twilio_refusal(refused: Refusal) -> TwilioError:
    """An intake refusal in Twilio's shape; a 503 keeps Retry-After so clients back off."""
    headers = refused.headers or None
    if refused.code == "quota_exceeded":
        return TwilioError(429, 20429, f"Too Many Requests: {refused.message}", headers=headers)
    status, code, message = _REFUSALS[refused.code]
    if status == 503:
        headers = {"Retry-After": "30", **refused.headers}
    return TwilioError(status, code, message, headers=headers)


class TwilioEndpoint:
    def __init__(self, store: Store, config: Config, intake: Intake) -> None:
        self.store = store
        self.config = config
        self.intake = intake

    async def create(self, request: Request) -> Response:
        try:
            return await self._create(request)
        except TwilioError as exc:
            return error_response(exc)

    async def fetch(self, request: Request) -> Response:
        try:
            return await self._fetch(request)
        except TwilioError as exc:
            return error_response(exc)

    async def _fetch(self, request: Request) -> Response:
        key = await self._key(request)
        if not (auth.allows(key, "read") or auth.allows(key, "send")):
            raise TwilioError(403, 20003, "the API key lacks the send or read scope")
        msg = await self.store.get(message_id(request.path_params["sid"]))
        if msg is None or not auth.may_see(key, msg.key_id):
            raise TwilioError(404, 20404, f"The requested resource {request.url.path} was not found")
        return JSONResponse(resource(msg, request.path_params["account"]))

    async def _create(self, request: Request) -> Response:
        key = await self._key(request)
        if not auth.allows(key, "send"):
            raise TwilioError(403, 20003, f"the API key {key.name!r} lacks the send scope")
        form = await _form(request)
        account = request.path_params["account"]
        to_raw = form.get("To", "")
        if not to_raw:
            raise TwilioError(400, 21604, "A 'To' phone number is required.")
        try:
            to = validation.parse_number(to_raw, self.config.gateway.default_region, field="To")
        except ApiError as exc:
            raise TwilioError(400, 21211, f"The 'To' number {to_raw} is not a valid phone number.") from exc
        body = form.get("Body", "")
        if not body.strip():
            raise TwilioError(400, 21602, "Message body is required.")
        too_long = TwilioError(
            400,
            21617,
            f"The concatenated message body exceeds the {self.config.api.max_text_chars} character limit.",
        )
        if len(body) > self.config.api.max_text_chars:
            raise too_long
        callback = None
        if form.get("StatusCallback"):
            try:
                callback = validation.parse_callback(
                    form["StatusCallback"], self.config.webhook_policy.allow, field="StatusCallback"
                )
            except ApiError as exc:
                raise TwilioError(400, 21609, f"The StatusCallback URL is not valid: {exc.message}") from exc
        validity = self.config.dispatcher.default_validity_s
        if form.get("ValidityPeriod"):
            raw = form["ValidityPeriod"]
            if not re.fullmatch(r"[0-9]{1,6}", raw) or not 1 <= int(raw) <= MAX_VALIDITY_PERIOD_S:
                raise TwilioError(400, 21622, f"ValidityPeriod must be 1 to {MAX_VALIDITY_PERIOD_S} seconds.")
            validity = max(validation.MIN_VALIDITY_S, int(raw))
        try:
            new = segments.new_message(
                to,
                body,
                validity_s=validity,
                status_callback=callback,
                callback_format="twilio",
                metadata={"twilio": {"account_sid": account[:64]}},
                idempotency_key=_idempotency(request),
                source="twilio",
            )
        except segments.TooManySegments:
            raise too_long from None
        new = auth.capped_priority(key, new, explicit=False)  # Twilio requests carry no priority
        try:
            msg, created = await self.intake.submit(new, key=key, actor=auth.actor(key, request))
        except StoreError as exc:
            raise twilio_refusal(refusal(exc, key=key, queue_max=self.intake.queue_max)) from None
        return JSONResponse(resource(msg, account), status_code=201 if created else 200)

    async def _key(self, request: Request) -> ApiKey:
        try:
            return await auth.authenticate(request, self.store, schemes=("basic",))
        except ApiError:
            raise TwilioError(
                401,
                20003,
                "Authenticate: HTTP Basic with any username and an smsgw API key as the password",
                headers={"WWW-Authenticate": 'Basic realm="smsgw"'},
            ) from None


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded form (first value of each field), read with a size cap."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise TwilioError(400, 20001, "The body must be form-encoded (application/x-www-form-urlencoded).")
    try:
        return form_fields(await read_body(request, MAX_FORM_BYTES))
    except BodyTooLarge:
        raise TwilioError(413, 20001, f"The request body is larger than {MAX_FORM_BYTES} bytes.") from None
    except BadContentLength:
        raise TwilioError(400, 20001, "The Content-Length header is not a number.") from None
    except (UnicodeDecodeError, ValueError):
        raise TwilioError(400, 20001, "The form body is not valid UTF-8 urlencoded data.") from None


def _idempotency(request: Request) -> str | None:
    """Twilio clients may send I-Twilio-Idempotency-Token; Idempotency-Key works too."""
    value = request.headers.get("i-twilio-idempotency-token") or request.headers.get("idempotency-key")
    if value is None:
        return None
    try:
        return validation.parse_idempotency_header(value)
    except ApiError as exc:
        raise TwilioError(400, 20001, exc.message) from exc


def routes(store: Store, config: Config, intake: Intake) -> list[Route]:
    endpoint = TwilioEndpoint(store, config, intake)
    base = f"/{API_VERSION}/Accounts/{{account}}/Messages"
    return [
        Route(base + ".json", endpoint.create, methods=["POST"]),
        Route(base + "/{sid}.json", endpoint.fetch, methods=["GET"]),
    ]
