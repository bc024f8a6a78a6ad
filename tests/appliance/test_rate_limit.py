"""The per-modem token bucket on its own: burst, refill, the long-run rate it keeps, and after a
restart the state the sends recorded in the ledger give it (a crash loop sends no extra bursts).

A hand-driven clock stands in for time.monotonic so that minutes pass in microseconds;
the bucket takes the clock as a parameter for exactly this.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.config import DispatcherConfig, ModemConfig
from appliance.dispatcher import Dispatcher, ModemWorker, TokenBucket
from appliance.ledger import NewMessage, Store
from appliance.metrics import Metrics
from modem import Modem


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drain(bucket: TokenBucket) -> int:
    """Sends that go at once, without waiting."""
    sent = 0
    while bucket.wait_s() == 0:
        bucket.take()
        sent += 1
    return sent


def test_a_full_bucket_lets_the_burst_go_at_once_then_waits_one_interval() -> None:
    clock = Clock()
    bucket = TokenBucket(20, burst=5, clock=clock)
    assert drain(bucket) == 5
    assert bucket.wait_s() == pytest.approx(3.0)  # 20 a minute: one token every 3 s


def test_a_burst_of_one_makes_the_second_send_wait() -> None:
    clock = Clock()
    bucket = TokenBucket(20, burst=1, clock=clock)
    assert drain(bucket) == 1
    clock.now += 1.0
    assert bucket.wait_s() == pytest.approx(2.0)


def test_tokens_refill_at_the_rate_and_never_beyond_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(60, burst=5, clock=clock)
    drain(bucket)
    clock.now += 2.5  # one a second: two whole tokens and half of the third
    assert drain(bucket) == 2
    assert bucket.wait_s() == pytest.approx(0.5)
    clock.now += 3600  # an idle hour refills to the burst, not to 3,600
    assert drain(bucket) == 5


def test_sporadic_sends_never_wait() -> None:
    """One message every 10 s at 20 a minute (one token per 3 s): never held back."""
    clock = Clock()
    bucket = TokenBucket(20, burst=5, clock=clock)
    for _ in range(100):
        assert bucket.wait_s() == 0
        bucket.take()
        clock.now += 10.0


@pytest.mark.parametrize("burst", [1, 5, 20])
def test_the_long_run_rate_is_kept_whatever_the_burst(burst: int) -> None:
    """A sender as greedy as can be, for ten minutes: burst + 10 * rate sends, not more."""
    clock = Clock()
    bucket = TokenBucket(20, burst=burst, clock=clock)
    start = clock.now
    sent = 0
    while clock.now - start <= 600:
        wait = bucket.wait_s()
        if wait > 0:
            clock.now += wait
            continue
        bucket.take()
        sent += 1
    assert sent == burst + 200


def test_the_limit_describes_itself_for_the_timeline() -> None:
    assert TokenBucket(20, burst=5).describe() == "the modem's rate limit (20 a minute, burst 5)"


# A sender's pattern: pauses (seconds) between attempts to send as much as the bucket allows.
RATES = st.sampled_from([1.0, 6.0, 20.0, 60.0, 600.0])
BURSTS = st.integers(min_value=1, max_value=20)
PAUSES = st.lists(st.floats(min_value=0.0, max_value=10.0), max_size=40)


def run_sender(bucket: TokenBucket, clock: Clock, pauses: list[float]) -> list[float]:
    """Times of the sends the bucket let through, taking one whenever `wait_s` says one is there."""
    sent: list[float] = []
    for pause in pauses:
        clock.now += pause
        while bucket.wait_s() == 0:
            bucket.take()
            sent.append(clock.now)
    return sent


@given(RATES, BURSTS, PAUSES)
def test_no_window_ever_sees_more_than_the_burst_plus_the_rate(
    per_minute: float, burst: int, pauses: list[float]
) -> None:
    clock = Clock()
    sent = run_sender(TokenBucket(per_minute, burst=burst, clock=clock), clock, pauses)
    # Sends i..j (a window from sent[i] to sent[j]) number j - i + 1: with k - sent[k] * rate
    # written excess(k), the worst window ending at j starts where excess is lowest before it.
    rate_s = per_minute / 60
    lowest = float("inf")
    for j, at in enumerate(sent):
        excess = j - at * rate_s
        lowest = min(lowest, excess)
        assert excess - lowest + 1 <= burst + 1e-6, (
            f"{excess - lowest + 1:g} sends in a window allowing {burst}"
        )


@given(RATES, BURSTS, st.integers(min_value=0, max_value=40), st.floats(min_value=0.0, max_value=5.0))
def test_waiting_what_wait_s_says_makes_a_token_available(
    per_minute: float, burst: int, takes: int, pause: float
) -> None:
    clock = Clock()
    bucket = TokenBucket(per_minute, burst=burst, clock=clock)
    for _ in range(takes):
        bucket.take()
    clock.now += pause
    wait = bucket.wait_s()
    assert wait == 0 or bucket.tokens < 1
    clock.now += wait
    assert bucket.wait_s() == pytest.approx(0, abs=1e-9)
    assert bucket.tokens <= burst


@given(RATES, BURSTS, PAUSES, st.floats(min_value=0.0, max_value=120.0))
def test_a_bucket_rebuilt_from_its_sends_is_never_fuller_than_the_one_that_made_them(
    per_minute: float, burst: int, pauses: list[float], downtime: float
) -> None:
    """A restart (after `downtime`) adds no burst the running bucket would not have had."""
    clock = Clock()
    live = TokenBucket(per_minute, burst=burst, clock=clock)
    sent = run_sender(live, clock, pauses)
    clock.now += downtime
    rebuilt = TokenBucket(per_minute, burst=burst, clock=clock)
    rebuilt.replay(clock.now - t for t in sent)
    live.wait_s()  # brings the live bucket up to now
    assert rebuilt.tokens <= live.tokens + 1e-9
    assert drain(rebuilt) <= drain(live)


def test_a_restart_goes_on_with_the_bucket_the_last_run_left() -> None:
    """A burst of five a second before the restart (60 a minute, burst 5): one token is back."""
    bucket = TokenBucket(60, burst=5, clock=Clock())
    bucket.replay([1.0] * 5)
    assert drain(bucket) == 1
    assert bucket.wait_s() == pytest.approx(1.0)


def test_sends_count_until_the_bucket_would_have_refilled() -> None:
    bucket = TokenBucket(60, burst=5, clock=Clock())  # one token a second, full in 5 s
    bucket.replay([2.0, 2.0, 2.0, 2.0])
    assert drain(bucket) == 3, "four sent 2 s ago: two tokens back"
    bucket = TokenBucket(60, burst=5, clock=Clock())
    bucket.replay([5.0, 6.0, 600.0, 9.0])  # old enough to be refilled
    assert drain(bucket) == 5
    bucket = TokenBucket(60, burst=5, clock=Clock())
    bucket.replay([-3.0])  # a wall-clock step back: counted as just sent
    assert drain(bucket) == 4


def test_a_crash_loop_keeps_the_long_run_rate() -> None:
    """The daemon restarts every 2 s (systemd RestartSec=2) for ten minutes, each run sending as
    fast as its bucket allows: burst + 10 * rate sends in all, not a burst per restart."""
    clock = Clock()
    start = clock.now
    sent_at: list[float] = []
    while clock.now - start <= 600:
        bucket = TokenBucket(20, burst=5, clock=clock)
        bucket.replay(clock.now - t for t in sent_at if clock.now - t <= bucket.lookback_s)
        run_ends = clock.now + 2.0
        while clock.now < run_ends and clock.now - start <= 600:
            wait = bucket.wait_s()
            if wait > 0:
                clock.now = min(clock.now + max(wait, 1e-3), run_ends)  # a real clock always moves on
                continue
            bucket.take()
            sent_at.append(clock.now)
    assert len(sent_at) <= 5 + 200
    assert len(sent_at) >= 0.9 * 200  # a little stricter while sending at the limit, not starved


async def test_a_worker_starts_from_its_modems_sends_in_the_ledger(tmp_path: Path) -> None:
    """The ledger's record of what this modem sent (not another modem, not long ago) sets the bucket."""
    store = Store(tmp_path / "ledger.sqlite3")
    await store.open()
    try:
        now = time.time()
        for modem, at in [
            ("gsm0", now - 1),
            ("gsm0", now - 1),
            ("gsm0", now - 1),
            ("gsm1", now - 1),
            ("gsm0", now - 60),
        ]:
            msg, _ = await store.accept(
                NewMessage(to="+4915111111111", body="hi", encoding="gsm7", segments=1),
                key_id=1,
                queue_max=100,
            )
            claimed = await store.claim_next(modem)
            assert claimed is not None
            await store.part_sending(msg.id, 1)
            await store.part_submitted(msg.id, 1, 1, modem, at=at)
        cfg = ModemConfig(port="/dev/null", rate_per_minute=20, rate_burst=5)
        worker = ModemWorker(
            Dispatcher(store, DispatcherConfig(), Metrics()), Modem("/dev/null"), cfg, "gsm0"
        )
        await worker._restore_rate()
    finally:
        await store.close()
    assert drain(worker.bucket) == 2, "burst 5, three sent a second ago (a third of a token back)"
    assert worker.bucket.wait_s() > 1  # the next token is about 2 s away
