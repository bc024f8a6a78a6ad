"""A message request as the API reads it: alone (POST /api/v1/messages) or in a batch
(POST /api/v1/messages/batch, DESIGN.md round 2).

One code path for both, so an item of a batch is refused exactly as the same request alone
would be (status, code, message); a batch's own faults (not a list, too many items) name
`messages`. Nothing here touches the ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from appliance import auth, validation
from appliance.config import Config
from appliance.jsontypes import json_type
from appliance.ledger import ApiKey, Message, NewMessage, StoreError
from appliance.message_json import MessageJson, dumps
from appliance.validation import ApiError

MAX_BATCH = 1000  # message requests in one batch (the contract)
BATCH_FIELDS = frozenset({"messages"})

# Per item of a batch: accepted or found again (message, created), or why it was refused.
Outcome = tuple[Message, bool] | ApiError


def parse_message(doc: Any, *, header_key: str | None, key: ApiKey, config: Config) -> NewMessage:
    """One message request -> NewMessage within the key's priority; ApiError naming the field."""
    new = validation.parse_send_request(doc, header_key=header_key, config=config)
    return auth.capped_priority(key, new, explicit=isinstance(doc, dict) and "priority" in doc)


def batch_items(raw: bytes) -> list[Any]:
    """A batch body -> its message requests (not yet checked), in order; ApiError for the batch.

    ~1 MB of JSON, then 1,000 validations in `parse_items`: api.py runs both in a worker thread,
    off the event loop, and renders the items naming a `template` (a ledger read) between this and `parse_items`."""
    doc = validation.parse_json(raw)
    if not isinstance(doc, dict):
        raise ApiError(
            400, "invalid_request", f"the request body must be a JSON object, not {json_type(doc)}"
        )
    for name in doc:
        if name not in BATCH_FIELDS:
            raise ApiError(422, "unknown_field", f"{name}: unknown field (allowed: messages)")
    if "messages" not in doc:
        raise ApiError(422, "missing_field", "messages: this field is required")
    items = doc["messages"]
    if not isinstance(items, list):
        raise validation.invalid("messages", f"expected a list of message requests, got {json_type(items)}")
    if not items:
        raise validation.invalid("messages", f"the list is empty; send 1 to {MAX_BATCH} message requests")
    if len(items) > MAX_BATCH:
        raise validation.invalid(
            "messages", f"{len(items)} message requests, at most {MAX_BATCH} in one batch; split it"
        )
    return items


def parse_items(items: Sequence[Any], *, key: ApiKey, config: Config) -> list[NewMessage | ApiError]:
    """Each message request -> its NewMessage or its refusal, in order (an ApiError item stays)."""
    parsed: list[NewMessage | ApiError] = []
    for item in items:
        if isinstance(item, ApiError):  # refused before parsing (its template failed to render)
            parsed.append(item)
            continue
        try:
            parsed.append(parse_message(item, header_key=None, key=key, config=config))
        except ApiError as exc:
            parsed.append(exc)
    return parsed


def batch_outcomes(
    parsed: Sequence[NewMessage | ApiError],
    accepted: Iterable[tuple[Message, bool] | StoreError],
    refuse: Callable[[StoreError], ApiError],
) -> list[Outcome]:
    """Per item, in order: its refusal from parsing, else what the commit of the parsed ones gave
    (`accepted`, one per NewMessage of `parsed`), a store refusal worded by `refuse`."""
    commits = iter(accepted)
    outcomes: list[Outcome] = []
    for item in parsed:
        if isinstance(item, ApiError):
            outcomes.append(item)
            continue
        outcome = next(commits)
        outcomes.append(refuse(outcome) if isinstance(outcome, StoreError) else outcome)
    return outcomes


def batch_results(outcomes: Sequence[Outcome], payload: Callable[[Message], dict[str, Any]]) -> bytes:
    """`{"results": [{"status", "message" | "error"}]}` as JSON bytes (~1 MB for 1,000 items).

    `payload` is api.message_payload (passed in: api.py imports this module); the messages are
    encoded from one template per shape (message_json.py), as `json.dumps` would write them."""
    messages = MessageJson(payload)
    parts: list[str] = []
    for outcome in outcomes:
        if isinstance(outcome, ApiError):
            error = {"code": outcome.code, "message": outcome.message}
            parts.append(dumps({"status": outcome.status, "error": error}))
        else:
            msg, created = outcome
            status = '{"status":202,"message":' if created else '{"status":200,"message":'
            parts.append(status + messages.encode(msg) + "}")
    return ('{"results":[' + ",".join(parts) + "]}").encode()
