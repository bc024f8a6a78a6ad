"""The per-modem token bucket on its own: burst, refill, the long-run rate it keeps, and after a
restart the state the sends recorded in the ledger give it (a crash loop sends no extra bursts).

A hand-driven clock stands in for time.monotonic so that minutes pass in microseconds;
the bucket takes the clock as a parameter for exactly this.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

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
