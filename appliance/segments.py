"""How a text is cut into SMS segments: one plan, made at intake and followed by the dispatcher.

The intake stores the plan's encoding and segment count with the message (and creates one
part row per segment); the dispatcher asks `plan` again with that stored encoding, so both
sides run the same function on the same inputs and cannot pick a different alphabet.
"""

from __future__ import annotations

import functools
from typing import Any

from appliance.ledger import NewMessage
from appliance.ledger.models import new_message_record
from modem.pdu import Segmentation, segment_text
from modem.pdu.udh import Encoding

MAX_SEGMENTS = 255  # the concatenation header counts parts in one octet


class TooManySegments(ValueError):
    """The text needs more segments than one concatenated SMS can have."""

    def __init__(self, count: int) -> None:
        super().__init__(f"needs {count} SMS segments, at most {MAX_SEGMENTS}")
        self.count = count


def plan(body: str, encoding: str | None = None) -> Segmentation:
    """The segments `body` is sent as: GSM-7 when it fits, else UCS-2, unless the stored
    `encoding` ("gsm7"/"ucs2", chosen at intake) is given."""
    return segment_text(body, encoding=None if encoding is None else Encoding(encoding))


def new_message(to: str, body: str, **fields: Any) -> NewMessage:
    """A `NewMessage` whose encoding and segment count come from one `plan` of its body."""
    encoding, count = _shape(body)
    if count > MAX_SEGMENTS:
        raise TooManySegments(count)
    return new_message_record(to=to, body=body, encoding=encoding, segments=count, **fields)


@functools.lru_cache(maxsize=1024)
def _shape(body: str) -> tuple[str, int]:
    """(encoding, segments) of `body`: a batch often sends one text to many (bounded: 1,024 texts
    of at most [api] max_text_chars each)."""
    segmentation = plan(body)
    return segmentation.encoding.value, len(segmentation.parts)
