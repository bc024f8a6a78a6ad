"""The sans-I/O AT parser and final-code classifier, on real bytes from modem traces."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modem.at import AtParser, Line, Prompt, classify_final, to_error
from modem.errors import AtError, CmeError, CmsError, Retry


def _events(chunks: list[bytes], *, expect_prompt: bool = False) -> list[Line | Prompt]:
    parser = AtParser()
    parser.expect_prompt = expect_prompt
    out: list[Line | Prompt] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


@pytest.mark.parametrize(
    ("chunks", "lines"),
    [
        # Telit, gammu #355: echo, then CRLF-framed answer.
        ([b"AT+CSQ\r\r\n+CSQ: 9,0\r\n\r\nOK\r\n"], ["AT+CSQ", "+CSQ: 9,0", "OK"]),
        # Huawei E1752, gammu #138: echo with CR only.
        ([b"AT\r\r\nOK\r\n"], ["AT", "OK"]),
        # The same bytes split at every position still give the same lines.
        ([b"AT+CS", b"Q\r\r", b"\n+CSQ: 9", b",0\r\n\r", b"\nOK\r\n"], ["AT+CSQ", "+CSQ: 9,0", "OK"]),
        # Huawei URC framed CR CR LF.
        ([b"\r\n^RSSI:12\r\r\n"], ["^RSSI:12"]),
        # Wavecom leading space.
        ([b"\r\n WAVECOM MODEM\r\n\r\nOK\r\n"], ["WAVECOM MODEM", "OK"]),
        # Gammu: "AT with bad end of lines".
        ([b"OK\n"], ["OK"]),
    ],
)
def test_lines_from_real_traces(chunks: list[bytes], lines: list[str]) -> None:
    assert [e.text for e in _events(chunks) if isinstance(e, Line)] == lines


def test_prompt_without_newline_is_seen_when_expected() -> None:
    # 0D 0A 3E 20 and then nothing (gammu #438).
    assert _events([b"AT+CMGS=23\r\r\n> "], expect_prompt=True) == [Line("AT+CMGS=23"), Prompt()]


def test_prompt_split_across_reads() -> None:
    events = _events([b"\r\n", b">", b" "], expect_prompt=True)
    assert Prompt() in events


def test_prompt_is_not_invented_when_not_expected() -> None:
    assert _events([b"\r\n> "]) == []


def test_urc_before_prompt_is_a_line_and_prompt_still_comes() -> None:
    # ZTE: +ZDONR between AT+CMGS and the prompt (python-gsmmodem test_modem.py).
    events = _events([b'\r\n+ZDONR: "METEOR",272,3,"CS_ONLY","ROAM_OFF"\r\n\r\n> '], expect_prompt=True)
    assert events[0] == Line('+ZDONR: "METEOR",272,3,"CS_ONLY","ROAM_OFF"')
    assert events[-1] == Prompt()


@pytest.mark.parametrize(
    ("line", "kind", "code", "retry"),
    [
        ("+CMS ERROR: 38", "CMS", 38, Retry.LATER),
        ("+CMS ERROR: 1", "CMS", 1, Retry.NEVER),
        ("+CMS ERROR: 331", "CMS", 331, Retry.LATER),
        ("+CMS ERROR: 304", "CMS", 304, Retry.FIX),
        ("+CME ERROR: 14", "CME", 14, Retry.NOW),
        ("+CME ERROR: 10", "CME", 10, Retry.RESET),
        ("+CME ERROR: SIM not inserted", "CME", 10, Retry.RESET),  # verbose CMEE=2 (A7670E)
        ("+CMS ERROR:", "CMS", None, Retry.LATER),  # SIM7000G prints no code
        ("+CMGS ERROR: 500", "CMS", 500, Retry.LATER),  # Fibocom G510
    ],
)
def test_error_finals_are_typed_and_classified(line: str, kind: str, code: int | None, retry: Retry) -> None:
    final = classify_final(line)
    assert final is not None
    assert not final.ok
    err = to_error("AT+CMGS=23", final, [])
    assert isinstance(err, CmsError if kind == "CMS" else CmeError)
    assert err.code == code
    assert err.retry is retry
    assert err.transient is retry.transient


@pytest.mark.parametrize("line", ["ERROR", "COMMAND NOT SUPPORT"])
def test_plain_errors(line: str) -> None:
    final = classify_final(line)
    assert final is not None
    err = to_error("AT+CLAC", final, [])
    assert type(err) is AtError
    assert err.retry is Retry.LATER


@pytest.mark.parametrize("line", ["+CSQ: 9,0", "OKAY", '+CMTI: "SM",3', "0791...", "> "])
def test_information_lines_are_not_final(line: str) -> None:
    assert classify_final(line) is None


def test_every_code_of_the_reference_table_is_classified() -> None:
    """Each +CMS/+CME code in modem-traces/error-codes.tsv maps to its documented retry class."""
    table = Path(__file__).parent / "data" / "error-codes.tsv"
    expected = {
        "NOW": Retry.NOW,
        "LATER": Retry.LATER,
        "FIX": Retry.FIX,
        "NEVER": Retry.NEVER,
        "RESET": Retry.RESET,
    }
    checked = 0
    for row in table.read_text(encoding="utf-8").splitlines():
        if row.startswith(("#", "kind")) or not row.strip():
            continue
        kind, code, _meaning, _gammu, retry, *_ = row.split("\t")
        lo, _, hi = code.partition("-")
        for c in range(int(lo), int(hi or lo) + 1):
            final = classify_final(f"+{kind} ERROR: {c}")
            assert final is not None
            assert to_error("AT", final, []).retry is expected[retry], (kind, c)
            checked += 1
    assert checked > 100


@settings(max_examples=400)
@given(st.lists(st.binary(max_size=64), max_size=20), st.booleans())
def test_parser_survives_any_bytes(chunks: list[bytes], expect_prompt: bool) -> None:
    """Garbage from the line never raises, and every line it yields is clean text."""
    for event in _events(chunks, expect_prompt=expect_prompt):
        if isinstance(event, Line):
            assert event.text
            assert "\r" not in event.text
            assert "\n" not in event.text


@given(
    st.lists(
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1), max_size=10
    ),
    st.data(),
)
def test_lines_survive_any_chunking(lines: list[str], data: st.DataObject) -> None:
    payload = b"".join(b"\r\n" + ln.encode() + b"\r\n" for ln in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=8)))
    chunks = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    got = [e.text for e in _events(chunks) if isinstance(e, Line)]
    assert got == [ln.strip() for ln in lines if ln.strip()]
