"""The API's message objects as JSON text for a batch's 1,000 results, from one template per shape.

`json.dumps(message_payload(msg))` costs ~40 µs a message (a 35-key dict, its parts and events,
then the encoder): 40 ms of a 1,000-item batch (issue 13 item 5). The messages of a batch differ
in a few fields (id, number, text, times) and share the rest (status, parts, the `accepted`
event), so the rest is encoded once: `message_payload` of the first message of each shape, with
a marker in place of each per-message field, split at the markers. A message is then its
template with those fields encoded in between, the very text `json.dumps` writes for it
(tests/appliance/test_message_json.py compares the two on random messages).
"""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Callable
from typing import Any

from appliance.ledger import Message, rfc3339

# json.dumps(..., ensure_ascii=False, allow_nan=False, separators=(",", ":")), as the API writes.
dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_string: Callable[[str], str] = json.encoder.encode_basestring

# The per-message fields, in the payload's order: each a payload key of the field's name (the
# four times as rfc3339 text; `MessageJson.encode` writes them in this order).
_VARYING = (
    "id",
    "to",
    "body",
    "created_at",
    "updated_at",
    "metadata",
    "send_at",
    "expires_at",
    "status_callback",
    "window",
)
# Message fields that the payload does not show (the sequence, the modem's bookkeeping): they
# would give each message a shape of its own. Every other field is part of the shape.
_UNSHOWN = frozenset({"seq", "not_before", "concat_ref", "delay_reason", "key_id", "callback_format"})
_shape = operator.attrgetter(
    *(f.name for f in dataclasses.fields(Message) if f.name not in _UNSHOWN and f.name not in _VARYING)
)
_varying = operator.attrgetter(*_VARYING)
_MARK = "\x00smsgw-field-{}\x00"  # a text a shape field holds twice makes no template (`_template`)


def _value(value: Any) -> str:
    """A field's JSON text, as `dumps` writes it inside the payload."""
    if value is None:
        return "null"
    return _string(value) if type(value) is str else dumps(value)


class MessageJson:
    """`dumps(payload(msg))` for the messages of one batch (holds templates: one per batch)."""

    def __init__(self, payload: Callable[[Message], dict[str, Any]]) -> None:
        self._payload = payload
        self._templates: dict[tuple[Any, ...], list[str] | None] = {}
        self._times: dict[float, str] = {}

    def encode(self, msg: Message) -> str:
        shape = _shape(msg)
        try:
            template = self._templates[shape]
        except KeyError:
            template = self._templates[shape] = self._template(msg)
        except TypeError:  # an unhashable field (a list where a tuple belongs): no template
            return dumps(self._payload(msg))
        if template is None:
            return dumps(self._payload(msg))
        # Unrolled in _VARYING's order: a loop over the ten fields cost as much again.
        id_, to, body, created, updated, metadata, send_at, expires, callback, window = _varying(msg)
        t, time = template, self._time
        return "".join(
            (
                t[0], _value(id_), t[1], _value(to), t[2], _value(body), t[3], time(created),
                t[4], time(updated), t[5], _value(metadata), t[6], time(send_at), t[7],
                time(expires), t[8], _value(callback), t[9], _value(window), t[10],
            )
        )  # fmt: skip

    def _time(self, t: float | None) -> str:
        if t is None:
            return "null"
        text = self._times.get(t)
        if text is None:
            text = self._times[t] = _string(rfc3339(t) or "")
        return text

    def _template(self, msg: Message) -> list[str] | None:
        """The payload's text split where the per-message fields go; None when it cannot be
        (the payload lacks one of them): then messages of this shape are encoded whole."""
        doc = self._payload(msg)
        marks = [_MARK.format(i) for i in range(len(_VARYING))]
        for name, mark in zip(_VARYING, marks, strict=True):
            if name not in doc:
                return None
            doc[name] = mark
        text = dumps(doc)
        pieces: list[str] = []
        for mark in map(_string, marks):
            if text.count(mark) != 1:  # in order, once each: else a piece would end elsewhere
                return None
            head, _mark, text = text.partition(mark)
            pieces.append(head)
        pieces.append(text)
        return pieces
