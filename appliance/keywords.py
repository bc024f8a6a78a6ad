"""Opt-out and opt-in keywords (STOP / START): the one matcher the ledger, the config and tests use.

A text is a keyword when the whole message is one, as people type it on a phone: any
case ("Stop", "sToP"), surrounding or inner spaces and punctuation ("STOP.", " stop ",
"Stop!!", "S.T.O.P"), full-width or compatibility forms (NFKC). "stop it" is not
one (CTIA: only the bare keyword opts out). Both sides are folded the same way, so a
configured `stop_keywords = ["stop"]` matches "STOP" and `["Stop"]` matches "stop".
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Literal

Keyword = Literal["stop", "start"]
MAX_KEYWORD_CHARS = 32  # a text longer than this is a sentence, not a keyword: folded never


def fold(text: str) -> str:
    """The comparable form: NFKC, case-folded, without whitespace, punctuation or control characters."""
    normal = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in normal if unicodedata.category(ch)[0] not in "ZPC")


def keyword_of(text: str, stop: Iterable[str], start: Iterable[str]) -> Keyword | None:
    """'stop' or 'start' when the whole text is one configured keyword, else None (stop wins a tie)."""
    if len(text) > 4 * MAX_KEYWORD_CHARS:  # spaces and dots around a keyword, never a paragraph
        return None
    word = fold(text)
    if not word:
        return None
    if word in {fold(k) for k in stop}:
        return "stop"
    if word in {fold(k) for k in start}:
        return "start"
    return None


def check_keywords(words: Iterable[str], key: str) -> tuple[str, ...]:
    """Configured keywords, folded; ValueError naming `key[i]` for one that folds to nothing or is long."""
    out: list[str] = []
    for i, word in enumerate(words):
        folded = fold(word)
        if not folded:
            raise ValueError(f"{key}[{i}]: {word!r} has no letters or digits, so no text can match it")
        if len(folded) > MAX_KEYWORD_CHARS:
            raise ValueError(f"{key}[{i}]: {word!r} is longer than {MAX_KEYWORD_CHARS} characters")
        if folded not in out:
            out.append(folded)
    return tuple(out)
