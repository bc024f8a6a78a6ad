"""A batch's results encoded from templates (appliance/message_json.py) are the very text that
json.dumps of each message's payload writes: on random messages, many of one shape and many of
their own, whose texts hold quotes, control characters, non-ASCII and the template's markers."""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import send_requests
from appliance.api import message_payload
from appliance.ledger import Actor, Escalation, EscalationSpec, Message, Store
from appliance.ledger.models import Event, Part
from appliance.message_json import MessageJson, dumps
from appliance.segments import new_message
from appliance.states import PartState, Priority, State
from appliance.validation import ApiError

# Texts a marker could be confused with, besides anything hypothesis makes up.
TEXTS = st.one_of(
    st.text(),
    st.sampled_from(["", '"', "\\", "\x00smsgw-field-2\x00", "\x00smsgw-field-7\x00", "é€😀", "\u2028"]),
)
TIMES = st.floats(min_value=0, max_value=4e9, allow_nan=False)
OPTIONAL_TIMES = st.none() | TIMES
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXTS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXTS, inner, max_size=3),
    max_leaves=8,
)
PARTS = st.lists(
    st.builds(
        Part,
        st.integers(1, 3),
        st.integers(1, 3),
        st.sampled_from(PartState),
        st.none() | st.integers(0, 255),
        st.none() | st.just("modem0"),
        OPTIONAL_TIMES,
        st.none() | st.integers(0, 255),
        OPTIONAL_TIMES,
    ),
    max_size=2,
).map(tuple)
EVENTS = st.lists(
    st.builds(Event, TIMES, st.sampled_from(["accepted", "window", "sent"]), st.none(), st.none(), TEXTS),
    max_size=2,
).map(tuple)
ESCALATIONS = st.none() | st.builds(
    Escalation,
    st.builds(
        EscalationSpec,
        st.integers(60, 600),
        st.sampled_from(["delivered", "replied"]),
        st.just(("+4915112345678",)),
    ),
    st.integers(0, 1),
    OPTIONAL_TIMES,
    st.none() | st.just("delivered"),
    OPTIONAL_TIMES,
)


def shaped(draw: st.DrawFn, shape: dict[str, Any]) -> Message:
    """A message of `shape` (its shared fields) with per-message fields of its own."""
    return Message(
        seq=draw(st.integers(1, 10**9)),
        id=draw(TEXTS),
        to=draw(TEXTS),
        body=draw(st.none() | TEXTS),
        created_at=draw(TIMES),
        updated_at=draw(TIMES),
        send_at=draw(OPTIONAL_TIMES),
        not_before=draw(TIMES),
        expires_at=draw(TIMES),
        status_callback=draw(st.none() | TEXTS),
        metadata=draw(st.none() | st.dictionaries(TEXTS, JSON_VALUES, max_size=3)),
        window=draw(st.none() | st.dictionaries(TEXTS, TEXTS, max_size=3)),
        concat_ref=draw(st.none() | st.integers(0, 255)),
        delay_reason=draw(st.none() | TEXTS),
        key_id=draw(st.none() | st.integers(1, 9)),
        callback_format=draw(st.sampled_from(["json", "twilio"])),
        **shape,
    )


@st.composite
def shapes(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "encoding": draw(st.sampled_from(["gsm7", "ucs2"])),
        "segments": draw(st.integers(1, 3)),
        "priority": draw(st.sampled_from(Priority)),
        "status": draw(st.sampled_from(State)),
        "attempts": draw(st.integers(0, 3)),
        "error_code": draw(st.none() | st.just("cms_500")),
        "error_message": draw(st.none() | TEXTS),
        "sent_at": draw(OPTIONAL_TIMES),
        "delivered_at": draw(OPTIONAL_TIMES),
        "report_expired": draw(st.booleans()),
        "modem": draw(st.none() | st.just("modem0")),
        "held": draw(st.booleans()),
        "ambiguous": draw(st.integers(0, 2)),
        "template_name": draw(st.none() | st.just("shift")),
        "template_version": draw(st.none() | st.integers(1, 3)),
        "parts": draw(PARTS),
        "events": draw(EVENTS),
        "escalated_from": draw(st.none() | TEXTS),
        "escalation": draw(ESCALATIONS),
        "box": draw(st.none() | st.just("box-a")),
    }


@st.composite
def batches(draw: st.DrawFn) -> list[Message]:
    kinds = draw(st.lists(shapes(), min_size=1, max_size=3))
    return [shaped(draw, draw(st.sampled_from(kinds))) for _ in range(draw(st.integers(1, 8)))]


@settings(max_examples=100, deadline=None)
@given(batches())
def test_each_message_is_what_json_dumps_writes(messages: list[Message]) -> None:
    encoder = MessageJson(message_payload)
    assert [encoder.encode(m) for m in messages] == [dumps(message_payload(m)) for m in messages]


def reference(outcomes: list[send_requests.Outcome]) -> bytes:
    """The results as json.dumps writes the whole document (what the API wrote before templates)."""
    results: list[dict[str, Any]] = []
    for outcome in outcomes:
        if isinstance(outcome, ApiError):
            results.append(
                {"status": outcome.status, "error": {"code": outcome.code, "message": outcome.message}}
            )
        else:
            results.append({"status": 202 if outcome[1] else 200, "message": message_payload(outcome[0])})
    return json.dumps(
        {"results": results}, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode()


async def test_the_results_of_an_accepted_batch_are_what_json_dumps_writes(store: Store) -> None:
    later = time.time() + 3600
    news = [
        new_message(
            f"+49151{i:08d}", f"gate {i % 7} «ü»", send_at=later, metadata={"i": i} if i % 3 else None
        )
        for i in range(300)
    ]
    accepted = await store.accept_many(news, key_id=None, queue_max=10_000, actor=Actor("t", "test"))
    outcomes: list[send_requests.Outcome] = [o for o in accepted if isinstance(o, tuple)]
    outcomes.insert(7, ApiError(429, "quota_exceeded", "wait «5» s", headers={"Retry-After": "5"}))
    first = outcomes[0]
    assert isinstance(first, tuple)
    outcomes.append((first[0], False))  # found again: 200
    assert send_requests.batch_results(outcomes, message_payload) == reference(outcomes)
