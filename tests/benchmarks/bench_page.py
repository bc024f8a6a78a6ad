"""The status page with 100,000 messages in the ledger: HTML weight (< 100 KB) and server time (< 50 ms).

Run: `python -c "import asyncio; from tests.benchmarks import bench_page; asyncio.run(bench_page.run())"`.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from appliance.api import create_app
from appliance.config import from_dict
from appliance.ledger import Store
from appliance.status import GatewayView
from tests.support.api_fakes import FakeGateway, as_view, ready_modem

MESSAGES = 100_000
TARGET_BYTES = 100 * 1024
TARGET_MS = 50.0
ROUNDS = 20


def _view() -> GatewayView:
    """A gateway whose modem is ready (the page's cost is the ledger's, not the modem's)."""
    modem = ready_modem(
        "modem",
        port="/dev/gsmmodem",
        revision="EC25EFAR06A04M4G",
        imei="861234567890123",
        sim="READY",
        iccid="89490200001234567890",
        registration={"status": 1, "text": "home", "technology": "LTE"},
        storage={"memory": "SM", "used": 0, "total": 30},
        last_error="",
    )
    return as_view(
        FakeGateway(modem_list=[modem], is_ready=(True, "1 modem(s) ready"), start=time.time() - 3600)
    )


def fill(path: Path, n: int) -> None:
    """n messages over the last 2 days, most delivered, with parts, events and modem samples."""
    now = time.time()
    states = ["delivered"] * 90 + ["sent"] * 5 + ["failed"] * 3 + ["queued"] * 2
    msgs: list[tuple[object, ...]] = []
    parts: list[tuple[object, ...]] = []
    events: list[tuple[str, float, str, str | None, str, str]] = []
    for i in range(n):
        t = now - 2 * 86400 + i * (2 * 86400 / n)
        st = states[i % len(states)]
        sent = t + 2 if st in ("delivered", "sent") else None
        done = t + 5 if st == "delivered" else None
        mid = f"msg_{i:08d}"
        msgs.append(
            (
                mid,
                f"+49151{i % 10_000_000:08d}",
                "bench body",
                "gsm7",
                1,
                1,
                st,
                1,
                t,
                t,
                t,
                t + 86400,
                sent,
                done,
            )
        )
        parts.append((mid, 1, 1, "delivered" if done else "pending", i % 256, sent))
        events.append((mid, t, "accepted", None, "queued", ""))
        if sent:
            events.append((mid, sent, "sent", "sending", "sent", "mr 1"))
    samples = [(now - k * 60, "modem", "ready", 1, -70 - k % 15, "Telekom.de") for k in range(1440)]
    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT INTO messages (id, to_number, body, encoding, segments, priority, status, attempts, "
            "created_at, updated_at, not_before, expires_at, sent_at, delivered_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            msgs,
        )
        db.executemany(
            "INSERT INTO parts (message_id, seq, total, status, mr, submitted_at) VALUES (?, ?, ?, ?, ?, ?)",
            parts,
        )
        db.executemany(
            "INSERT INTO events (message_id, at, kind, from_status, to_status, detail) VALUES (?, ?, ?, ?, ?, ?)",
            events,
        )
        db.executemany(
            "INSERT INTO modem_samples (at, modem, state, registered, signal_dbm, operator) VALUES (?, ?, ?, ?, ?, ?)",
            samples,
        )
    db.close()


def explain(path: Path) -> list[str]:
    """The plans of the page's heaviest queries: each must SEARCH an index, never SCAN the table."""
    db = sqlite3.connect(path)
    now = time.time()
    queries = [
        ("SELECT count(*) FROM messages WHERE sent_at >= ? AND sent_at <= ?", (now - 86400, now)),
        ("SELECT count(*) FROM messages WHERE delivered_at >= ? AND delivered_at <= ?", (now - 86400, now)),
        ("SELECT max(submitted_at) FROM parts", ()),
        ("SELECT * FROM messages ORDER BY seq DESC LIMIT 50", ()),
        ("SELECT * FROM messages WHERE status = 'failed' ORDER BY seq DESC LIMIT 50", ()),
        ("SELECT modem, avg(signal_dbm) FROM modem_samples WHERE at >= ? GROUP BY modem", (now - 86400,)),
    ]
    plans = []
    for sql, args in queries:
        rows = db.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
        plans.append(f"{sql[:60]:60} -> {'; '.join(r[3] for r in rows)}")
    db.close()
    return plans


async def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.sqlite3"
        store = Store(path)
        await store.open()  # creates and migrates the schema
        await store.close()
        started = time.perf_counter()
        fill(path, MESSAGES)
        print(f"page bench: {MESSAGES} messages inserted in {time.perf_counter() - started:.1f} s")
        for line in explain(path):
            print(f"  plan: {line}")
        config = from_dict({"store": {"path": str(path)}})
        store = Store(path)
        await store.open()
        try:
            app = create_app(
                store=store, config=config, gateway=_view()
            )  # no reset_modem: an optional member
            figures: dict[str, float] = {}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
                for page in ("/", "/messages", "/modem"):
                    await c.get(page)  # warm: templates compiled, pages cached by SQLite
                    times = []
                    size = 0
                    for _ in range(ROUNDS):
                        t0 = time.perf_counter()
                        r = await c.get(page)
                        times.append((time.perf_counter() - t0) * 1000)
                        assert r.status_code == 200, r.text[:200]
                        size = len(r.content)
                    median = statistics.median(times)
                    figures[f"{page} ms"] = median
                    figures[f"{page} bytes"] = size
                    verdict = "ok" if size < TARGET_BYTES and median < TARGET_MS else "OVER TARGET"
                    print(
                        f"page bench: GET {page:10} {size / 1024:6.1f} KB (< 100)  "
                        f"median {median:5.1f} ms, max {max(times):5.1f} ms (< 50)  {verdict}"
                    )
        finally:
            await store.close()
        return figures
