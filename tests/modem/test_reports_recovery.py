"""Status reports that come while nobody reads the port, and PDUs nobody can decode, on the real stack.

The gateway (a `Modem` with callbacks) is stopped and started again around the simulated
modem, which stays powered: what a kill -9 of the daemon looks like from the modem's side.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from modem import CallbackDeferred, Modem, Undecodable
from modem.pdu import StatusReport
from modem.simulator import Simulator
from tests.modem.test_modem import PHONE, Collected, eventually, running
from tests.support.simulators import SimFactory

# A status report cut after its recipient: no decoder can read it (TS 23.040 9.2.2.3 needs SCTS, DT, ST).
TRUNCATED_REPORT = "0006D60B911326880736F4"
TRUNCATED_DELIVER = "0791947101670000040C9194716176"


class Quarantine:
    def __init__(self) -> None:
        self.items: list[Undecodable] = []
        self.fail = False
        self.defer = False

    async def __call__(self, item: Undecodable) -> None:
        if self.defer:
            raise CallbackDeferred("the ledger's disk is full")
        if self.fail:
            raise RuntimeError("ledger unavailable")
        self.items.append(item)


async def _send_while_dead(sim: Simulator, text: str) -> int:
    """Send with one gateway, then kill it before the report arrives; returns the part's MR."""
    sim.network.report_delay_s = 0.3
    async with running(sim) as modem:
        (sub,) = await modem.send_text(PHONE, text)
    await sim.network.wait_for(lambda: any(e.kind == "report" and e.mr == sub.mr for e in sim.network.log))
    return sub.mr


async def test_quectel_report_stored_while_dead_is_swept_from_sr_at_start(sim_factory: SimFactory) -> None:
    sim = await sim_factory()
    mr = await _send_while_dead(sim, "report while dead")
    assert sim.state.storage["SR"].used == 1  # the modem kept it (ds=2)
    collected = Collected()
    async with running(sim, collected) as modem:
        assert modem.info.report_recovery == "stored"
        await eventually(lambda: any(r.mr == mr for r in collected.reports))
        await eventually(lambda: sim.state.storage["SR"].used == 0)  # deleted after the callback


async def test_quectel_wrong_memory_announcement_reads_sr_and_leaves_sm_alone(
    sim_factory: SimFactory,
) -> None:
    sim = await sim_factory()
    collected = Collected()
    # An unrelated SMS sits in SM:1, the slot +CDSI: "SM",1 will name.
    collected.fail_deliver = True
    async with running(sim, collected) as modem:
        await sim.inject("+4917612345678", "unrelated, in SM 1")
        await eventually(lambda: sim.state.storage["SM"].used == 1)
        (sub,) = await modem.send_text(PHONE, "announced in the wrong memory")
        await eventually(lambda: any(r.mr == sub.mr for r in collected.reports))
        assert any(e.kind == "report" for e in sim.network.log)
        await eventually(lambda: sim.state.storage["SR"].used == 0)
        # The SMS in the announced slot was neither taken for a report nor deleted.
        assert sim.state.storage["SM"].used == 1
        assert all(isinstance(r, StatusReport) for r in collected.reports)


async def test_sim800_acknowledges_each_report_after_the_callback(sim_factory: SimFactory) -> None:
    sim = await sim_factory("sim800", cnma_timeout_s=5.0)
    collected = Collected()
    async with running(sim, collected) as modem:
        assert modem.info.report_recovery == "acknowledged"
        assert sim.sessions["primary"].csms == 1
        for i in range(3):
            await modem.send_text(PHONE, f"ack {i}")
        await eventually(lambda: len(collected.reports) == 3)
        await eventually(lambda: not sim.sessions["primary"]._unacked)  # each one acked with AT+CNMA
    assert not any(e.kind == "rp_error" for e in sim.network.log)


@pytest.mark.slow
async def test_sim800_report_routed_while_dead_is_sent_again_by_the_network(sim_factory: SimFactory) -> None:
    # The network waits 1 s for AT+CNMA; the gateway is back within it or not: either way the
    # SC re-sends after RP-ERROR, and the restarted gateway turns routing on again.
    sim = await sim_factory("sim800", cnma_timeout_s=0.3, sc_retry_s=0.5)
    mr = await _send_while_dead(sim, "routed to nobody")
    await sim.network.wait_for(lambda: any(e.kind == "rp_error" for e in sim.network.log))
    assert sim.sessions["primary"].cnmi[3] == 0  # the ME turned routing off
    collected = Collected()
    async with running(sim, collected):
        await eventually(lambda: any(r.mr == mr for r in collected.reports), timeout_s=5)
    assert any(e.kind == "retransmit" for e in sim.network.log)


async def test_a_gateway_back_before_the_ack_timeout_refuses_what_it_never_saw(
    sim_factory: SimFactory,
) -> None:
    # The report was routed to the dead gateway; the network still waits for its ack (TR2M).
    sim = await sim_factory("sim800", cnma_timeout_s=10.0, sc_retry_s=0.1)
    mr = await _send_while_dead(sim, "back in time")
    assert sim.sessions["primary"]._unacked
    collected = Collected()
    async with running(sim, collected):
        # AT+CNMA=2 at start: RP-ERROR now, re-sent soon, and routing never turned off.
        await eventually(lambda: any(r.mr == mr for r in collected.reports))
        assert sim.sessions["primary"].cnmi[3] == 1
        await eventually(lambda: not sim.sessions["primary"]._unacked)


async def test_a_late_acknowledgement_turns_routing_on_again(sim_factory: SimFactory) -> None:
    sim = await sim_factory("sim800", cnma_timeout_s=0.05, sc_retry_s=0.2)
    collected = Collected()
    slow = asyncio.Event()

    async def slow_report(report: StatusReport) -> None:
        await slow.wait()  # a ledger commit slower than the network's patience
        collected.reports.append(report)

    modem = Modem(str(sim.primary_path), on_status_report=slow_report)
    await modem.start()
    try:
        await modem.wait_ready(10)
        (sub,) = await modem.send_text(PHONE, "acked too late")
        await sim.network.wait_for(lambda: any(e.kind == "rp_error" for e in sim.network.log))
        slow.set()
        await eventually(lambda: sim.sessions["primary"].cnmi[3] == 1)  # restored after CMS 340
        await eventually(lambda: len([r for r in collected.reports if r.mr == sub.mr]) >= 2)
    finally:
        await modem.stop()


async def test_undecodable_stored_pdus_are_quarantined_then_deleted(sim_factory: SimFactory) -> None:
    sim = await sim_factory()
    quarantine = Quarantine()
    quarantine.fail = True
    sim.inject_pdu(TRUNCATED_DELIVER)  # stored while nobody listens: found by the sweep
    modem = Modem(str(sim.primary_path), on_undecodable=quarantine)
    await modem.start()
    try:
        await modem.wait_ready(10)
        assert sim.state.storage["SM"].used == 1  # the callback failed: kept in the modem
        quarantine.fail = False
        sim.inject_pdu(TRUNCATED_REPORT, report=True)  # announced +CDSI: "SM",n, sits in SR
        await modem.sweep()
        await eventually(lambda: len(quarantine.items) == 2)
        await eventually(lambda: sim.state.storage["SM"].used == 0 and sim.state.storage["SR"].used == 0)
    finally:
        await modem.stop()
    by_memory = {q.memory: q for q in quarantine.items}
    assert by_memory["SM"].pdu == TRUNCATED_DELIVER
    assert by_memory["SR"].pdu == TRUNCATED_REPORT
    assert by_memory["SM"].port == str(sim.primary_path)
    assert all(q.index is not None and q.reason for q in quarantine.items)


async def test_a_deferred_callback_keeps_stored_pdus_and_says_so_once(
    sim_factory: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """An expected fault of the receiver (a full disk) is one log line for every sweep and PDU
    that meets it, no traceback; the PDUs stay on the SIM and are taken once it clears."""
    sim = await sim_factory()
    quarantine = Quarantine()
    quarantine.defer = True
    sim.inject_pdu(TRUNCATED_DELIVER)
    sim.inject_pdu(TRUNCATED_DELIVER[:-2])
    caplog.set_level(logging.DEBUG, logger="modem.sms")
    modem = Modem(str(sim.primary_path), on_undecodable=quarantine)
    await modem.start()
    try:
        await modem.wait_ready(10)
        await modem.sweep()
        await modem.sweep()
        assert sim.state.storage["SM"].used == 2, "kept on the SIM"
        said = [r for r in caplog.records if "disk is full" in r.getMessage()]
        assert [r.levelno for r in said].count(logging.WARNING) == 1, [r.getMessage() for r in said]
        assert len(said) >= 4, "every attempt met the fault (two PDUs, at least two sweeps)"
        quarantine.defer = False
        await modem.sweep()
        await eventually(lambda: len(quarantine.items) == 2)
        assert sim.state.storage["SM"].used == 0
    finally:
        await modem.stop()
    assert not [r for r in caplog.records if r.exc_info], "no traceback"


async def test_undecodable_routed_report_is_quarantined_and_acknowledged(sim_factory: SimFactory) -> None:
    sim = await sim_factory("sim800", cnma_timeout_s=5.0)
    quarantine = Quarantine()
    modem = Modem(str(sim.primary_path), on_undecodable=quarantine)
    await modem.start()
    try:
        await modem.wait_ready(10)
        sim.inject_pdu(TRUNCATED_REPORT, report=True)
        await eventually(lambda: len(quarantine.items) == 1)
        await eventually(lambda: not sim.sessions["primary"]._unacked)  # acked once committed
    finally:
        await modem.stop()
    (item,) = quarantine.items
    assert (item.memory, item.index, item.pdu) == ("", None, TRUNCATED_REPORT)
    assert not any(e.kind == "rp_error" for e in sim.network.log)


async def test_profiles_name_their_recovery_and_why(tmp_path: Path) -> None:
    from modem import profiles  # noqa: PLC0415

    for profile in (profiles.GENERIC, *profiles.PROFILES):
        assert profile.why_recovery.startswith(profile.report_recovery.value), profile.name


async def test_a_port_without_callbacks_leaves_reports_and_undecodables_for_the_gateway(
    sim_factory: SimFactory,
) -> None:
    """The watchdog opens the modem with no callbacks: its sweep must not delete what the gateway needs."""
    sim = await sim_factory()
    mr = await _send_while_dead(sim, "for the gateway")
    sim.inject_pdu(TRUNCATED_DELIVER)
    watchdog_side = Modem(str(sim.primary_path))
    await watchdog_side.start()
    try:
        await watchdog_side.wait_ready(10)
        assert await watchdog_side.sweep() == 0
    finally:
        await watchdog_side.stop()
    assert (sim.state.storage["SR"].used, sim.state.storage["SM"].used) == (1, 1)
    collected, quarantine = Collected(), Quarantine()
    async with running(sim, collected, on_undecodable=quarantine):
        await eventually(lambda: any(r.mr == mr for r in collected.reports) and len(quarantine.items) == 1)


async def test_a_report_stored_during_a_freeze_is_found_by_the_quiet_sweep(
    sim_factory: SimFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modem import sms  # noqa: PLC0415

    monkeypatch.setattr(sms, "QUIET_SWEEP_S", 0.3)  # 60 s in service; the mechanism is the same
    sim = await sim_factory(report_delay_s=0.2)
    collected = Collected()
    # A sweep that meets the frozen port times out (command_timeout_s) and is tried again later.
    async with running(sim, collected, command_timeout_s=0.5) as modem:
        (sub,) = await modem.send_text(PHONE, "report during a freeze")
        sim.hang()  # the +CDSI is lost in the frozen port; the report waits in SR
        await eventually(lambda: sim.state.storage["SR"].used == 1)
        sim.unhang()
        await eventually(lambda: any(r.mr == sub.mr for r in collected.reports), timeout_s=10)
        await eventually(lambda: sim.state.storage["SR"].used == 0)


async def test_reports_are_swept_slot_by_slot_where_sr_cannot_be_listed(sim_factory: SimFactory) -> None:
    sim = await sim_factory("generic", list_sr=False)  # AT+CMGL on SR: +CMS ERROR: 302 (DWM-156)
    mr = await _send_while_dead(sim, "not listable")
    assert sim.state.storage["SR"].used == 1
    collected = Collected()
    async with running(sim, collected):
        await eventually(lambda: any(r.mr == mr for r in collected.reports))
        await eventually(lambda: sim.state.storage["SR"].used == 0)
