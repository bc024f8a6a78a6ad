"""What a fleet costs the send queue: claims by a box (which first checks its lease was not taken
over) against claims without a box (the baseline, measured in the same run on the same ledger), and
how long one takeover of a box with in-flight messages takes."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from appliance.ledger import NewMessage, Store

MESSAGES = 500
IN_FLIGHT = 50


async def _claims(path: Path, box: str | None) -> float:
    """Seconds for MESSAGES claims, each with its first part marked (the dispatcher's claim)."""
    store = Store(path, box=box)
    await store.open()
    try:
        for i in range(MESSAGES):
            await store.accept(
                NewMessage(to=f"+49151{i:08d}", body="bench", encoding="gsm7", segments=1),
                key_id=None,
                queue_max=MESSAGES * 10,
            )
        start = time.perf_counter()
        for _ in range(MESSAGES):
            assert await store.claim_next("modem", mark_first_part=True) is not None
        return time.perf_counter() - start
    finally:
        await store.close()


async def _takeover(path: Path) -> float:
    dead, heir = Store(path, box="dead"), Store(path, box="heir")
    await dead.open()
    await heir.open()
    try:
        t0 = time.time()
        await dead.register_box(1, now=t0 - 10)
        for i in range(IN_FLIGHT):
            await dead.accept(
                NewMessage(to=f"+49152{i:08d}", body="bench", encoding="gsm7", segments=1),
                key_id=None,
                queue_max=10**6,
            )
            await dead.claim_next("modem", mark_first_part=True)
        start = time.perf_counter()
        (takeover,) = await heir.take_over_expired("resend")
        wall = time.perf_counter() - start
        assert len(takeover.messages) == IN_FLIGHT
        return wall
    finally:
        await dead.close()
        await heir.close()


async def run() -> None:
    print(
        f"fleet: {MESSAGES} claims with and without a box (median of 3), one takeover of {IN_FLIGHT} in flight"
    )
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-") as tmp:
        plain, boxed = [], []
        for i in range(3):
            plain.append(await _claims(Path(tmp) / f"plain{i}.sqlite3", None))
            boxed.append(await _claims(Path(tmp) / f"boxed{i}.sqlite3", "a"))
        p, b = statistics.median(plain), statistics.median(boxed)
        print(
            f"  claims without a box (baseline) {p / MESSAGES * 1000:.3f} ms each; by box a "
            f"{b / MESSAGES * 1000:.3f} ms each; ratio {b / p:.3f}"
        )
        wall = await _takeover(Path(tmp) / "takeover.sqlite3")
        print(
            f"  takeover of a box with {IN_FLIGHT} messages in flight: {wall * 1000:.1f} ms (one transaction)"
        )
