"""More modem models: Fibocom G510, ZTE K3565-Z (Qualcomm-based stick), Telit LE910.

Each quirk names its source (shared/reference/modem-behaviour.md, shared/modem-traces, vendor
manuals, ModemManager plugins). Importing this module registers the models in `MODELS`; the
package imports it, so `Simulator(model="zte-k3565")` and `smsgw simulate --model zte-k3565` work.
"""

from __future__ import annotations

import asyncio
import contextlib

from modem.pdu import Submit
from modem.simulator.device import (
    MODELS,
    AtFail,
    FakeModem,
    Kind,
    ModelProfile,
    handles,
    split_args,
)
from modem.simulator.variants import CommandVariants

_HEX_DIGITS = b"0123456789abcdefABCDEF"
ABORTED = 500  # "+CMGS ERROR: 500": the manual gives no code for an abort; 500 is the catch-all

FIBOCOM_G510 = ModelProfile(
    key="fibocom-g510",
    manufacturer="Fibocom",
    model="G510",
    revision="G510_V0C.00.0B",  # invented, in the vendor's style
    ati=("Fibocom", "G510", "Revision: G510_V0C.00.0B"),
    boot_urcs=(),
    cnmi_ranges=((0, 1, 2), (0, 1, 2, 3), (0, 2), (0, 1, 2), (0, 1)),
    charsets=("GSM", "IRA", "UCS2", "HEX"),
    memories=("SM", "ME", "SR"),
    aux_port=False,  # a UART module: one port
    iccid_commands=("+CCID",),
)

ZTE_K3565 = ModelProfile(
    key="zte-k3565",
    # Identity as python-gsmmodem's fakemodems record a real K3565-Z.
    manufacturer="ZTE INCORPORATED",
    model="K3565-Z",
    revision="BD_P673A2V1.0.0B09",
    ati=("Manufacturer: ZTE INCORPORATED", "Model: K3565-Z", "Revision: BD_P673A2V1.0.0B09"),
    boot_urcs=("+ZUSIMR:2",),
    # +CNMI=? advertises ds 0-2, but a set with ds=1 is refused (see cmd_cnmi).
    cnmi_ranges=((0, 1, 2), (0, 1, 2, 3), (0, 2), (0, 1, 2), (0, 1)),
    # ModemManager zte: "+ZUSIMR:2" floods "eventually fill up the device's buffers and make it
    # crash" until the host issues AT+CPMS?; the flood is modelled as periodic noise.
    noise_default=True,
    noise_urcs=(b"\r\n+ZUSIMR:2\r\n",),
    iccid_commands=("+ZGETICCID", "+CCID"),
    # python-gsmmodem (ZTE): "+CMGR: ,,27"; gammu #156 (Qualcomm DWM-156): "+CMGR: ,,26".
    variants=CommandVariants(cmgr_header="no_stat"),
)

TELIT_LE910 = ModelProfile(
    key="telit-le910",
    manufacturer="Telit",
    model="LE910C1-EU",
    revision="25.21.660",  # invented, in the vendor's style
    ati=("Telit", "LE910C1-EU", "25.21.660"),
    boot_urcs=(),
    # LE910 AT reference: +CNMI: (0-3),(0-3),(0,2),(0-2),(0,1)
    cnmi_ranges=((0, 1, 2, 3), (0, 1, 2, 3), (0, 2), (0, 1, 2), (0, 1)),
    cmee_default=0,
    iccid_commands=("+ICCID", "+CCID"),
    # ModemManager tests (HE910): "+CMGR: 0,"",50"; Telit manuals: "+CMGS: <mr>[,<scts>]" under +CSMS=1.
    variants=CommandVariants(cmgr_header="quoted_alpha", cmgs_extra="scts"),
)


class FibocomG510(FakeModem):
    """Fibocom G510: any byte from the host before the result of AT+CMGS aborts the send.

    G5/G6-family AT manual (+CMGS): "Any character sent by TE to Module before Module has
    reported a result of AT+CMGS operation, will abort AT+CMGS command execution. However, if
    SMS was already sent to network and sending operation was successful, the result of
    operation "+CMGS <mr>" will be reported"; failures are reported as "+CMGS ERROR: <err>";
    "If AT+CSCS="HEX", the SMS cannot be sent" (text mode). At the prompt only the PDU's hex digits,
    Ctrl-Z and ESC are input; any other byte aborts. The aborting byte is spent.
    """

    profile = FIBOCOM_G510
    prompt_stops = bytes(b for b in range(256) if b not in _HEX_DIGITS)

    def prompt_aborted(self, byte: int) -> AtFail:
        self._aborted(f"byte 0x{byte:02X} at the prompt")
        return AtFail("CMGS", ABORTED)

    async def submit(self, submit: Submit) -> int:
        if self.cscs == "HEX" and self.cmgf == 1:
            # Read as text mode only: in PDU mode the character set plays no part (and Gammu,
            # which selects HEX, sends in PDU mode).
            raise AtFail("CMGS", ABORTED)
        sending = asyncio.ensure_future(self.sim.submit(submit))
        interrupted = asyncio.ensure_future(self._input.wait_any())
        try:
            await asyncio.wait({sending, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            interrupted.cancel()
        if sending.done():
            # Gone out before any byte came: "+CMGS <mr>" is reported, even with a byte waiting.
            try:
                return sending.result()
            except AtFail as exc:
                if exc.kind != "CMS":
                    raise
                raise AtFail("CMGS", exc.code) from None
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        self._input.drop(1)
        self._aborted("a byte while the network was working")
        raise AtFail("CMGS", ABORTED)

    def _aborted(self, why: str) -> None:
        self.sim.cmgs_aborts += 1
        self.sim.network.record("submit_aborted", self.sim.state.own_number, result=f"AT+CMGS aborted: {why}")


class ZteK3565(FakeModem):
    """ZTE K3565-Z, a Qualcomm-based stick: +ZUSIMR flood, no ds=1, +ZDONR/+ZPASR inside AT+CMGS."""

    profile = ZTE_K3565

    @handles("+CPMS")
    def cmd_cpms(self, kind: Kind, args: str) -> list[str]:
        lines = super().cmd_cpms(kind, args)
        if kind is Kind.READ and self.sim.state.noise:
            self.sim.set_noise(False)  # ModemManager zte: AT+CPMS? stops the +ZUSIMR:2 flood
        return lines

    @handles("+CNMI")
    def cmd_cnmi(self, kind: Kind, args: str) -> list[str]:
        values = split_args(args) if kind is Kind.SET else []
        if len(values) > 3 and values[3] == "1":
            # ModemManager cnmi_sequence: "Many Qualcomm-based devices don't support <ds> of '1',
            # despite reporting they support it in the +CNMI=? response. But they do accept '2'."
            raise AtFail.cms(303)
        return super().cmd_cnmi(kind, args)

    @handles("+CSMP")
    def cmd_csmp(self, kind: Kind, args: str) -> list[str]:
        lines = super().cmd_csmp(kind, args)
        if kind is Kind.SET:
            self.sim.state.smsc = ""  # fakemodems (python-gsmmodem #8): AT+CSMP=... clears the SMSC
        return lines

    @handles("+CMGS")
    async def cmd_cmgs(self, kind: Kind, args: str) -> list[str]:
        if kind is not Kind.SET:
            return await super().cmd_cmgs(kind, args)
        # python-gsmmodem test_modem.py: "+ZDONR and +ZPASR unsolicited messages in the response",
        # between AT+CMGS and the prompt, and again before +CMGS:.
        self.noise(b'\r\n+ZDONR: "METEOR",272,3,"CS_ONLY","ROAM_OFF"\r\n')
        lines = await super().cmd_cmgs(kind, args)
        self.noise(b'\r\n+ZPASR: "UMTS"\r\n')
        return lines

    async def submit(self, submit: Submit) -> int:
        if submit.smsc is None and not self.sim.state.smsc:
            raise AtFail.cms(330)  # SMSC address unknown: the SIM's was cleared (AT+CSMP above)
        return await super().submit(submit)

    @handles("+ZPAS")
    def cmd_zpas(self, kind: Kind, args: str) -> list[str]:
        return ['+BEARTYPE: "UMTS","CS_PS"']  # fakemodems: the K3565-Z's answer to AT+ZPAS?

    @handles("+ZPINPUK")
    def cmd_zpinpuk(self, kind: Kind, args: str) -> list[str]:
        return ["+ZPINPUK: 3,10"]  # ModemManager zte: PIN and PUK retries left

    @handles("+ZGETICCID")
    def cmd_zgeticcid(self, kind: Kind, args: str) -> list[str]:
        return [f"+ZGETICCID: {self.sim.state.iccid}"]


class TelitLE910(FakeModem):
    """Telit LE910: quoted empty <alpha>, +CMGS: <mr>,<scts> under +CSMS=1, AT#CCID."""

    profile = TELIT_LE910

    @handles("#CCID")
    def cmd_hash_ccid(self, kind: Kind, args: str) -> list[str]:
        return [f"#CCID: {self.sim.state.iccid}"]


MODELS.update({"fibocom-g510": FibocomG510, "zte-k3565": ZteK3565, "telit-le910": TelitLE910})
