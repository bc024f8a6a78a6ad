"""POST /api/v1/messages/batch from its raw body to its results, committed: one function for the
two places a batch is accepted.

A large batch on a SQLite ledger runs whole in the batch worker process (batch_worker.py) over
that process's own connection to the ledger file: parsing ~1 MB of JSON, 1,000 validations, the
transaction and ~1 MB of results take ~90 ms of CPU, and the daemon's one GIL could not give
them more than one core (issue 13: 10,000 messages/s). Everything else, a small batch, a
PostgreSQL ledger (whose spool and wake-ups live in the daemon), or while no worker is up, runs
the same function in the daemon. Either way the daemon then counts, logs and wakes the
dispatcher (Intake.counted), so an item is refused or accepted alike wherever it ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from appliance import send_requests, template_api
from appliance.config import Config
from appliance.escalation import refuse_opted_out
from appliance.intake import BatchCount, refusal, refuse_without_room, windowed
from appliance.ledger import Actor, ApiKey, Message, NewMessage, Store, StoreError
from appliance.sms_templates import TemplateRecord
from appliance.validation import ApiError
from appliance.windows import Window


@dataclass(frozen=True)
class Accepted:
    """A committed batch: the response body, what the daemon counts, and whether the commit
    queued webhook deliveries (the daemon's sender is woken for them when it ran elsewhere)."""

    body: bytes
    count: BatchCount
    webhooks_queued: bool = False


class Parse(Protocol):
    def __call__(
        self, docs: Sequence[Any], *, key: ApiKey, config: Config
    ) -> Awaitable[list[NewMessage | ApiError]]: ...


async def parse_here(docs: Sequence[Any], *, key: ApiKey, config: Config) -> list[NewMessage | ApiError]:
    """send_requests.parse_items on this thread (in the worker process nothing else waits)."""
    return send_requests.parse_items(docs, key=key, config=config)


async def accept_batch(
    raw: bytes,
    *,
    store: Store,
    key: ApiKey,
    actor: Actor,
    config: Config,
    room_problem: Callable[[], str | None],
    payload: Callable[[Message], dict[str, Any]],
    parse: Parse = parse_here,
) -> Accepted:
    """Check every item of `raw` as a single POST would be, commit the good ones in one
    transaction, and encode a result per item. Raises ApiError for the batch as a whole (not a
    list, too many items) and StorageFull (nothing of it accepted) when `room_problem` says why."""
    # ~1 MB of JSON off the event loop; templates render next (a ledger read) as for a single POST.
    items = await asyncio.to_thread(send_requests.batch_items, raw)
    docs, templates = await _rendered(items, store, key, config)
    parsed = await parse(docs, key=key, config=config)
    news: list[NewMessage] = []
    windows: list[Window | None] = []
    for index, item in enumerate(parsed):
        if not isinstance(item, NewMessage):
            continue
        template = templates.get(index)
        new = template_api.with_template(item, template)
        if new.escalation is not None:
            try:
                await refuse_opted_out(store, new.escalation)
            except ApiError as exc:
                parsed[index] = exc
                continue
        parsed[index] = new
        news.append(new)
        windows.append(None if template is None else template.window)
    accepted: list[tuple[Message, bool] | StoreError] = []
    if news:
        refuse_without_room(room_problem())
        news = windowed(news, key=key, template_windows=windows)
        # On PostgreSQL the spool decides: the server, or the local spool while it is unreachable.
        accepted = await (store.spool or store).accept_many(
            news, key_id=key.id, queue_max=config.api.queue_max, quota=key.quota, actor=actor
        )
    outcomes = send_requests.batch_outcomes(
        parsed, accepted, lambda exc: refusal(exc, key=key, queue_max=config.api.queue_max).error()
    )
    # From one template per shape (message_json.py): ~10 ms for 1,000, in a thread all the same.
    body = await asyncio.to_thread(send_requests.batch_results, outcomes, payload)
    return Accepted(body, BatchCount.of(news, accepted))


async def _rendered(
    items: list[Any], store: Store, key: ApiKey, config: Config
) -> tuple[list[Any], dict[int, TemplateRecord]]:
    """A batch's items with each `template` + `vars` rendered to its `body` (a refusal in its
    place when it cannot be), and the template each such item used, by index."""
    docs: list[Any] = []
    templates: dict[int, TemplateRecord] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict) or ("template" not in item and "vars" not in item):
            docs.append(item)
            continue
        try:
            doc, template = await template_api.render_send_request(item, store, key, config)
        except ApiError as exc:
            docs.append(exc)
            continue
        docs.append(doc)
        if template is not None:
            templates[index] = template
    return docs, templates
