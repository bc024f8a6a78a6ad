"""The real modem stack (transport, AT engine, SMS operations) over pseudo-terminals against the simulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from modem import AtTimeout, CmsError, Modem, ModemState, Retry, same_subscriber
from modem.pdu import Deliver, StatusReport, join_user_data
from modem.simulator import Simulator
from tests.support.simulators import SimFactory

PHONE = "+4915112345678"


async def eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll until predicate holds; fail at the deadline (never a bare sleep)."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110  (a poll with a deadline, for state that has no event)
            await asyncio.sleep(0.005)


class Collected:
    """Callbacks that record what the modem hands over."""

    def __init__(self) -> None:
        self.delivers: list[Deliver] = []
        self.reports: list[StatusReport] = []
        self.fail_deliver = False

    async def on_deliver(self, msg: Deliver) -> None:
        if self.fail_deliver:
            raise RuntimeError("ledger unavailable")
        self.delivers.append(msg)

    async def on_report(self, report: StatusReport) -> None:
        self.reports.append(report)


@contextlib.asynccontextmanager
async def running(
    sim: Simulator, collected: Collected | None = None, **kwargs: object
) -> AsyncIterator[Modem]:
    collected = collected or Collected()
    modem = Modem(
        str(sim.primary_path),
        on_deliver=collected.on_deliver,
        on_status_report=collected.on_report,
        **kwargs,  # type: ignore[arg-type]
    )
    await modem.start()
    try:
        await modem.wait_ready(10)
        yield modem
    finally:
        await modem.stop()


async def test_initialises_and_reads_identity_and_status(simulator: Simulator) -> None:
    async with running(simulator) as modem:
        assert modem.state is ModemState.READY
        info = modem.info
        assert info.identity is not None
        assert "quectel" in info.identity.manufacturer.lower()
        assert info.identity.imei.isdigit()
        assert modem.profile.name == "quectel"
        assert info.sim == "READY"
        assert info.registration is not None
        assert info.registration.registered
        assert info.operator
        assert info.signal is not None
        assert info.signal.dbm is not None
        assert -113 <= info.signal.dbm <= -51
        assert info.storage is not None
        assert info.storage.total > 0
        # Quectel keeps reports in SR (stored, ds=2), read there whatever +CDSI says.
        assert info.cnmi == "2,1,0,2,0"
        assert info.report_recovery == "stored"


@pytest.mark.parametrize(
    "text",
    [
        "Hello from smsgw",
        "Long message " + "0123456789" * 40,  # 413 GSM-7 chars: 3 parts
        "Grüße 😀 and Привет, emoji 🎉 kept whole",  # UCS-2, astral plane
        "€" * 80 + "x" * 80,  # escapes count two: segmented without splitting one
        "😀" * 40,  # 80 UTF-16 units: two parts, never a split surrogate pair
    ],
)
async def test_sent_text_arrives_intact_at_the_phone(simulator: Simulator, text: str) -> None:
    async with running(simulator) as modem:
        submitted = await modem.send_text(PHONE, text)
        assert [s.seq for s in submitted] == list(range(1, len(submitted) + 1))
        phone = simulator.network.phone(PHONE)
        await simulator.network.wait_for(lambda: bool(phone.inbox))
        assert phone.inbox[-1].text == text
        assert phone.inbox[-1].parts == len(submitted)


async def test_status_reports_match_parts_across_mr_wrap_and_national_format(sim_factory: SimFactory) -> None:
    sim = await sim_factory(first_mr=254)
    sim.network.set_policy(PHONE, outcome="delivered", recipient_format="national")
    collected = Collected()
    async with running(sim, collected) as modem:
        submitted = await modem.send_text(PHONE, "x" * 400)  # 3 parts: MRs 254, 255, 0
        assert [s.mr for s in submitted] == [254, 255, 0]
        await eventually(lambda: len(collected.reports) == 3)
    by_mr = {r.mr: r for r in collected.reports}
    assert set(by_mr) == {254, 255, 0}
    for report in collected.reports:
        assert not report.recipient.number.startswith("+")  # the network wrote it nationally
        assert same_subscriber(report.recipient.number, PHONE)
        assert report.is_final
        assert report.is_success


async def test_intermediate_then_final_and_duplicate_reports_all_reach_the_callback(
    sim_factory: SimFactory,
) -> None:
    sim = await sim_factory()
    sim.network.set_policy(PHONE, outcome="delivered", intermediate=0x30, duplicates=1)
    collected = Collected()
    async with running(sim, collected) as modem:
        (sub,) = await modem.send_text(PHONE, "report chaos")
        await eventually(lambda: sum(r.is_final for r in collected.reports) >= 2)
    mine = [r for r in collected.reports if r.mr == sub.mr]
    assert not mine[0].is_final  # 0x20..0x3F: the SC is still trying
    assert [r.is_final for r in mine].count(True) == 2  # the final report came twice


async def test_permanent_failure_report(sim_factory: SimFactory) -> None:
    sim = await sim_factory()
    sim.network.set_policy(PHONE, outcome="fail")
    collected = Collected()
    async with running(sim, collected) as modem:
        await modem.send_text(PHONE, "to nowhere")
        await eventually(lambda: bool(collected.reports))
    assert collected.reports[0].is_final
    assert not collected.reports[0].is_success


async def test_inbound_is_deleted_only_after_the_callback_took_it(simulator: Simulator) -> None:
    collected = Collected()
    collected.fail_deliver = True
    async with running(simulator, collected) as modem:
        await simulator.inject("+4917612345678", "keep me until committed")
        storage = simulator.state.storage["SM"]
        await eventually(lambda: storage.used == 1)
        # The callback fails (ledger down): the message must stay on the SIM.
        with pytest.raises(TimeoutError):
            await eventually(lambda: storage.used == 0, timeout_s=0.5)
        collected.fail_deliver = False
        assert await modem.sweep() == 1
        assert storage.used == 0
    assert [d.text for d in collected.delivers] == ["keep me until committed"]
    assert collected.delivers[0].sender.number == "+4917612345678"


async def test_stored_messages_are_swept_at_start(simulator: Simulator) -> None:
    # Received while the gateway was down: stored on the SIM, announced to nobody.
    await simulator.inject("+4917612345678", "while you were away")
    await simulator.inject("Megafon", "alphanumeric sender")
    collected = Collected()
    async with running(simulator, collected):
        await eventually(lambda: len(collected.delivers) == 2)
    assert sorted(d.text for d in collected.delivers) == ["alphanumeric sender", "while you were away"]
    assert simulator.state.storage["SM"].used == 0


async def test_inbound_multipart_parts_out_of_order_and_unicode(simulator: Simulator) -> None:
    collected = Collected()
    text = "Ünïcödé 😀 " * 20
    async with running(simulator, collected):
        deliveries = await simulator.inject("+4917612345678", text, concat_bits=16, parts_order="reverse")
        # Every part (four here), not just the first three.
        await eventually(lambda: len(collected.delivers) >= len(deliveries))
    parts = sorted(collected.delivers, key=lambda d: d.concat.seq if d.concat else 0)
    assert all(p.concat is not None and p.concat.ref_bits == 16 for p in parts)
    assert join_user_data(parts) == text


async def test_cms_errors_are_typed_and_classified(simulator: Simulator) -> None:
    async with running(simulator) as modem:
        simulator.cms_error(38, count=1)
        with pytest.raises(CmsError) as transient:
            await modem.send_text(PHONE, "congested")
        assert transient.value.code == 38
        assert transient.value.retry is Retry.LATER
        assert transient.value.transient
        simulator.cms_error(1, count=1)
        with pytest.raises(CmsError) as permanent:
            await modem.send_text(PHONE, "unallocated")
        assert permanent.value.code == 1
        assert not permanent.value.transient
        # The fault is used up: the next send goes through.
        assert await modem.send_text(PHONE, "fine again")


@pytest.mark.slow
async def test_hung_modem_times_out_and_the_port_recovers(simulator: Simulator) -> None:
    async with running(simulator, command_timeout_s=0.3, submit_timeout_s=0.3) as modem:
        simulator.hang()
        with pytest.raises(AtTimeout):
            await modem.command("AT+CSQ")
        with pytest.raises(AtTimeout):
            await modem.command("AT+CSQ")
        # Two timeouts in a row: the port is closed and reopened, init waits for an answer.
        await eventually(lambda: modem.state is not ModemState.READY)
        simulator.unhang()
        await modem.wait_ready(10)
        assert await modem.send_text(PHONE, "after the hang")


async def test_unplug_then_replug_reopens_the_same_path(simulator: Simulator) -> None:
    async with running(simulator) as modem:
        path = Path(str(simulator.primary_path))
        await simulator.unplug()
        await eventually(lambda: modem.state is ModemState.DISCONNECTED)
        assert not path.exists()  # noqa: ASYNC240  (one stat of a symlink)
        await simulator.replug()
        await modem.wait_ready(10)
        assert modem.url == str(path)
        assert modem.info.reopens >= 1
        assert await modem.send_text(PHONE, "after replug")
        await simulator.network.wait_for(lambda: "after replug" in simulator.network.phone(PHONE).texts())


async def test_reset_reinitialises(simulator: Simulator) -> None:
    async with running(simulator) as modem:
        boots = simulator.boots
        await modem.reset()
        await eventually(lambda: simulator.boots > boots)
        await modem.wait_ready(10)
        assert modem.info.resets == 1
        assert await modem.send_text(PHONE, "after reset")


async def test_pin_is_entered_when_configured(sim_factory: SimFactory) -> None:
    sim = await sim_factory(pin="1234")
    async with running(sim, pin="1234") as modem:
        assert modem.info.sim == "READY"


async def test_pin_missing_is_reported_not_guessed(sim_factory: SimFactory) -> None:
    sim = await sim_factory(pin="1234")
    modem = Modem(str(sim.primary_path))
    await modem.start()
    try:
        await eventually(lambda: modem.state is ModemState.SIM_LOCKED)
        assert "modem.pin" in modem.info.last_error
    finally:
        await modem.stop()


async def test_huawei_noise_and_garbage_do_not_disturb_the_engine(sim_factory: SimFactory) -> None:
    sim = await sim_factory("huawei-e3372", noise=True)
    collected = Collected()
    async with running(sim, collected) as modem:
        sim.set_noise(True)
        sim.inject_garbage(b"\x00\xff\xfe+CMT: ,12\r\nZZZZ-not-hex\r\n+CDS: 3\r\n0006\r\n\x1b\x1a")
        for i in range(5):
            assert await modem.send_text(PHONE, f"through the noise {i}")
        await sim.inject("+4917612345678", "inbound through noise")
        await eventually(lambda: any(d.text == "inbound through noise" for d in collected.delivers))
    assert sim.network.phone(PHONE).texts()[-1] == "through the noise 4"


async def test_sim800_profile_routes_reports_without_stored_memory(sim_factory: SimFactory) -> None:
    sim = await sim_factory("sim800")
    collected = Collected()
    async with running(sim, collected) as modem:
        assert modem.profile.name == "simcom-sim800"
        await modem.send_text(PHONE, "sim800")
        await eventually(lambda: bool(collected.reports))
    assert collected.reports[0].is_success


async def test_engine_survives_registration_loss(simulator: Simulator) -> None:
    async with running(simulator) as modem:
        simulator.set_registration(False)
        with pytest.raises(CmsError) as exc:
            await modem.send_text(PHONE, "no network")
        assert exc.value.code == 331
        assert exc.value.transient
        simulator.set_registration(True)
        await eventually(lambda: modem.info.registration is not None and modem.info.registration.registered)
        assert await modem.send_text(PHONE, "network back")


async def test_a_client_killed_at_the_prompt_does_not_wedge_the_next_one(simulator: Simulator) -> None:
    """A gateway killed between "> " and Ctrl-Z leaves the modem in PDU input; the next start recovers."""
    import serial  # noqa: PLC0415

    def half_send() -> bytes:
        port = serial.Serial(str(simulator.primary_path), timeout=2)
        try:
            port.write(b"ATE0\r")
            port.read_until(b"OK\r\n")
            port.write(b"AT+CMGS=17\r")
            return bytes(port.read_until(b"> "))
        finally:
            port.close()  # gone without Ctrl-Z or ESC, like kill -9

    # A blocking client in a thread: the simulator answers from this test's event loop.
    assert (await asyncio.to_thread(half_send)).endswith(b"> ")
    async with running(simulator) as modem:
        assert await modem.send_text(PHONE, "after a wedged prompt")
    assert simulator.network.phone(PHONE).texts() == ["after a wedged prompt"]


async def test_port_lost_after_the_pdu_was_written_says_it_may_have_been_sent(
    sim_factory: SimFactory,
) -> None:
    from modem import TransportError  # noqa: PLC0415

    sim = await sim_factory(submit_latency_s=1.0)
    async with running(sim) as modem:
        sending = asyncio.create_task(modem.send_text(PHONE, "in flight"))
        engine = modem._engine
        await eventually(lambda: engine._pending is not None and engine._pending.echo is not None)
        await sim.unplug()  # the PDU is with the modem, +CMGS never comes back
        with pytest.raises(TransportError) as lost:
            await sending
        assert lost.value.maybe_sent
        # Before any PDU: nothing can have been sent.
        with pytest.raises(TransportError) as closed:
            await modem.send_text(PHONE, "port gone")
        assert not closed.value.maybe_sent
