"""The modem simulator, byte for byte over real pseudo-terminals (no mocks, no sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from modem.pdu import Deliver, StatusReport, decode_pdu, encode_submits, join_user_data
from modem.simulator import Simulator
from modem.simulator.control import create_app
from tests.support.simulators import SimFactory

FINAL = re.compile(rb"\r\n(OK|ERROR|COMMAND NOT SUPPORT|\+CM[ES] ERROR: [^\r]*)\r\n")
DEST = "+4915112345678"


class RawPort:
    """A client on the pty: non-blocking fd served by the test's loop, reads with a deadline."""

    def __init__(self, path: Path) -> None:
        self.fd: int | None = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.buf = bytearray()
        self.closed_by_peer: OSError | str | None = None
        self._event = asyncio.Event()
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        assert self.fd is not None
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: the device went away
            self.closed_by_peer = exc
            asyncio.get_running_loop().remove_reader(self.fd)
        else:
            if data:
                self.buf += data
            else:
                self.closed_by_peer = "EOF"
                asyncio.get_running_loop().remove_reader(self.fd)
        self._event.set()

    def write(self, data: bytes) -> None:
        assert self.fd is not None
        os.write(self.fd, data)

    async def wait_for(self, pattern: bytes | re.Pattern[bytes], timeout_s: float = 2.0) -> bytes:
        """Everything up to and including the first match; consumed from the buffer."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        async with asyncio.timeout(timeout_s):
            while (m := regex.search(self.buf)) is None:
                self._event.clear()
                await self._event.wait()
        out = bytes(self.buf[: m.end()])
        del self.buf[: m.end()]
        return out

    async def command(self, cmd: str, timeout_s: float = 2.0) -> bytes:
        self.write(cmd.encode() + b"\r")
        return await self.wait_for(FINAL, timeout_s)

    async def wait_gone(self, timeout_s: float = 2.0) -> None:
        async with asyncio.timeout(timeout_s):
            while self.closed_by_peer is None:
                self._event.clear()
                await self._event.wait()

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None


@pytest.fixture
async def port(simulator: Simulator) -> AsyncIterator[RawPort]:
    client = RawPort(simulator.primary_path)
    yield client
    client.close()


async def _send_pdu(port: RawPort, hex_pdu: str, tpdu_length: int) -> bytes:
    port.write(f"AT+CMGS={tpdu_length}\r".encode())
    await port.wait_for(b"\r\n> ")
    port.write(hex_pdu.encode() + b"\x1a")
    return await port.wait_for(FINAL, 3.0)


async def _send_text(port: RawPort, text: str, *, ref: int = 1, srr: bool = True) -> list[int]:
    mrs = []
    for submit in encode_submits(DEST, text, concat_ref=ref, status_report_request=srr):
        reply = await _send_pdu(port, submit.hex(), submit.tpdu_length)
        m = re.search(rb"\+CMGS: (\d+)\r\n\r\nOK\r\n$", reply)
        assert m, reply
        mrs.append(int(m.group(1)))
    return mrs


# -- framing ---------------------------------------------------------------------------


async def test_echo_and_framing_bytes(port: RawPort) -> None:
    assert await port.command("AT") == b"AT\r\r\nOK\r\n"
    assert await port.command("AT+CSQ") == b"AT+CSQ\r\r\n+CSQ: 21,99\r\n\r\nOK\r\n"
    assert await port.command("ATE0") == b"ATE0\r\r\nOK\r\n"  # ATE0 itself is still echoed
    assert await port.command("at+cgmi") == b"\r\nQuectel\r\n\r\nOK\r\n"
    assert await port.command("AT+CMGF=0;+CNMI=2,1,0,2,0;+CNMI?") == b"\r\n+CNMI: 2,1,0,2,0\r\n\r\nOK\r\n"
    assert await port.command("AT+NOSUCH") == b"\r\nERROR\r\n"


async def test_cmee_modes(port: RawPort) -> None:
    await port.command("ATE0")
    assert await port.command("AT+CMEE=0;+CMGR=99") == b"\r\nERROR\r\n"
    assert await port.command("AT+CMEE=1;+CMGR=99") == b"\r\n+CMS ERROR: 321\r\n"
    assert await port.command("AT+CMEE=2;+CPIN=1234") == b"\r\n+CME ERROR: operation not allowed\r\n"


async def test_prompt_is_exactly_crlf_gt_space(port: RawPort) -> None:
    port.write(b"AT+CMGS=20\r")
    assert await port.wait_for(b"> ") == b"AT+CMGS=20\r\r\n> "
    port.write(b"\x1b")  # ESC aborts: OK, and nothing came between the prompt and that OK
    assert await port.wait_for(FINAL) == b"\r\nOK\r\n"
    assert port.buf == b""


# -- sending ---------------------------------------------------------------------------


async def test_submit_gets_mr_and_lands_in_inbox(simulator: Simulator, port: RawPort) -> None:
    submit = encode_submits(DEST, "hello world", concat_ref=1)[0]
    reply = await _send_pdu(port, submit.hex(), submit.tpdu_length)
    # The PDU is echoed after the prompt (ATE1), then +CMGS and the final OK.
    assert reply == submit.hex().encode() + b"\r\n+CMGS: 0\r\n\r\nOK\r\n"
    inbox = simulator.network.phone(DEST).inbox
    assert [(m.sender, m.text, m.encoding, m.parts) for m in inbox] == [
        ("+4915100000001", "hello world", "gsm7", 1)
    ]


async def test_mr_wraps_from_255_to_0(sim_factory: SimFactory) -> None:
    sim = await sim_factory(first_mr=254)
    client = RawPort(sim.primary_path)
    try:
        assert await _send_text(client, "a", srr=False) == [254]
        assert await _send_text(client, "b", srr=False) == [255]
        assert await _send_text(client, "c", srr=False) == [0]
    finally:
        client.close()


async def test_multipart_submit_is_reassembled(simulator: Simulator, port: RawPort) -> None:
    text = "".join(chr(65 + i % 26) for i in range(400))
    mrs = await _send_text(port, text, ref=42)
    assert mrs == [0, 1, 2]  # one MR per part
    [message] = simulator.network.phone(DEST).inbox
    assert (message.text, message.parts) == (text, 3)
    assert [r.mr for r in message.records] == [0, 1, 2]


@pytest.mark.parametrize("mangle", ["length", "hex"])
async def test_bad_pdu_is_cms_304(port: RawPort, mangle: str) -> None:
    submit = encode_submits(DEST, "x", concat_ref=1)[0]
    length, pdu = submit.tpdu_length, submit.hex()
    if mangle == "length":
        length += 1
    else:
        pdu = pdu[:-1] + "Z"
    reply = await _send_pdu(port, pdu, length)
    assert reply.endswith(b"\r\n+CMS ERROR: 304\r\n")


async def test_cms_error_fault_fails_next_n_submits(simulator: Simulator, port: RawPort) -> None:
    simulator.cms_error(38, count=2)
    submit = encode_submits(DEST, "x", concat_ref=1)[0]
    for _ in range(2):
        assert (await _send_pdu(port, submit.hex(), submit.tpdu_length)).endswith(b"+CMS ERROR: 38\r\n")
    assert (await _send_pdu(port, submit.hex(), submit.tpdu_length)).endswith(b"\r\n+CMGS: 2\r\n\r\nOK\r\n")


async def test_text_mode_send(simulator: Simulator, port: RawPort) -> None:
    await port.command('AT+CMGF=1;+CSCS="GSM"')
    port.write(f'AT+CMGS="{DEST}"\r'.encode())
    await port.wait_for(b"\r\n> ")
    port.write(b"plain text\x1a")
    assert (await port.wait_for(FINAL)).endswith(b"+CMGS: 0\r\n\r\nOK\r\n")
    assert simulator.network.phone(DEST).texts() == ["plain text"]


# -- status reports --------------------------------------------------------------------


async def test_routed_status_report(simulator: Simulator, port: RawPort) -> None:
    await port.command("ATE0;+CNMI=2,1,0,1,0")
    [mr] = await _send_text(port, "report me")
    urc = await port.wait_for(re.compile(rb"\r\n\+CDS: (\d+)\r\n([0-9A-F]+)\r\n"))
    m = re.search(rb"\+CDS: (\d+)\r\n([0-9A-F]+)\r\n", urc)
    assert m
    report = decode_pdu(m.group(2).decode())
    assert isinstance(report, StatusReport)
    assert (report.mr, report.recipient.number, report.status) == (mr, DEST, 0)
    assert report.tpdu_length == int(m.group(1))


async def test_stored_status_report_and_quectel_wrong_memory(sim_factory: SimFactory) -> None:
    sim = await sim_factory(cds_wrong_memory=True)
    client = RawPort(sim.primary_path)
    try:
        await client.command("ATE0;+CNMI=2,1,0,2,0")
        [mr] = await _send_text(client, "report me")
        await client.wait_for(b'\r\n+CDSI: "SM",1\r\n')  # announced as SM ...
        assert await client.command("AT+CMGR=1") == b"\r\nOK\r\n"  # ... but not there: a bare OK
        await client.command('AT+CPMS="SR"')
        reply = await client.command("AT+CMGR=1")
        pdu = reply.split(b"\r\n")[2].decode()
        report = decode_pdu(pdu)
        assert isinstance(report, StatusReport)
        assert report.mr == mr
    finally:
        client.close()


async def test_report_policy_national_fail_duplicate_reverse(simulator: Simulator, port: RawPort) -> None:
    simulator.network.set_policy(
        DEST, outcome="fail", recipient_format="national", duplicates=1, order="reverse"
    )
    await port.command("ATE0;+CNMI=2,1,0,1,0")
    mrs = await _send_text(port, "y" * 200)  # two parts
    reports = []
    for _ in range(4):
        urc = await port.wait_for(re.compile(rb"\+CDS: \d+\r\n([0-9A-F]+)\r\n"))
        report = decode_pdu(urc.split(b"\r\n")[-2].decode())
        assert isinstance(report, StatusReport)
        reports.append(report)
    assert [r.mr for r in reports] == [mrs[1], mrs[1], mrs[0], mrs[0]]
    assert {(r.recipient.number, r.recipient.toa, r.status) for r in reports} == {
        ("015112345678", 0xA1, 0x41)
    }
    assert simulator.network.phone(DEST).inbox == []  # a failed message never arrives


async def test_pending_then_final_report(simulator: Simulator, port: RawPort) -> None:
    simulator.network.set_policy(outcome="pending")
    await port.command("ATE0;+CNMI=2,1,0,1,0")
    await _send_text(port, "slow")
    statuses = []
    for _ in range(2):
        urc = await port.wait_for(re.compile(rb"\+CDS: \d+\r\n([0-9A-F]+)\r\n"))
        report = decode_pdu(urc.split(b"\r\n")[-2].decode())
        assert isinstance(report, StatusReport)
        statuses.append((report.status, report.is_final))
    assert statuses == [(0x30, False), (0x00, True)]


# -- receiving -------------------------------------------------------------------------


async def test_inject_cmti_cmgr_cmgd(simulator: Simulator, port: RawPort) -> None:
    await port.command("ATE0")
    deliveries = await simulator.inject(sender="+4917612345678", text="Hallo Welt")
    assert [(d.how, d.memory, d.index) for d in deliveries] == [("stored", "SM", 1)]
    assert await port.wait_for(b"\r\n") + await port.wait_for(b"\r\n") == b'\r\n+CMTI: "SM",1\r\n'
    reply = await port.command("AT+CMGR=1")
    m = re.fullmatch(rb"\r\n\+CMGR: 0,,(\d+)\r\n([0-9A-F]+)\r\n\r\nOK\r\n", reply)
    assert m, reply
    message = decode_pdu(m.group(2).decode())
    assert isinstance(message, Deliver)
    assert (message.sender.number, message.text, message.tpdu_length) == (
        "+4917612345678",
        "Hallo Welt",
        int(m.group(1)),
    )
    assert (await port.command("AT+CMGR=1")).startswith(b"\r\n+CMGR: 1,,")  # now read
    assert await port.command("AT+CMGD=1") == b"\r\nOK\r\n"
    assert await port.command("AT+CMGR=1") == b"\r\nOK\r\n"  # EC25: an empty slot reads as a bare OK
    assert await port.command("AT+CMGL=4") == b"\r\nOK\r\n"


async def test_inject_multipart_ucs2_out_of_order(simulator: Simulator, port: RawPort) -> None:
    text = "Привет 😀 " + "ж" * 100
    await simulator.inject(sender="Megafon", text=text, parts_order="reverse", concat_bits=16)
    reply = await port.command("ATE0;+CMGL=4")
    pdus = re.findall(rb"\+CMGL: \d+,0,,\d+\r\n([0-9A-F]+)\r\n", reply)
    parts = [decode_pdu(p.decode()) for p in pdus]
    assert all(isinstance(p, Deliver) for p in parts)
    delivers = [p for p in parts if isinstance(p, Deliver)]
    assert [p.concat.seq for p in delivers if p.concat] == [2, 1]  # stored in arrival order
    assert {p.concat.ref_bits for p in delivers if p.concat} == {16}
    assert delivers[0].sender.number == "Megafon"
    ordered = sorted(delivers, key=lambda p: p.concat.seq if p.concat else 0)
    assert join_user_data(ordered) == text


async def test_routed_cmt_with_csms1_needs_cnma(sim_factory: SimFactory) -> None:
    sim = await sim_factory(cnma_timeout_s=0.2, sc_retry_s=0.05)
    port = RawPort(sim.primary_path)
    try:
        await port.command("ATE0;+CSMS=1;+CNMI=2,2,0,1,0")
        await sim.inject(sender="+4917612345678", text="ack me")
        await port.wait_for(re.compile(rb"\+CMT: ,\d+\r\n[0-9A-F]+\r\n"))
        assert await port.command("AT+CNMA") == b"\r\nOK\r\n"
        assert await port.command("AT+CNMA") == b"\r\n+CMS ERROR: 340\r\n"  # one ack per message
        # No ack in time: RP-ERROR to the network, and the ME turns routing off (27.005 3.4.4).
        await sim.inject(sender="+4917612345678", text="nobody acks me")
        await port.wait_for(re.compile(rb"\+CMT: ,\d+\r\n[0-9A-F]+\r\n"))
        await sim.network.wait_for(lambda: any(e.kind == "rp_error" for e in sim.network.log))
        assert await port.command("AT+CNMA") == b"\r\n+CMS ERROR: 340\r\n"
        assert b"+CNMI: 2,0,0,0,0" in await port.command("AT+CNMI?")
        # The SC sends it again; with routing off it is stored without a +CMTI.
        storage = sim.state.storage["SM"]
        await sim.network.wait_for(lambda: storage.used == 1)
        assert b"nobody acks me" not in port.buf
        reply = await port.command("AT+CMGL=4")
        part = decode_pdu(re.findall(rb"\r\n([0-9A-F]{20,})\r\n", reply)[0].decode())
        assert isinstance(part, Deliver)
        assert part.text == "nobody acks me"
    finally:
        port.close()


async def test_cnma_2_refuses_and_the_network_resends(sim_factory: SimFactory) -> None:
    sim = await sim_factory(cnma_timeout_s=5.0, sc_retry_s=0.05)
    port = RawPort(sim.primary_path)
    try:
        await port.command("ATE0;+CSMS=1;+CNMI=2,1,0,1,0")
        [mr] = await _send_text(port, "report me twice")
        first = await port.wait_for(re.compile(rb"\+CDS: \d+\r\n([0-9A-F]+)\r\n"))
        assert await port.command("AT+CNMA=2") == b"\r\nOK\r\n"  # RP-ERROR: not taken
        again = await port.wait_for(re.compile(rb"\+CDS: \d+\r\n([0-9A-F]+)\r\n"))
        assert first.split(b"\r\n")[-2] == again.split(b"\r\n")[-2]
        report = decode_pdu(again.split(b"\r\n")[-2].decode())
        assert isinstance(report, StatusReport)
        assert report.mr == mr
        assert await port.command("AT+CNMA") == b"\r\nOK\r\n"
        assert b"+CNMI: 2,1,0,1,0" in await port.command("AT+CNMI?")  # an explicit refusal keeps routing
    finally:
        port.close()


async def test_reports_stored_while_nobody_reads_the_port(sim_factory: SimFactory) -> None:
    """The modem stays powered while the gateway is dead: ds=2 reports wait in SR, ds=1 ones are gone."""
    sim = await sim_factory()
    port = RawPort(sim.primary_path)
    await port.command("ATE0;+CNMI=2,1,0,2,0")
    [mr] = await _send_text(port, "while you were dead")
    port.close()  # kill -9: nobody reads the port, the announcement goes nowhere
    await sim.network.wait_for(lambda: sim.state.storage["SR"].used == 1)
    port = RawPort(sim.primary_path)
    try:
        await port.command('ATE0;+CPMS="SR"')
        reply = await port.command("AT+CMGL=4")
        report = decode_pdu(re.findall(rb"\r\n([0-9A-F]{20,})\r\n", reply)[0].decode())
        assert isinstance(report, StatusReport)
        assert report.mr == mr
    finally:
        port.close()


async def test_an_undecodable_pdu_is_stored_and_announced_like_any_other(
    simulator: Simulator, port: RawPort
) -> None:
    await port.command("ATE0;+CNMI=2,1,0,2,0")
    delivery = simulator.inject_pdu("0791947101670000040C91947161", report=False)  # truncated
    assert (delivery.how, delivery.memory) == ("stored", "SM")
    await port.wait_for(f'+CMTI: "SM",{delivery.index}\r\n'.encode())
    reply = await port.command(f"AT+CMGR={delivery.index}")
    assert b"0791947101670000040C91947161" in reply
    report = simulator.inject_pdu("0006D60B9113", report=True)
    assert (report.how, report.memory) == ("stored", "SR")
    await port.wait_for(f'+CDSI: "SM",{report.index}\r\n'.encode())  # the EC25 names SM, as ever


async def test_storage_full_holds_message_until_space(simulator: Simulator, port: RawPort) -> None:
    simulator.fill_storage("SM")
    await port.command("ATE0")
    [delivery] = await simulator.inject(sender="+4917612345678", text="waiting")
    assert delivery.how == "held"
    assert await port.command("AT+CMGD=5") == b"\r\nOK\r\n"
    await port.wait_for(b'\r\n+CMTI: "SM",5\r\n')
    assert b"+CMGR: 0,," in await port.command("AT+CMGR=5")


# -- faults ----------------------------------------------------------------------------


async def test_unplug_fails_the_client_and_replug_restores_the_path(
    simulator: Simulator, port: RawPort
) -> None:
    device_before = str(simulator.primary_path.readlink())
    await simulator.unplug()
    await port.wait_gone()
    assert not simulator.primary_path.exists()
    port.close()
    await simulator.replug()
    assert simulator.primary_path.is_symlink()
    again = RawPort(simulator.primary_path)
    try:
        # Boot URCs of a power-on, then echo is back on (factory settings).
        await again.wait_for(b"\r\n+QIND: SMS DONE\r\n")
        assert await again.command("AT") == b"AT\r\r\nOK\r\n"
    finally:
        again.close()
    assert device_before.startswith("/dev/pts/")


async def test_cfun_reset_reenumerates(simulator: Simulator, port: RawPort) -> None:
    assert await port.command("AT+CFUN=1,1") == b"AT+CFUN=1,1\r\r\nOK\r\n"
    await port.wait_gone()
    await simulator.wait_for(lambda: simulator.boots == 2 and simulator.plugged)
    again = RawPort(simulator.primary_path)
    try:
        boot = await again.wait_for(b"\r\n+QIND: SMS DONE\r\n")
        assert (
            boot == b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n\r\n+QIND: SMS DONE\r\n"
        )
        assert await again.command("AT") == b"AT\r\r\nOK\r\n"
    finally:
        again.close()


async def test_hang_then_clear(simulator: Simulator, port: RawPort) -> None:
    simulator.hang()
    port.write(b"AT\r")
    with pytest.raises(TimeoutError):
        await port.wait_for(FINAL, timeout_s=0.3)
    simulator.unhang()
    assert await port.command("AT") == b"AT\r\r\nOK\r\n"


async def test_registration_loss(simulator: Simulator, port: RawPort) -> None:
    await port.command("ATE0;+CREG=1")
    simulator.set_registration(False)
    await port.wait_for(b"\r\n+CREG: 2\r\n")
    submit = encode_submits(DEST, "x", concat_ref=1)[0]
    assert (await _send_pdu(port, submit.hex(), submit.tpdu_length)).endswith(b"\r\n+CMS ERROR: 331\r\n")
    simulator.set_registration(True)
    await port.wait_for(b"\r\n+CREG: 1\r\n")
    assert await port.command("AT+CREG?") == b"\r\n+CREG: 1,1\r\n\r\nOK\r\n"


async def test_pin_required(sim_factory: SimFactory) -> None:
    sim = await sim_factory(pin="1234")
    client = RawPort(sim.primary_path)
    try:
        await client.command("ATE0")
        assert await client.command("AT+CPIN?") == b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
        assert await client.command("AT+CMGL=4") == b"\r\n+CMS ERROR: 311\r\n"
        assert await client.command('AT+CPIN="0000"') == b"\r\n+CME ERROR: 16\r\n"
        assert await client.command('AT+CPIN="1234"') == b"\r\nOK\r\n"
        # The SMS service comes up after the unlock, announced right after the OK.
        assert await client.wait_for(b"SMS DONE\r\n") == b"\r\n+QIND: SMS DONE\r\n"
        assert await client.command("AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    finally:
        client.close()


async def test_huawei_noise_until_curc0(sim_factory: SimFactory) -> None:
    sim = await sim_factory("huawei-e3372", noise_rate=1.0)
    client = RawPort(sim.primary_path)
    try:
        reply = await client.command("AT+CSQ")
        assert reply.startswith(b"\r\n^")  # noise before the echo
        assert b"AT+CSQ\r" in reply
        assert b"\r\r\n" in reply or b"^RSSI" in reply
        assert await client.command("AT^CURC=0") != b""
        client.buf.clear()
        assert await client.command("AT+CSQ") == b"AT+CSQ\r\r\n+CSQ: 21,99\r\n\r\nOK\r\n"
        assert (await client.command("AT+WIND?")).endswith(b"\r\nCOMMAND NOT SUPPORT\r\n")
    finally:
        client.close()


async def test_sim800_quirks(sim_factory: SimFactory) -> None:
    sim = await sim_factory("sim800")
    assert sim.aux_path is None
    client = RawPort(sim.primary_path)
    try:
        await client.command("ATE0;+CMEE=1")
        assert await client.command("AT+CLAC") == b"\r\n+CME ERROR: 100\r\n"
        assert await client.command("AT+CNMI=2,1,0,2,0") == b"\r\n+CMS ERROR: 303\r\n"
        assert await client.command("AT+CGMI") == b"\r\nSIMCOM_Ltd\r\n\r\nOK\r\n"
    finally:
        client.close()


async def test_aux_port_shares_the_sim_but_not_urcs(simulator: Simulator, port: RawPort) -> None:
    assert simulator.aux_path is not None
    aux = RawPort(simulator.aux_path)
    try:
        await aux.command("ATE0")
        await port.command("ATE0")
        submit = encode_submits(DEST, "via aux", concat_ref=1)[0]
        assert (await _send_pdu(aux, submit.hex(), submit.tpdu_length)).endswith(b"+CMGS: 0\r\n\r\nOK\r\n")
        await simulator.inject(sender="+4917612345678", text="to the URC port")
        await port.wait_for(b'+CMTI: "SM",1\r\n')
        assert await aux.command("AT") == b"\r\nOK\r\n"  # no +CMTI on aux
        assert b"to" not in aux.buf
    finally:
        aux.close()


async def test_tcp_listener_serves_the_primary_port(sim_factory: SimFactory) -> None:
    sim = await sim_factory(listen=("127.0.0.1", 0))
    assert sim.tcp_address is not None
    reader, writer = await asyncio.open_connection(*sim.tcp_address)
    try:
        writer.write(b"AT+CGMM\r")
        async with asyncio.timeout(2):
            assert await reader.readuntil(b"OK\r\n") == b"AT+CGMM\r\r\nEC25\r\n\r\nOK\r\n"
    finally:
        writer.close()
        await writer.wait_closed()


async def test_control_interface(simulator: Simulator, port: RawPort) -> None:
    transport = httpx.ASGITransport(app=create_app(simulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        r = await http.post("/inject", json={"sender": "+4917612345678", "text": "via http"})
        assert r.status_code == 200
        assert r.json()[0]["how"] == "stored"
        await port.wait_for(b'+CMTI: "SM",1\r\n')
        r = await http.post("/fault", json={"name": "hang"})
        assert r.json()["hung"] == {"primary": True, "aux": True}
        r = await http.post("/fault", json={"name": "clear"})
        assert r.json()["hung"] == {"primary": False, "aux": False}
        r = await http.post("/policy", json={"number": DEST, "outcome": "fail"})
        assert r.json()["status"] == 0x41
        await _send_text(port, "logged")
        log = (await http.get("/log")).json()
        assert [e["kind"] for e in log if e["kind"] in ("inject", "submit")] == ["inject", "submit"]
        assert (await http.get(f"/phones/{DEST}/inbox")).json() == []
        assert (await http.post("/fault", json={"name": "nope"})).status_code == 400
        r = await http.post("/fault", json={"name": "pdu", "hex": "0006D60B9113", "report": True})
        assert r.status_code == 200
        assert r.json()["sim"]["storage"]["SR"]["used"] == 0  # CNMI ds=0 on this port: not kept
        assert (await http.post("/fault", json={"name": "pdu", "hex": "zz"})).status_code == 400
        state = (await http.get("/state")).json()
        assert state["sim"]["next_mr"] == 1


@pytest.mark.slow
async def test_standalone_runner_prints_ports_and_cleans_up(tmp_path: Path) -> None:
    import signal  # noqa: PLC0415
    import sys  # noqa: PLC0415

    directory = tmp_path / "standalone"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "modem.simulator",
        "--dir",
        str(directory),
        "--fast",
        "--control",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(10):
        while not (lines and lines[-1].startswith("  gammu:")):
            lines.append((await proc.stdout.readline()).decode())
    text = "".join(lines)
    assert f"primary port: {directory / 'gsmmodem'}" in text
    assert f"aux port:     {directory / 'gsmmodem-aux'}" in text
    assert "control:      http://127.0.0.1:" in text
    assert "tcp:          socket://127.0.0.1:" in text
    assert (directory / "gsmmodem").is_symlink()
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        assert await proc.wait() == 0
    assert not (directory / "gsmmodem").exists()
    assert not (directory / "gsmmodem-aux").exists()
