"""Simulator models and answer variants, byte for byte over real pseudo-terminals.

Fibocom G510 (any byte aborts AT+CMGS), ZTE K3565-Z (Qualcomm stick quirks), Telit LE910
(quoted <alpha>, +CMGS: <mr>,<scts>), and the +CMGR/+CMGL/+CMGS wordings of real modems.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import pytest

from modem.pdu import encode_submits
from modem.simulator import Simulator
from modem.simulator.__main__ import apply_wording, build_parser
from modem.simulator.control import ControlError, apply_fault
from modem.simulator.variants import CmgrHeader
from tests.support.simulators import SimFactory

from .test_modem import eventually
from .test_simulator import RawPort

FINAL = re.compile(rb"\r\n(OK|ERROR|\+CM[ES] ERROR: [^\r]*|\+CMGS ERROR: [^\r]*)\r\n")
DEST = "+4915112345678"
SUBMIT = encode_submits(DEST, "hello", concat_ref=1)[0]


# `client(sim)`: a raw port on the simulator, closed at teardown.
PortOpener = Callable[[Simulator], RawPort]


@pytest.fixture
async def client() -> AsyncIterator[PortOpener]:
    ports: list[RawPort] = []

    def open_port(sim: Simulator) -> RawPort:
        port = RawPort(sim.primary_path)
        ports.append(port)
        return port

    yield open_port
    for port in ports:
        port.close()


async def _command(port: RawPort, cmd: str) -> bytes:
    port.write(cmd.encode() + b"\r")
    return await port.wait_for(FINAL)


async def _prompt(port: RawPort) -> None:
    port.write(f"AT+CMGS={SUBMIT.tpdu_length}\r".encode())
    await port.wait_for(b"\r\n> ")


# -- Fibocom G510 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param(SUBMIT.hex() + "\r", id="cr-after-the-pdu"),
        pytest.param(SUBMIT.hex() + "\n", id="lf-after-the-pdu"),
        pytest.param(SUBMIT.hex()[:10] + "T", id="non-hex-letter-inside-the-pdu"),
        pytest.param(SUBMIT.hex()[:10] + " ", id="space-inside-the-pdu"),
    ],
)
async def test_fibocom_stray_byte_at_the_prompt_aborts(
    sim_factory: SimFactory, client: PortOpener, typed: str
) -> None:
    sim = await sim_factory("fibocom-g510")
    port = client(sim)
    await _command(port, "ATE0")
    await _prompt(port)
    port.write(typed.encode())
    reply = await port.wait_for(FINAL)
    assert reply.endswith(b"\r\n+CMGS ERROR: 500\r\n"), reply
    assert sim.cmgs_aborts == 1
    assert sim.network.phone(DEST).inbox == []
    # The aborting byte is spent: the next command line is clean, and a clean send works.
    assert (await _command(port, "AT")).endswith(b"\r\nOK\r\n")
    await _prompt(port)
    port.write(SUBMIT.hex().encode() + b"\x1a")
    assert re.search(rb"\+CMGS: \d+\r\n\r\nOK\r\n$", await port.wait_for(FINAL))
    assert [m.text for m in sim.network.phone(DEST).inbox] == ["hello"]


async def test_fibocom_byte_while_the_network_works_aborts_the_send(
    sim_factory: SimFactory, client: PortOpener
) -> None:
    # The network takes 30 s; a byte right behind Ctrl-Z cancels the send at once.
    sim = await sim_factory("fibocom-g510", submit_latency_s=30)
    port = client(sim)
    await _command(port, "ATE0")
    await _prompt(port)
    port.write(SUBMIT.hex().encode() + b"\x1a" + b"\r")
    assert (await port.wait_for(FINAL)).endswith(b"\r\n+CMGS ERROR: 500\r\n")
    assert sim.cmgs_aborts == 1
    assert [e.kind for e in sim.network.log if e.kind.startswith("submit")] == ["submit_aborted"]
    assert sim.network.phone(DEST).inbox == []


async def test_fibocom_sent_before_the_byte_still_reports_the_mr(
    sim_factory: SimFactory, client: PortOpener
) -> None:
    # Manual: "if SMS was already sent to network ... "+CMGS <mr>" will be reported".
    sim = await sim_factory("fibocom-g510")  # zero latency: the network accepts at once
    port = client(sim)
    await _command(port, "ATE0")
    await _prompt(port)
    port.write(SUBMIT.hex().encode() + b"\x1a" + b"\r")
    assert re.search(rb"\+CMGS: \d+\r\n\r\nOK\r\n$", await port.wait_for(FINAL))
    assert sim.cmgs_aborts == 0
    assert [m.text for m in sim.network.phone(DEST).inbox] == ["hello"]


async def test_fibocom_failed_send_uses_its_own_error_form(
    sim_factory: SimFactory, client: PortOpener
) -> None:
    sim = await sim_factory("fibocom-g510")
    sim.cms_error(38)
    port = client(sim)
    await _command(port, "ATE0")
    await _prompt(port)
    port.write(SUBMIT.hex().encode() + b"\x1a")
    assert (await port.wait_for(FINAL)).endswith(b"\r\n+CMGS ERROR: 38\r\n")


async def test_other_models_take_a_cr_at_the_prompt_as_nothing(
    sim_factory: SimFactory, client: PortOpener
) -> None:
    sim = await sim_factory("quectel-ec25")
    port = client(sim)
    await _command(port, "ATE0")
    await _prompt(port)
    port.write(SUBMIT.hex().encode() + b"\r\n\x1a")
    assert re.search(rb"\+CMGS: \d+\r\n\r\nOK\r\n$", await port.wait_for(FINAL))


# -- ZTE K3565-Z ------------------------------------------------------------------------


async def test_zte_identity_and_zusimr_flood_until_cpms_query(
    sim_factory: SimFactory, client: PortOpener
) -> None:
    sim = await sim_factory("zte-k3565", noise_interval_s=0.01)
    port = client(sim)
    await port.wait_for(b"+ZUSIMR:2\r\n")
    out = await _command(port, "AT+CGMI;+CGMM;+ZPAS?")
    assert b"ZTE INCORPORATED\r\n" in out
    assert b"K3565-Z\r\n" in out
    assert b'+BEARTYPE: "UMTS","CS_PS"' in out
    assert sim.state.noise
    await _command(port, "AT+CPMS?")
    assert not sim.state.noise


async def test_zte_refuses_ds1_it_advertises_and_takes_ds2(
    sim_factory: SimFactory, client: PortOpener
) -> None:
    sim = await sim_factory("zte-k3565", noise=False)
    port = client(sim)
    await _command(port, "ATE0")
    assert b"+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)" in await _command(port, "AT+CNMI=?")
    assert (await _command(port, "AT+CNMI=2,1,0,1,0")).endswith(b"+CMS ERROR: 303\r\n")
    assert (await _command(port, "AT+CNMI=2,1,0,2,0")).endswith(b"\r\nOK\r\n")


async def test_zte_urcs_inside_cmgs_and_no_stat_in_cmgr(sim_factory: SimFactory, client: PortOpener) -> None:
    sim = await sim_factory("zte-k3565", noise=False)
    port = client(sim)
    await _command(port, "ATE0")
    port.write(f"AT+CMGS={SUBMIT.tpdu_length}\r".encode())
    before_prompt = await port.wait_for(b"\r\n> ")
    assert b'+ZDONR: "METEOR",272,3,"CS_ONLY","ROAM_OFF"' in before_prompt
    port.write(SUBMIT.hex().encode() + b"\x1a")
    reply = await port.wait_for(FINAL)
    assert re.search(rb'\+ZPASR: "UMTS"\r\n\r\n\+CMGS: \d+\r\n\r\nOK\r\n$', reply), reply
    await sim.inject(sender="+4917612345678", text="hi")
    reply = await _command(port, "AT+CMGR=1")
    assert re.search(rb"\r\n\+CMGR: ,,\d+\r\n[0-9A-F]+\r\n\r\nOK\r\n$", reply), reply


async def test_zte_csmp_clears_the_smsc(sim_factory: SimFactory, client: PortOpener) -> None:
    sim = await sim_factory("zte-k3565", noise=False)
    port = client(sim)
    await _command(port, "ATE0")
    await _command(port, "AT+CSMP=17,167,0,0")
    assert b'+CSCA: "",145' in await _command(port, "AT+CSCA?")
    await _prompt(port)
    port.write(SUBMIT.hex().encode() + b"\x1a")
    assert (await port.wait_for(FINAL)).endswith(b"+CMS ERROR: 330\r\n")


# -- Telit LE910 and the +CMGS variants -------------------------------------------------


async def test_telit_quoted_alpha_and_cmgs_scts_under_csms1(
    sim_factory: SimFactory, client: PortOpener
) -> None:
    sim = await sim_factory("telit-le910")
    port = client(sim)
    await _command(port, "ATE0")
    await sim.inject(sender="+4917612345678", text="hi")
    assert re.search(rb'\r\n\+CMGR: 0,"",\d+\r\n', await _command(port, "AT+CMGR=1"))
    await _prompt(port)
    port.write(SUBMIT.hex().encode() + b"\x1a")
    assert re.search(rb"\r\n\+CMGS: \d+\r\n\r\nOK\r\n$", await port.wait_for(FINAL))  # CSMS=0: MR only
    await _command(port, "AT+CSMS=1")
    await _prompt(port)
    port.write(SUBMIT.hex().encode() + b"\x1a")
    reply = await port.wait_for(FINAL)
    assert re.search(rb'\r\n\+CMGS: 1,"\d\d/\d\d/\d\d,\d\d:\d\d:\d\d[+-]\d\d"\r\n\r\nOK\r\n$', reply), reply


async def test_cmgs_ackpdu_variant(sim_factory: SimFactory, client: PortOpener) -> None:
    sim = await sim_factory("generic")
    sim.variants.cmgs_extra = "ackpdu"
    port = client(sim)
    await _command(port, "ATE0;+CSMS=1")
    await _prompt(port)
    port.write(SUBMIT.hex().encode() + b"\x1a")
    reply = await port.wait_for(FINAL)
    assert re.search(rb'\r\n\+CMGS: 0,"0100[0-9A-F]{14}"\r\n\r\nOK\r\n$', reply), reply


# -- +CMGR / +CMGL wordings ---------------------------------------------------------------

HEADS = [
    # The listing marks the message read (stat 1) before AT+CMGR shows it.
    ("empty_alpha", "", rb"\+CMGR: 1,,(\d+)", rb"\+CMGL: 1,0,,(\d+)"),
    ("quoted_alpha", "", rb'\+CMGR: 1,"",(\d+)', rb'\+CMGL: 1,0,"",(\d+)'),
    ("empty_alpha", "Smith, J", rb'\+CMGR: 1,"Smith, J",(\d+)', rb'\+CMGL: 1,0,"Smith, J",(\d+)'),
    ("no_alpha", "", rb"\+CMGR: 1,(\d+)", rb"\+CMGL: 1,0,(\d+)"),
    ("no_stat", "", rb"\+CMGR: ,,(\d+)", rb"\+CMGL: 1,,,(\d+)"),
    ("length_only", "", rb"\+CMGR: (\d+)", rb"\+CMGL: 1,0,(\d+)"),
]


@pytest.mark.parametrize(("style", "alpha", "cmgr", "cmgl"), HEADS)
async def test_cmgr_and_cmgl_heads(
    sim_factory: SimFactory, client: PortOpener, style: CmgrHeader, alpha: str, cmgr: bytes, cmgl: bytes
) -> None:
    sim = await sim_factory("generic")
    sim.variants.cmgr_header = style
    sim.variants.alpha = alpha
    port = client(sim)
    await _command(port, "ATE0")
    await sim.inject(sender="+4917612345678", text="hi")
    listing = await _command(port, "AT+CMGL=4")
    m = re.search(rb"\r\n" + cmgl + rb"\r\n([0-9A-F]+)\r\n", listing)
    assert m, listing
    assert int(m.group(1)) == (len(m.group(2)) // 2) - 8  # <length> counts the TPDU only
    reply = await _command(port, "AT+CMGR=1")
    assert re.search(rb"\r\n" + cmgr + rb"\r\n[0-9A-F]+\r\n", reply), reply


async def test_empty_read_bare_ok_variant(sim_factory: SimFactory, client: PortOpener) -> None:
    sim = await sim_factory("generic")
    port = client(sim)
    await _command(port, "ATE0")
    assert (await _command(port, "AT+CMGR=5")).endswith(b"+CMS ERROR: 321\r\n")
    sim.variants.empty_read = "ok"
    assert await _command(port, "AT+CMGR=5") == b"\r\nOK\r\n"
    assert await _command(port, "AT+CMGL=4") == b"\r\nOK\r\n"  # an empty list is a bare OK anyway


async def test_control_interface_sets_variants_and_stray_input(
    sim_factory: SimFactory, client: PortOpener
) -> None:
    sim = await sim_factory("fibocom-g510", submit_latency_s=30)
    await apply_fault(sim, {"name": "variants", "cmgr_header": "no_stat", "alpha": "A, B"})
    assert (sim.variants.cmgr_header, sim.variants.alpha) == ("no_stat", "A, B")
    with pytest.raises(ControlError, match="cmgr_header"):
        await apply_fault(sim, {"name": "variants", "cmgr_header": "sideways"})
    with pytest.raises(ControlError, match="unknown variant"):
        await apply_fault(sim, {"name": "variants", "colour": "red"})
    port = client(sim)
    await _command(port, "ATE0")
    await _prompt(port)
    port.write(SUBMIT.hex().encode() + b"\x1a")
    await eventually(
        lambda: any(d.endswith(b"\x1a") for way, d in sim.sessions["primary"].log if way == "rx")
    )
    await apply_fault(sim, {"name": "stray_input", "hex": "0D"})
    assert (await port.wait_for(FINAL)).endswith(b"\r\n+CMGS ERROR: 500\r\n")
    state = sim.snapshot()
    assert (state["variants"]["cmgr_header"], state["cmgs_aborts"]) == ("no_stat", 1)


async def test_command_line_picks_model_and_wording(sim_factory: SimFactory) -> None:
    args = build_parser().parse_args(
        [
            "--model",
            "zte-k3565",
            "--cmgr-header",
            "quoted_alpha",
            "--alpha",
            "Smith, J",
            "--cmgs-extra",
            "none",
        ]
    )
    assert args.model == "zte-k3565"
    sim = await sim_factory(args.model)
    assert sim.variants.cmgr_header == "no_stat"  # the model's own wording ...
    apply_wording(sim, args)
    assert (sim.variants.cmgr_header, sim.variants.alpha, sim.variants.cmgs_extra) == (
        "quoted_alpha",
        "Smith, J",
        "",
    )  # ... until the command line says otherwise
    assert sim.profile.variants.cmgr_header == "no_stat"  # the model itself is untouched
