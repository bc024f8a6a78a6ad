"""new_message_record (appliance/ledger/models.py) makes the very NewMessage its dataclass
__init__ makes, from any set of fields, and refuses a wrong set as __init__ does."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.ledger import EscalationSpec, NewMessage
from appliance.ledger.models import new_message_record
from appliance.states import Priority

OPTIONAL_TEXT = st.none() | st.text(max_size=8)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "priority": st.sampled_from(Priority),
    "send_at": st.none() | st.floats(allow_nan=False),
    "validity_s": st.integers(60, 604800),
    "status_callback": OPTIONAL_TEXT,
    "metadata": st.none() | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    "idempotency_key": OPTIONAL_TEXT,
    "source": st.sampled_from(["api", "twilio", "page"]),
    "callback_format": st.sampled_from(["json", "twilio"]),
    "window": st.none() | st.just({"days": "mon-fri", "start": "08:00", "end": "20:00", "tz": "UTC"}),
    "window_source": st.none() | st.sampled_from(["message", "template", "key"]),
    "release_at": st.none() | st.floats(allow_nan=False),
    "window_note": OPTIONAL_TEXT,
    "template_name": OPTIONAL_TEXT,
    "template_version": st.none() | st.integers(1, 9),
    "escalation": st.none() | st.just(EscalationSpec(300, "delivered", ("+4915100000001",))),
    "escalation_of": st.none() | st.just(("msg_1", 1)),
    "id": OPTIONAL_TEXT,
}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.sets(st.sampled_from(sorted(FIELDS))))
    values: dict[str, Any] = {"to": draw(st.text(max_size=8)), "body": draw(st.text(max_size=8))}
    values |= {"encoding": "gsm7", "segments": draw(st.integers(1, 10))}
    return values | {name: draw(FIELDS[name]) for name in chosen}


@settings(max_examples=300, deadline=None)
@given(requests())
def test_it_makes_what_the_dataclass_makes(values: dict[str, Any]) -> None:
    made, expected = new_message_record(**values), NewMessage(**values)
    assert type(made) is NewMessage
    assert made.__dict__ == expected.__dict__
    assert made == expected


def test_the_strategies_cover_every_field() -> None:
    assert set(FIELDS) | {"to", "body", "encoding", "segments"} == set(NewMessage.__dataclass_fields__)


@pytest.mark.parametrize(
    "values",
    [
        {"to": "+49", "body": "x", "encoding": "gsm7"},  # segments missing
        {"to": "+49", "body": "x", "encoding": "gsm7", "segments": 1, "colour": "red"},
    ],
)
def test_a_wrong_set_of_fields_is_refused_as_the_dataclass_refuses_it(values: dict[str, Any]) -> None:
    with pytest.raises(TypeError) as made:
        new_message_record(**values)
    with pytest.raises(TypeError) as expected:
        NewMessage(**values)
    assert str(made.value) == str(expected.value)
