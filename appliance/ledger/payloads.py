"""JSON shapes of ledger records: webhook `data` and the API's objects (one definition for both)."""

from __future__ import annotations

import functools
import time
from typing import Any

from appliance.ledger.models import Escalation, Inbound, Message, Quarantined


@functools.lru_cache(maxsize=1024)  # a batch's 1,000 messages share their times: one strftime
def rfc3339(t: float | None) -> str | None:
    """Unix time as RFC 3339 UTC with milliseconds."""
    if t is None:
        return None
    g = time.gmtime(t)
    # Four-digit year always: strftime's %Y writes year 566 as "566", which is not RFC 3339.
    return (
        f"{g.tm_year:04d}-{g.tm_mon:02d}-{g.tm_mday:02d}T{g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d}"
        f".{int((t % 1) * 1000):03d}Z"
    )


def status_payload(msg: Message) -> dict[str, Any]:
    """The `data` of a message.status webhook."""
    return {
        "id": msg.id,
        "to": msg.to,
        "status": msg.status.value,
        "segments": msg.segments,
        "attempts": msg.attempts,
        "error": {"code": msg.error_code, "message": msg.error_message} if msg.error_code else None,
        "updated_at": rfc3339(msg.updated_at),
        "sent_at": rfc3339(msg.sent_at),
        "delivered_at": rfc3339(msg.delivered_at),
        "metadata": msg.metadata,
    }


def escalation_payload(chain: Escalation | None) -> dict[str, Any] | None:
    """A message's `escalation` in the API: the request's fields, then its progress."""
    if chain is None:
        return None
    return {
        **chain.spec.as_dict(),
        "step": chain.step,  # entries of `then` reached so far
        "next_at": rfc3339(chain.next_at),
        "done": chain.next_at is None,
        "outcome": chain.outcome,  # why it ended: delivered, replied, canceled, emailed, exhausted, no_text
        "ended_at": rfc3339(chain.ended_at),
    }


def quarantine_payload(item: Quarantined) -> dict[str, Any]:
    """The API's quarantine item."""
    return {
        "id": item.id,
        "at": rfc3339(item.at),
        "port": item.port,
        "memory": item.memory,
        "index": item.index,
        "pdu": item.pdu,
        "reason": item.reason,
    }


def inbound_payload(inbound: Inbound) -> dict[str, Any]:
    """The `data` of a message.received webhook, and the API's inbound object."""
    return {
        "id": inbound.id,
        "from": inbound.from_number,
        "body": inbound.body,
        "encoding": inbound.encoding,
        "parts": inbound.parts,
        "parts_expected": inbound.parts_expected,
        "complete": inbound.complete,
        "keyword": inbound.keyword,
        "sent_at": rfc3339(inbound.sent_at),
        "received_at": rfc3339(inbound.received_at),
        "in_reply_to": inbound.in_reply_to,
    }
