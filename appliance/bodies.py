"""Request bodies read with a size cap: the one reader every route uses (JSON, forms, webhooks).

A hostile client may claim a small Content-Length and stream more, or send no length at
all: the cap is checked against the header and again against every chunk received, so no
request holds more than `limit` bytes in memory. Each door answers `BodyTooLarge` in its
own shape (the API's 413 payload_too_large, Twilio's 20001, the page's problem page).
"""

from __future__ import annotations

import re
import urllib.parse

from starlette.requests import Request

from appliance import validation
from appliance.validation import ApiError


class BodyTooLarge(Exception):
    """The body is (or says it is) larger than the route accepts."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


class BadContentLength(ValueError):
    """Content-Length is not a number."""


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing more than `limit` bytes whether or not Content-Length says so."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not re.fullmatch(r"[0-9]{1,30}", declared.strip()):
            raise BadContentLength("the Content-Length header is not a number")
        if int(declared) > limit:
            raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def form_fields(raw: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body: the first value of each field.

    UnicodeDecodeError when the body is not UTF-8 (a browser and every HTTP client send UTF-8)."""
    pairs = urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


def require_json(request: Request) -> None:
    """415 unsupported_media_type unless the body is declared JSON (application/json or +json)."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        shown = media or "none"
        raise ApiError(
            415,
            "unsupported_media_type",
            f"the body must be JSON (Content-Type: application/json), not {shown}",
        )


async def read_json(request: Request, limit: int) -> object:
    """A JSON request's document: 415 unless declared JSON, the body capped at `limit`, then parsed."""
    require_json(request)
    return validation.parse_json(await read_body(request, limit))
