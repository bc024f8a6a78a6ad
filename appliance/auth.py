"""API keys (Bearer, or HTTP Basic where a door needs it) with scopes: `send`, `read`, `read_all`, `admin` (admin implies the others).

Keys are 32 random bytes shown once and stored as SHA-256 (`Store.verify_key`).
401 when the key is missing, unknown or revoked; 403 when it lacks the scope.

Keys are tenants: `read` shows a key the messages sent with it and the replies to them,
`read_all` shows everything. A message another key sent is 404 to a key that may not
see it (a 403 would confirm that it exists); acting on one (cancel) needs it to be the
key's own, or admin. One rule for every route: `owner_filter` says whose messages a key
may see, `may_see` applies it to one message.
Checking a key never blocks the loop: one SHA-256 of at most MAX_KEY_CHARS characters and
one indexed read on the ledger's reader thread (keys are random, so no slow KDF is needed).
Headers holding non-ASCII bytes never get here: appliance/edge.py answers them with 401.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging

from starlette.requests import Request

from appliance.ledger import Actor, ApiKey, NewMessage, Store
from appliance.validation import ApiError

_LOGGER = logging.getLogger(__name__)

SCOPES = frozenset({"send", "read", "read_all", "admin"})
MAX_KEY_CHARS = 256  # ours are 47; anything far longer is not a key of ours
_CHALLENGE = 'Bearer realm="smsgw"'
_BASIC_CHALLENGE = 'Basic realm="smsgw"'


async def require(
    request: Request, store: Store, scope: str, *, schemes: tuple[str, ...] = ("bearer",)
) -> ApiKey:
    """The live key of this request if it grants `scope`; ApiError 401/403 otherwise."""
    key = await authenticate(request, store, schemes=schemes)
    if not allows(key, scope):
        raise ApiError(
            403,
            "forbidden",
            f"the API key {key.name!r} lacks the {scope!r} scope this request needs",
            headers={"WWW-Authenticate": f'{_CHALLENGE}, error="insufficient_scope", scope="{scope}"'},
        )
    return key


async def authenticate(request: Request, store: Store, *, schemes: tuple[str, ...] = ("bearer",)) -> ApiKey:
    """The live key the request carries: `Authorization: Bearer <key>`, or, where `schemes`
    has "basic", HTTP Basic with any username and the key as the password; ApiError 401 otherwise."""
    header = request.headers.get("authorization")
    challenge = _BASIC_CHALLENGE if schemes == ("basic",) else _CHALLENGE
    if header is None:
        raise ApiError(
            401,
            "unauthorized",
            "an API key is required: send 'Authorization: Bearer <key>' (the gateway's operator creates one:"
            " smsgw keys create --config /etc/smsgw/smsgw.toml --name NAME)"
            if "bearer" in schemes
            else "an API key is required: HTTP Basic with any username and the key as the password",
            headers={"WWW-Authenticate": challenge},
        )
    scheme, _, token = header.partition(" ")
    scheme, token = scheme.lower(), token.strip()
    if scheme == "basic" and "basic" in schemes:
        password = basic_password(token)
        key = await store.verify_key(password) if password and len(password) <= MAX_KEY_CHARS else None
        if key is None:
            _rejected(request)
            raise ApiError(
                401,
                "unauthorized",
                "the API key (the Basic auth password) is unknown or revoked",
                headers={"WWW-Authenticate": _BASIC_CHALLENGE},
            )
        return key
    if scheme != "bearer" or "bearer" not in schemes or not token:
        raise ApiError(
            401,
            "unauthorized",
            "the Authorization header must be 'Bearer <key>'"
            + (" or HTTP Basic with the key as the password" if "basic" in schemes else ""),
            headers={"WWW-Authenticate": challenge},
        )
    key = await store.verify_key(token) if len(token) <= MAX_KEY_CHARS else None
    if key is None:
        _rejected(request)
        raise ApiError(
            401,
            "unauthorized",
            "the API key is unknown or revoked",
            headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
        )
    return key


def basic_password(token: str) -> str | None:
    """The password of HTTP Basic credentials (base64 of `user:password`), None when malformed."""
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, sep, password = decoded.partition(":")
    return password if sep else None


def _rejected(request: Request) -> None:
    # Log the attempt (OWASP: log token-validation failures), never the token itself.
    _LOGGER.warning(
        "rejected API key from %s for %s %s", client_address(request), request.method, request.url.path
    )


def allows(key: ApiKey, scope: str) -> bool:
    """Whether the key grants the scope; admin grants everything, read_all grants read."""
    return scope in key.scopes or "admin" in key.scopes or (scope == "read" and "read_all" in key.scopes)


def sees_all(key: ApiKey) -> bool:
    """Whether the key may see every key's messages and all inbound texts."""
    return "admin" in key.scopes or "read_all" in key.scopes


def owner_filter(key: ApiKey) -> int | None:
    """The key id a listing is narrowed to, or None when the key sees everything."""
    return None if sees_all(key) else key.id


def may_see(key: ApiKey, owner: int | None) -> bool:
    """Whether the key may see a message sent with key `owner` (None: from the page or the box)."""
    return sees_all(key) or (owner is not None and owner == key.id)


def acts_on_all(key: ApiKey) -> bool:
    """Whether the key may cancel, resend or abandon any key's messages (admin only)."""
    return "admin" in key.scopes


def actor(key: ApiKey, request: Request) -> Actor:
    """The audit trail's actor for a request made with this key."""
    return Actor(key.name, client_address(request))


def client_address(request: Request) -> str:
    return request.client.host if request.client else "?"


def capped_priority(key: ApiKey, new: NewMessage, *, explicit: bool) -> NewMessage:
    """The request within the key's highest priority: a default above it is lowered to it,
    an explicit one above it is refused (403 priority_not_allowed)."""
    top = key.max_priority
    if top is None or new.priority >= top:
        return new
    if explicit:
        raise ApiError(
            403,
            "priority_not_allowed",
            f"priority: the API key {key.name!r} may send at most {top.name.lower()} priority, "
            f"not {new.priority.name.lower()}",
        )
    return dataclasses.replace(new, priority=top)
