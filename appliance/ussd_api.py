"""`POST /api/v1/ussd` (admin): `{"code": "*100#"}` -> `{"response": "…"}` (DESIGN.md, round 2).

The request is checked before the modem sees it (digits, '*', '#', at most 40 characters); the
modem's and the network's faults become one clear error each, in the API's error shape:
422 invalid_field (the code), 503 modem_unavailable (no modem, port gone, modem not answering),
502 ussd_failed (the modem or the network refused), 504 ussd_timeout (no answer in time). Every
request an admin makes is in the audit trail (the code only; the answer may be personal).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from appliance import auth, validation
from appliance.bodies import read_json
from appliance.ledger import Store
from appliance.validation import ApiError
from modem.errors import AtError, AtTimeout, ModemError, TransportError
from modem.ussd import InvalidUssdCode, UssdError, UssdReply, UssdTimeout, check_code

_LOGGER = logging.getLogger(__name__)

# {"code": "<40 characters>"} with room for white space; anything larger is not a USSD request.
MAX_BODY_BYTES = 1024

SendUssd = Callable[[str], Awaitable[UssdReply]]


def routes(store: Store, send_ussd: SendUssd | None) -> list[Route]:
    """The route for api.py to mount; `send_ussd` is the ready modem's `Ussd.send` (None: no modem).

    Its errors are ApiError and BodyTooLarge: the app's exception handlers answer them (api.py)."""

    async def ussd(request: Request) -> Response:
        return await _handle(request, store, send_ussd)

    return [Route("/api/v1/ussd", ussd, methods=["POST"])]


async def _handle(request: Request, store: Store, send_ussd: SendUssd | None) -> Response:
    key = await auth.require(request, store, "admin")
    code = parse_request(await read_json(request, MAX_BODY_BYTES))
    if send_ussd is None:
        raise ApiError(503, "modem_unavailable", "no modem is ready for USSD")
    await store.audit(auth.actor(key, request), "ussd", code)
    try:
        reply = await send_ussd(code)
    except InvalidUssdCode as exc:  # pragma: no cover  (parse_request checked it already)
        raise validation.invalid("code", str(exc)) from None
    except UssdTimeout as exc:
        raise ApiError(
            504, "ussd_timeout", f"the network did not answer {code} within {exc.timeout_s:g} s"
        ) from None
    except UssdError as exc:
        raise ApiError(502, "ussd_failed", str(exc)) from None
    except AtError as exc:
        raise ApiError(502, "ussd_failed", f"the modem refused {code}: {exc.final}") from None
    except (TransportError, AtTimeout, ModemError) as exc:
        _LOGGER.info("USSD %s: %s", code, exc)
        raise ApiError(503, "modem_unavailable", f"the modem cannot send USSD now: {exc}") from None
    return JSONResponse({"response": reply.text})


def parse_request(doc: object) -> str:
    """The code of a `{"code": "*100#"}` request; 422 naming the field otherwise."""
    if not isinstance(doc, dict):
        raise ApiError(422, "invalid_field", 'the body must be a JSON object such as {"code": "*100#"}')
    extra = sorted(set(doc) - {"code"})
    if extra:
        raise validation.invalid(extra[0], "unknown field (a USSD request has only code)")
    code = doc.get("code")
    if not isinstance(code, str):
        raise validation.invalid("code", 'required, a string such as "*100#"')
    try:
        return check_code(code)
    except InvalidUssdCode as exc:
        raise validation.invalid("code", str(exc)) from None
