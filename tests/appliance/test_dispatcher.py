"""The dispatcher's pure decisions, each on its own: what an error means for the message
(`classify`), how long a retry waits (`backoff_s`), and the validity period a part carries
(the TP-VP relative octet). The queue-draining workers are driven end to end in tests/system.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.config import DispatcherConfig
from appliance.dispatcher import Classified, Outcome, _validity_octet, backoff_s, classify
from modem import AtError, AtTimeout, ModemError, TransportError
from modem.errors import CmeError, CmsError, Retry, SubmitLost, UnexpectedResponse, describe

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY


# --- classify: one mapping from a modem error to what happens to the message ---------------------


def _cms(code: int | None) -> CmsError:
    return CmsError("AT+CMGS=23", f"+CMS ERROR: {code}", code)


def _cme(code: int | None) -> CmeError:
    return CmeError("AT+CMGS=23", f"+CME ERROR: {code}", code)


def _lost_port(*, maybe_sent: bool) -> TransportError:
    exc = TransportError("/dev/ttyUSB2 is gone")
    exc.maybe_sent = maybe_sent
    return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        # The network or the radio: retried later.
        (_cms(42), Classified(Outcome.RETRY, "cms_42", "congestion")),
        (
            _cms(331),
            Classified(
                Outcome.RETRY, "cms_331", "no network service (no network: check antenna and coverage)"
            ),
        ),
        # Permanent for this recipient: failed at once, not retried five times.
        (_cms(1), Classified(Outcome.PERMANENT, "cms_1", "unassigned (unallocated) number")),
        (_cms(196), Classified(Outcome.PERMANENT, "cms_196", "destination SME barred")),
        # A host or SIM problem that retrying unchanged cannot fix: failed, with what to do.
        (
            _cms(311),
            Classified(
                Outcome.PERMANENT, "cms_311", "SIM PIN required (the SIM asks for its PIN: set modem.pin)"
            ),
        ),
        (
            _cme(16),
            Classified(
                Outcome.PERMANENT,
                "cme_16",
                "incorrect password (wrong PIN: check modem.pin before the SIM locks)",
            ),
        ),
        # The SIM or modem needs recovering: the message waits for it.
        (_cme(10), Classified(Outcome.RETRY, "cme_10", "SIM not inserted (no SIM: check it is seated)")),
        (_cme(14), Classified(Outcome.RETRY, "cme_14", "SIM busy")),
        # Network timeout and lower-layer failure: the SC may have the message already.
        (
            _cms(332),
            Classified(
                Outcome.RETRY, "cms_332", "network timeout (the SMS may still have reached the SC)", True
            ),
        ),
        (
            _cms(513),
            Classified(
                Outcome.RETRY,
                "cms_513",
                "vendor specific: lower layer failure, ack timed out or radio link lost",
                True,
            ),
        ),
        # Codes nobody documented are retried (a bounded number of times), never dropped.
        (_cms(999), Classified(Outcome.RETRY, "cms_999", "unknown error code")),
        (_cms(None), Classified(Outcome.RETRY, "cms", "error without a code")),
        # A bare ERROR (no +CMEE detail) says only what the modem answered.
        (AtError("AT+CMGS=23", "ERROR"), Classified(Outcome.RETRY, "modem_error", "modem answered ERROR")),
        (
            AtError("AT+CMGS=23", "COMMAND NOT SUPPORT"),
            Classified(Outcome.RETRY, "modem_error", "modem answered COMMAND NOT SUPPORT"),
        ),
    ],
    ids=lambda v: v.code if isinstance(v, Classified) else "",
)
def test_an_at_error_maps_to_its_outcome_code_and_meaning(exc: BaseException, expected: Classified) -> None:
    assert classify(exc) == expected


def test_a_timeout_is_retried_and_flagged_as_a_possible_duplicate() -> None:
    c = classify(AtTimeout("AT+CMGS=23", 30.0))
    assert (c.outcome, c.code, c.ambiguous) == (Outcome.RETRY, "modem_timeout", True)
    assert "30 s" in c.message


def test_a_submit_lost_in_a_freeze_is_a_timeout_the_network_may_have() -> None:
    c = classify(SubmitLost("AT+CMGS=23", 42.0))
    assert (c.outcome, c.code, c.ambiguous) == (Outcome.RETRY, "modem_timeout", True)
    assert "lost the command" in c.message


@pytest.mark.parametrize("maybe_sent", [False, True])
def test_a_lost_port_hands_the_message_back_and_says_whether_it_may_be_out(maybe_sent: bool) -> None:
    c = classify(_lost_port(maybe_sent=maybe_sent))
    assert c == Classified(Outcome.MODEM_DOWN, "modem_unavailable", "/dev/ttyUSB2 is gone", maybe_sent)


@pytest.mark.parametrize(
    "exc",
    [UnexpectedResponse("AT+CMGS=23", ["+CMGS: x"]), ModemError("the modem said something odd")],
)
def test_any_other_modem_error_is_retried(exc: ModemError) -> None:
    c = classify(exc)
    assert (c.outcome, c.code, c.ambiguous) == (Outcome.RETRY, "modem_error", False)
    assert c.message == str(exc)


def test_a_bug_is_retried_as_an_internal_error_naming_the_exception() -> None:
    c = classify(KeyError("mr"))
    assert (c.outcome, c.code, c.message, c.ambiguous) == (
        Outcome.RETRY,
        "internal_error",
        "KeyError('mr')",
        False,
    )


@given(st.sampled_from(["CMS", "CME"]), st.integers(min_value=0, max_value=1000))
def test_every_coded_error_is_retried_exactly_when_its_class_is_transient(kind: str, code: int) -> None:
    """A coded error never takes the modem down, and fails the message only for FIX and NEVER."""
    c = classify(_cms(code) if kind == "CMS" else _cme(code))
    retry = describe(kind, code)[1]
    assert c.code == f"{kind.lower()}_{code}"
    expected = Outcome.PERMANENT if retry in (Retry.FIX, Retry.NEVER) else Outcome.RETRY
    assert c.outcome is expected
    assert c.ambiguous is (code in (332, 513))


# --- backoff_s: exponential, capped, jittered ------------------------------------------------------


class Extreme(random.Random):
    """A generator that always draws the low (or high) end of a range."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


@pytest.mark.parametrize(
    ("attempt", "centre_s"),
    [(0, 5.0), (1, 5.0), (2, 10.0), (3, 20.0), (5, 80.0), (8, 640.0), (9, 900.0), (30, 900.0), (5000, 900.0)],
)
def test_the_backoff_doubles_per_attempt_up_to_the_cap_with_half_jitter_either_way(
    attempt: int, centre_s: float
) -> None:
    cfg = DispatcherConfig(backoff_base_s=5.0, backoff_max_s=900.0)
    assert backoff_s(attempt, cfg, Extreme(high=False)) == pytest.approx(centre_s * 0.5)
    assert backoff_s(attempt, cfg, Extreme(high=True)) == pytest.approx(centre_s * 1.5)


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0.01, max_value=600),
    cap=st.floats(min_value=0.01, max_value=86_400),
    seed=st.integers(),
)
def test_a_backoff_stays_within_half_and_one_and_a_half_of_the_capped_doubling(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    cfg = DispatcherConfig(backoff_base_s=base, backoff_max_s=cap)
    centre = min(cap, base * 2.0 ** min(max(0, attempt - 1), 64))
    delay = backoff_s(attempt, cfg, random.Random(seed))  # noqa: S311  (jitter, not security)
    assert centre * 0.5 <= delay <= centre * 1.5


def test_the_jitter_spreads_retries_over_the_whole_range() -> None:
    """Two hundred messages failing together do not all come back at the same instant."""
    cfg = DispatcherConfig(backoff_base_s=5.0, backoff_max_s=900.0)
    rng = random.Random(1)  # noqa: S311  (jitter, not security)
    delays = [backoff_s(3, cfg, rng) for _ in range(200)]
    assert min(delays) < 11.0
    assert max(delays) > 29.0
    assert len({round(d, 3) for d in delays}) > 150


@given(st.integers(min_value=1, max_value=60), st.integers())
def test_a_later_attempt_never_has_a_shorter_window(attempt: int, seed: int) -> None:
    """With the same draw, attempt n+1 waits at least as long as attempt n."""
    cfg = DispatcherConfig(backoff_base_s=5.0, backoff_max_s=900.0)
    now = backoff_s(attempt, cfg, random.Random(seed))  # noqa: S311  (jitter, not security)
    later = backoff_s(attempt + 1, cfg, random.Random(seed))  # noqa: S311
    assert later >= now


# --- the TP-VP relative octet (TS 23.040 9.2.3.12.1) -----------------------------------------------


def vp_seconds(octet: int) -> int:
    """The validity period a TP-VP relative octet stands for, straight from the clause's table."""
    if octet <= 143:
        return (octet + 1) * 5 * MINUTE
    if octet <= 167:
        return 12 * HOUR + (octet - 143) * 30 * MINUTE
    if octet <= 196:
        return (octet - 166) * DAY
    return (octet - 192) * WEEK


@pytest.mark.parametrize(
    ("seconds", "octet"),
    [
        (5 * MINUTE, 0),  # the shortest period there is
        (10 * MINUTE, 1),
        (12 * HOUR, 143),  # last of the 5-minute steps
        (12 * HOUR + 30 * MINUTE, 144),  # first of the 30-minute steps
        (24 * HOUR, 167),  # last of the 30-minute steps: the default validity (one day)
        (2 * DAY, 168),  # first of the day steps
        (30 * DAY, 196),  # last of the day steps
        (5 * WEEK, 197),  # first of the week steps
        (63 * WEEK, 255),  # the longest period there is
    ],
)
def test_the_octet_at_each_boundary_of_the_table(seconds: int, octet: int) -> None:
    assert _validity_octet(seconds) == octet
    assert vp_seconds(octet) == seconds  # the reference table agrees with the clause


@pytest.mark.parametrize(
    ("seconds", "octet", "why"),
    [
        (0, 0, "an expiring message still gets the shortest period, not none"),
        (-60, 0, "a clock step past the expiry too"),
        (4 * MINUTE, 0, "under five minutes rounds up to the shortest period"),
        (10 * MINUTE - 1, 0, "a second short of 10 min stays at 5 min"),
        (12 * HOUR + 29 * MINUTE, 143, "between the 5- and 30-minute steps: 12 h"),
        (36 * HOUR, 167, "between 24 h and 2 days: 24 h"),
        (34 * DAY, 196, "between 30 days and 5 weeks: 30 days"),
        (63 * WEEK + DAY, 255, "beyond 63 weeks: the longest there is"),
        (10 * 365 * DAY, 255, "ten years: still the longest there is"),
    ],
)
def test_times_between_steps_round_down_to_a_period_the_message_still_has(
    seconds: int, octet: int, why: str
) -> None:
    assert _validity_octet(seconds) == octet, why


def test_every_octet_round_trips_through_its_period() -> None:
    back = {octet: _validity_octet(vp_seconds(octet)) for octet in range(256)}
    assert {octet: got for octet, got in back.items() if got != octet} == {}


@given(st.floats(min_value=5 * MINUTE, max_value=70 * WEEK, allow_nan=False))
def test_the_octet_is_the_longest_period_not_beyond_the_time_left(seconds: float) -> None:
    """The network never holds a part past its expiry, and drops it no earlier than one step before."""
    octet = _validity_octet(seconds)
    assert 0 <= octet <= 255
    assert vp_seconds(octet) <= seconds + 1e-6
    if octet < 255:
        assert vp_seconds(octet + 1) > seconds


@given(st.floats(min_value=-DAY, max_value=70 * WEEK), st.floats(min_value=0, max_value=70 * WEEK))
def test_more_time_left_never_gives_a_shorter_period(seconds: float, more: float) -> None:
    assert _validity_octet(seconds + more) >= _validity_octet(seconds)
