"""Reply threading: which sent message an inbound text answers, the replies to a message, and the
conversation with one number (both directions, by time).

A text answers the latest message the gateway *sent* to its sender within the reply window
(`[inbound] reply_window_s`): `sent_at` is set once the network accepted every part (a phone shows
a concatenated text only whole), so a message still queued, or handed over only in part, is one the
phone has not seen; a message the network reported `undelivered` never reached it either. The link
is computed once, when the text is committed (one read on `messages_to_sent`), and stored in
`inbound.in_reply_to`. Retention that masks a number unlinks its texts (retention.py): a masked
number is shared by every number of its country, so it tells nothing about whose reply a text was.
"""

from __future__ import annotations

import aiosqlite

from appliance.ledger.connection import Connection
from appliance.ledger.dialect import fetch_all, fetch_one, page_query
from appliance.ledger.models import MASK, Inbound, Message, inbound_row, whole_message
from appliance.ledger.timeline import WHOLE_MESSAGE

# The latest message sent to a number in [received - window, received]; the index
# messages_to_sent(to_number, sent_at) answers it from a few entries, newest first.
_LATEST_SENT = (
    "SELECT id, key_id FROM messages WHERE to_number = ? AND sent_at IS NOT NULL AND sent_at <= ? AND sent_at >= ? "
    "AND status != 'undelivered' ORDER BY sent_at DESC LIMIT 1"
)

# An inbound text threaded to a message of this key (the `read` scope: its own messages' replies);
# the key is stored beside in_reply_to (a message never changes key), so this is an index range.
THREADED_TO_KEY = "reply_key_id = ?"


async def reply_target(
    db: aiosqlite.Connection, sender: str, received_at: float, window_s: float
) -> tuple[str | None, int | None]:
    """(id, key id) of the message a text from `sender` received at `received_at` answers, or Nones."""
    if sender.endswith(MASK):
        return None, None
    row = await fetch_one(db, _LATEST_SENT, (sender, received_at, received_at - window_s))
    return (None, None) if row is None else (str(row["id"]), row["key_id"])


class Threads(Connection):
    """Replies to a message; the conversation with one number."""

    async def list_replies(
        self, message_id: str, *, limit: int = 50, before_seq: int | None = None
    ) -> list[Inbound]:
        """Inbound texts whose `in_reply_to` is this message, newest first."""
        sql, args = page_query("inbound", [("in_reply_to = ?", message_id), ("seq < ?", before_seq)], limit)
        return [inbound_row(r) for r in await fetch_all(self.rdb, sql, args)]

    async def conversation(self, number: str, *, limit: int = 100) -> tuple[list[Message], list[Inbound]]:
        """The newest `limit` messages to and texts from one number (each newest first)."""
        out_sql, out_args = page_query("messages", [("to_number = ?", number)], limit, columns=WHOLE_MESSAGE)
        in_sql, in_args = page_query("inbound", [("from_number = ?", number)], limit)
        outbound = [whole_message(r) for r in await fetch_all(self.rdb, out_sql, out_args)]
        inbound = [inbound_row(r) for r in await fetch_all(self.rdb, in_sql, in_args)]
        return outbound, inbound
