"""Bearer API keys with scopes: `send`, `read`, `admin` (admin implies the others).

Keys are 32 random bytes shown once and stored as SHA-256 (`Store.verify_key`).
401 when the key is missing, unknown or revoked; 403 when it lacks the scope.
Checking a key never blocks the loop: one SHA-256 of at most MAX_KEY_CHARS characters and
one indexed read on the ledger's reader thread (keys are random, so no slow KDF is needed).
Headers holding non-ASCII bytes never get here: appliance/edge.py answers them with 401.
"""

from __future__ import annotations

import logging

from starlette.requests import Request

from appliance.store import ApiKey, Store
from appliance.validation import ApiError

_LOGGER = logging.getLogger(__name__)

SCOPES = frozenset({"send", "read", "admin"})
MAX_KEY_CHARS = 256  # ours are 47; anything far longer is not a key of ours
_CHALLENGE = 'Bearer realm="smsgw"'


async def require(request: Request, store: Store, scope: str) -> ApiKey:
    """The live key of this request if it grants `scope`; ApiError 401/403 otherwise."""
    header = request.headers.get("authorization")
    if header is None:
        raise ApiError(
            401,
            "unauthorized",
            "an API key is required: send 'Authorization: Bearer <key>' (create one with smsgw keys create)",
            headers={"WWW-Authenticate": _CHALLENGE},
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "unauthorized",
            "the Authorization header must be 'Bearer <key>'",
            headers={"WWW-Authenticate": _CHALLENGE},
        )
    key = await store.verify_key(token) if len(token) <= MAX_KEY_CHARS else None
    if key is None:
        # Log the attempt (OWASP: log token-validation failures), never the token itself.
        client = request.client.host if request.client else "?"
        _LOGGER.warning("rejected API key from %s for %s %s", client, request.method, request.url.path)
        raise ApiError(
            401,
            "unauthorized",
            "the API key is unknown or revoked",
            headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
        )
    if not allows(key, scope):
        raise ApiError(
            403,
            "forbidden",
            f"the API key {key.name!r} lacks the {scope!r} scope this request needs",
            headers={"WWW-Authenticate": f'{_CHALLENGE}, error="insufficient_scope", scope="{scope}"'},
        )
    return key


def allows(key: ApiKey, scope: str) -> bool:
    """Whether the key grants the scope; admin grants everything."""
    return scope in key.scopes or "admin" in key.scopes
