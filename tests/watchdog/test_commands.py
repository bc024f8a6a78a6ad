"""On-call commands as tables: who may command, the PIN and its allowance, what is kept of the text."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from watchdog import audit
from watchdog.alert import StateFile
from watchdog.audit import CommandFact, CommandLog, read_commands
from watchdog.commands import load_key, pin_matches, redact, seal, valid_pin
from watchdog.keyfile import DamagedKey
from watchdog.replies import GUESSES_PER_HOUR, LedgerInbox, decide, oncall_set, sim_reply

NOW = 1_000_000.0
PIN = "582139"
ONCALL = "+4915112345678"


KEY = bytes(32)


def decision(sender: str, text: str, *, failures: int = 0, pin: str = PIN) -> tuple[str, bool, str] | None:
    reply = sim_reply(KEY, pin, sender, text, NOW)
    d = decide(reply, oncall=oncall_set((ONCALL,), "DE"), region="DE", pin=pin, failures=failures)
    return None if d is None else (d.verb, d.accepted, d.reason)


@pytest.mark.parametrize(
    ("sender", "text", "expected"),
    [
        (ONCALL, f"STATUS {PIN}", ("STATUS", True, "")),
        (ONCALL, f" ack {PIN} ", ("ACK", True, "")),
        ("015112345678", f"RESTART {PIN}", ("RESTART", True, "")),  # the national form, read in DE
        ("004915112345678", f"RESTART {PIN}", ("RESTART", True, "")),
        ("+15112345678", f"RESTART {PIN}", ("RESTART", False, "not_oncall")),  # same last 10 digits
        ("+4815112345678", f"RESTART {PIN}", ("RESTART", False, "not_oncall")),
        ("+49151123456789", f"RESTART {PIN}", ("RESTART", False, "not_oncall")),  # on-call is a suffix
        ("Megafon", f"STATUS {PIN}", ("STATUS", False, "not_oncall")),
        ("+4917699999999", f"STATUS {PIN}", ("STATUS", False, "not_oncall")),
        (ONCALL, "STATUS 000000", ("STATUS", False, "wrong_pin")),
        (ONCALL, f"STATUS {PIN}0", ("STATUS", False, "wrong_pin")),
        (ONCALL, "STATUS", ("STATUS", False, "wrong_pin")),
        (ONCALL, f"STATUS {PIN} now", ("STATUS", False, "wrong_pin")),
        (ONCALL, f"REBOOT {PIN}", None),  # not a command: not the watchdog's business
        (ONCALL, "hello?", None),
    ],
)
def test_who_may_command(sender: str, text: str, expected: tuple[str, bool, str] | None) -> None:
    assert decision(sender, text) == expected


def test_two_commands_in_one_second_differing_only_in_the_pin_are_two() -> None:
    wrong = sim_reply(KEY, PIN, ONCALL, "STATUS 000000", NOW)
    right = sim_reply(KEY, PIN, ONCALL, f"status {PIN}", NOW)
    assert wrong.text == right.text == "STATUS ******"
    assert wrong.key != right.key
    assert (wrong.pin_ok, right.pin_ok) == (False, True)
    foreign = sim_reply(KEY, PIN, "+15112345678", f"status {PIN}", NOW)
    assert foreign.key != right.key  # same last digits, same second: still another SMS


def test_the_allowance_of_wrong_pins_then_even_the_right_one_is_refused() -> None:
    assert decision(ONCALL, f"STATUS {PIN}", failures=GUESSES_PER_HOUR - 1) == ("STATUS", True, "")
    assert decision(ONCALL, f"STATUS {PIN}", failures=GUESSES_PER_HOUR) == ("STATUS", False, "locked")


@pytest.mark.parametrize("pin", ["", "4711", "12345", "12345a", "١٢٣٤٥٦", "1" * 33])
def test_a_short_or_odd_pin_turns_commands_off(pin: str) -> None:
    assert not valid_pin(pin)
    assert decision(ONCALL, f"STATUS {pin}", pin=pin) == ("STATUS", False, "no_pin")


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        (f"RESTART {PIN}", "RESTART ******"),
        (f"  restart   {PIN}", "RESTART ******"),
        (f"Restart:{PIN}", "RESTART ******"),
        (f"ACK{PIN}", "ACK ******"),
        (f"status {PIN} please", "STATUS ******"),
        ("ACK", "ACK"),  # nothing secret to hide
        ("Acknowledged, thanks", "Acknowledged, thanks"),
        ("Statusbericht 7", "Statusbericht 7"),
        (f"my pin is {PIN}", f"my pin is {PIN}"),  # not a command: the daemon keeps texts as received
    ],
)
def test_what_is_stored_of_a_text(text: str, stored: str) -> None:
    assert redact(text) == stored


def test_the_stored_digest_proves_the_pin_only_with_the_key(tmp_path: Path) -> None:
    key = load_key(tmp_path)
    assert load_key(tmp_path) == key  # made once, then read
    assert (tmp_path / "command.key").stat().st_mode & 0o077 == 0
    body, digest = seal(key, f"RESTART {PIN}")
    assert body == "RESTART ******"
    assert PIN not in (digest or "")
    assert pin_matches(key, PIN, digest)
    assert not pin_matches(key, "582138", digest)
    assert not pin_matches(load_key(tmp_path / "other"), PIN, digest)
    assert seal(key, "hello") == ("hello", None)
    assert seal(key, f"RESTART {PIN} now")[1] is None  # not a command's shape: never a match
    (tmp_path / "command.key").write_text("damaged")
    with pytest.raises(DamagedKey, match=r"command\.key"):  # stored digests need the old key: no new one
        load_key(tmp_path)


def test_a_damaged_command_key_leaves_the_watchdog_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Commands from the SIM still work (checked with a key of this run); the file is left as it is."""
    (tmp_path / "command.key").write_text("")
    inbox = LedgerInbox(str(tmp_path / "ledger.sqlite3"), PIN, NOW)
    assert inbox.sim_reply(ONCALL, f"STATUS {PIN}", NOW).pin_ok
    assert not inbox.sim_reply(ONCALL, "STATUS 000000", NOW).pin_ok
    assert [r.levelname for r in caplog.records if "command.key" in r.getMessage()] == ["ERROR"]
    assert (tmp_path / "command.key").read_text() == ""


def test_failures_survive_a_restart_and_age_out_after_an_hour(tmp_path: Path) -> None:
    path = tmp_path / "watchdog.sqlite3"
    state = StateFile(path)
    log = CommandLog(state.db)
    for i in range(GUESSES_PER_HOUR):
        assert log.add_failure(ONCALL, NOW + i) == i + 1
    log.record(CommandFact(NOW, ONCALL, "STATUS", "refused", "wrong_pin", "ledger"))
    state.close()
    state = StateFile(path)
    log = CommandLog(state.db)
    assert log.failures(ONCALL, NOW + 60) == GUESSES_PER_HOUR
    assert log.failures("+4915198765432", NOW + 60) == 0
    assert log.failures(ONCALL, NOW + 3600 + GUESSES_PER_HOUR) == 0
    log.mark_seen("k", NOW)
    log.purge(NOW + 8 * 86400)
    assert not log.seen("k")  # a dedupe key is needed for days, not forever
    assert [(f["verb"], f["outcome"], f["detail"]) for f in read_commands(path)] == [
        ("STATUS", "refused", "wrong_pin")
    ]
    log.purge(NOW + 91 * 86400)
    assert read_commands(path) == []
    state.close()


def test_a_flood_of_commands_keeps_the_state_file_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "AUDIT_MAX_ROWS", 10)
    monkeypatch.setattr(audit, "SEEN_MAX_ROWS", 10)
    state = StateFile(tmp_path / "watchdog.sqlite3")
    log = CommandLog(state.db)
    for i in range(25):
        log.mark_seen(f"k{i}", NOW)
        log.record(CommandFact(NOW + i, "+15112345678", "RESTART", "refused", "not_oncall", "ledger"))
    log.purge(NOW + 30)
    assert len(read_commands(tmp_path / "watchdog.sqlite3", limit=100)) == 10
    assert [log.seen(f"k{i}") for i in (14, 15, 24)] == [False, True, True]  # the newest kept
    state.close()


def test_the_old_replies_table_with_whole_texts_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "watchdog.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE replies (key TEXT PRIMARY KEY, at REAL, sender TEXT, text TEXT, outcome TEXT)")
    db.execute("INSERT INTO replies VALUES ('k', 1, ?, ?, 'restart')", (ONCALL, f"RESTART {PIN}"))
    db.commit()
    db.close()
    state = StateFile(path)
    CommandLog(state.db)
    state.close()
    for f in tmp_path.iterdir():
        assert PIN.encode() not in f.read_bytes(), f


def test_commands_after_reads_oldest_first_from_a_mark_and_restarts_on_a_new_state_file(
    tmp_path: Path,
) -> None:
    """What the daemon copies into its audit trail: facts past the last copied id, and all of a
    state file made anew (its ids behind the mark), so none are skipped."""
    path = tmp_path / "watchdog.sqlite3"
    assert audit.commands_after(path, 0) == []  # no watchdog yet
    state = StateFile(path)
    log = CommandLog(state.db)
    for verb in ("STATUS", "ACK", "RESTART"):
        log.record(CommandFact(NOW, ONCALL, verb, "accepted", "", "sim"))
    state.db.commit()
    assert [f["verb"] for f in audit.commands_after(path, 0)] == ["STATUS", "ACK", "RESTART"]
    assert [f["verb"] for f in audit.commands_after(path, 1)] == ["ACK", "RESTART"]
    assert [f["verb"] for f in audit.commands_after(path, 1, limit=1)] == ["ACK"]
    assert audit.commands_after(path, 3) == []
    state.close()
    path.unlink()
    state = StateFile(path)
    log = CommandLog(state.db)
    log.record(CommandFact(NOW, ONCALL, "ACK", "refused", "wrong_pin", "ledger"))
    state.db.commit()
    assert [(f["id"], f["verb"], f["outcome"]) for f in audit.commands_after(path, 3)] == [
        (1, "ACK", "refused")
    ]
    state.close()
