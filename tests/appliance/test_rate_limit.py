"""The per-modem token bucket on its own: burst, refill, and the long-run rate it keeps.

A hand-driven clock stands in for time.monotonic so that minutes pass in microseconds;
the bucket takes the clock as a parameter for exactly this.
"""

from __future__ import annotations

import pytest

from appliance.dispatcher import TokenBucket


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
