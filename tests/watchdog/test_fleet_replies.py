"""On-call replies in a fleet sharing one ledger (PostgreSQL, or a SQLite file on one host): each
box's watchdog reads the replies its own modem received (judged with its own digest key), and an
ACK stops that box's escalation chain."""

from __future__ import annotations

import time
from pathlib import Path

from appliance.config import InboundConfig
from appliance.inbound import command_sealer, keyword
from appliance.ledger import Store
from tests.support.postgres import PgServer
from tests.support.user_data import join_units, units
from tests.support.watchdog_box import ONCALL, PIN
from watchdog.__main__ import Watchdog
from watchdog.checks import Finding
from watchdog.settings import Settings

AFTER_S = 60.0
BACKUP = "+4915198765432"  # the chain's second number: told AFTER_S after the first


def own_files(home: Path, ledger: str) -> str:
    """`[store] path` as `smsgw` sees it: with a URL, the box's own directory (its digest key, its
    state); a SQLite ledger's directory holds them (boxes on one file share them)."""
    return ledger if not ledger.startswith("postgresql://") else str(home / "ledger.sqlite3")


def watchdog_of(home: Path, url: str, box: str) -> Watchdog:
    """Box `box`'s watchdog as `smsgw watchdog` builds it: its ledger on the fleet's server (or the
    shared file), the box's port never opened here."""
    pg = url.startswith("postgresql://")
    return Watchdog(
        Settings(
            ledger_path=own_files(home, url),
            ledger_url=url if pg else "",
            state_path=str(home / "watchdog.sqlite3"),
            box=box,
            box_name=box,
            oncall=(ONCALL, BACKUP),
            pin=PIN,
            escalate_after_s=AFTER_S,
            port=str(home / "no-port"),
        )
    )


def open_incident(wd: Watchdog, now: float) -> None:
    """One incident open on `wd`, its chain started at the first number (as a cycle does)."""
    wd.policy.step([Finding("queue", "queue", "queue stalled", now - 600, "check modem/SIM credit")], now)
    (incident,) = wd.policy.incidents.values()
    wd.chain.start(incident.id, now)


async def receive(store: Store, home: Path, text: str) -> None:
    """A text from the on-call phone as box `store.box`'s daemon stores it: sealed with that box's key."""
    sealer = command_sealer(own_files(home, store.path), (ONCALL, BACKUP), "DE")
    await store.add_inbound_part(
        sender=ONCALL, encoding="gsm7", user_data=units(text), ref=None, total=1, seq=1, sent_at=None,
        join=join_units, keyword_of=lambda t: keyword(t, InboundConfig()), seal=sealer,
    )  # fmt: skip


async def test_an_ack_to_box_a_stops_as_chain_and_box_b_neither_acts_on_it_nor_counts_a_wrong_pin(
    ledger_url: str, tmp_path: Path
) -> None:
    """On PostgreSQL (each box its own key: b would count a wrong PIN) and on a shared SQLite file
    (one key: b would have acknowledged its own incidents with a's ACK)."""
    url = ledger_url
    homes = {n: tmp_path / n for n in ("a", "b")}
    for home in homes.values():
        home.mkdir()
    t0 = time.time()
    watchdogs = {n: watchdog_of(homes[n], url, n) for n in homes}
    daemons = {n: Store(url, box=n) for n in homes}
    for store in daemons.values():
        await store.open()
    try:
        for wd in watchdogs.values():
            open_incident(wd, t0)
            await wd.replies(t0, scan_sim=False)  # the first look: nothing new yet
        await receive(daemons["a"], homes["a"], f"ACK {PIN}")
        for wd in watchdogs.values():
            await wd.replies(t0 + 1, scan_sim=False)
        wrong_pins_at_b = watchdogs["b"].commands.failures(ONCALL, t0 + 1)
    finally:
        for store in daemons.values():
            await store.close()
        for wd in watchdogs.values():
            wd.state.close()

    a, b = watchdogs["a"], watchdogs["b"]
    assert [i.acked_at is not None for i in a.policy.incidents.values()] == [True]
    assert a.chain.due(list(a.policy.incidents.values()), t0 + AFTER_S + 1) == []  # BACKUP is not woken
    assert [o.recipients for o in a.outbox] == [(ONCALL,)]  # "a ACK: 1 incident(s) silenced ..."
    assert a.outbox[0].alert.text.startswith("a ACK: 1 incident")

    assert wrong_pins_at_b == 0  # not judged with b's key: no wrong PIN
    assert b.outbox == []
    assert [i.acked_at for i in b.policy.incidents.values()] == [None]
    [step] = b.chain.due(list(b.policy.incidents.values()), t0 + AFTER_S + 1)
    assert step.recipients == (BACKUP,)  # b's own incident escalates on: nobody acknowledged it


async def test_a_watchdog_starting_after_a_reply_does_not_act_on_it_but_on_the_next(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """`started_at` on PostgreSQL: an ACK stored before the watchdog started (an old one, say
    before a reboot) is history; one stored after is acted on, once."""
    url = await pg_server.fresh_database()
    home = tmp_path / "a"
    home.mkdir()
    store = Store(url, box="a")
    await store.open()
    await receive(store, home, f"ACK {PIN}")
    wd = watchdog_of(home, url, "a")  # started after that ACK
    try:
        open_incident(wd, time.time())
        await wd.replies(time.time(), scan_sim=False)
        assert [i.acked_at for i in wd.policy.incidents.values()] == [None]
        await receive(store, home, f"STATUS {PIN}")
        await wd.replies(time.time(), scan_sim=False)
        await wd.replies(time.time(), scan_sim=False)
    finally:
        await store.close()
        wd.state.close()
    assert [o.alert.text.split(":")[0] for o in wd.outbox] == ["a STATUS"]
