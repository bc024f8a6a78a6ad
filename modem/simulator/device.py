"""The simulated modem: one SIM and modem state shared by two AT ports, each a `FakeModem` session.

`FakeModem` is the AT command interpreter of one port. It speaks bytes as real modems do
(modem-behaviour.md 1.1 and 1.4): echo of `cmd\\r` (ATE1, the factory default), `\\r\\n<line>\\r\\n`
framing with an empty line before the final result, `+CME ERROR`/`+CMS ERROR` per AT+CMEE, the
`\\r\\n> ` prompt of AT+CMGS with nothing after the space, the PDU echoed after it, and URCs
held back while a command runs and flushed right after its final result. Handlers are attached
with `@handles("+CMGS")`; models are subclasses carrying a `ModelProfile` (quirks as data).

`Simulator` is the whole device: SIM (PIN, storage "SM"/"ME"/"SR", MR counter), radio
(registration, operator, signal), the ports (pseudo-terminals under stable symlinks, plus an
optional TCP listener), the simulated network (`network.Network`), and the faults. After a boot
(replug, AT+CFUN=1,1) it answers `+CME ERROR: 515` for `init_busy_s` and SIM busy for
`sim_busy_s`, as real modems do; `freeze()` makes it stop answering mid-submit and come back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import inspect
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from modem.errors import PduError, describe
from modem.pdu import Address, Deliver, Encoding, StatusReport, Submit, decode_pdu, gsm7
from modem.pdu.fields import encode_timestamp
from modem.simulator.network import Network, SubmitRejected, encoding_name
from modem.simulator.pty import PtyPort, TcpPort
from modem.simulator.ussd import DCS_UCS2, OperatorAnswer, UssdService
from modem.simulator.variants import CommandVariants

CTRL_Z = 0x1A
ESC = 0x1B
PROMPT = b"\r\n> "

# 27.005 3.1 <stat> in PDU mode and its text-mode names.
REC_UNREAD, REC_READ, STO_UNSENT, STO_SENT, ALL = 0, 1, 2, 3, 4
STAT_NAMES = {0: "REC UNREAD", 1: "REC READ", 2: "STO UNSENT", 3: "STO SENT", 4: "ALL"}

# Commands that touch the SMS service: refused while the SIM is locked or still booting.
SMS_COMMANDS = frozenset(
    {"+CMGS", "+CMGR", "+CMGL", "+CMGD", "+CMGW", "+CMSS", "+CPMS", "+CNMI", "+CSCA", "+CMGF", "+CNMA"}
)
# Commands that read the SIM: `+CME ERROR: 14` (SIM busy) while it initialises after a boot.
SIM_COMMANDS = frozenset({"+CPIN", "+CLCK", "+CIMI", "+CNUM", "+CCID", "+QCCID", "+ICCID", "^ICCID"})


class Kind(enum.Enum):
    """The four forms of an extended command (27.007 4.1)."""

    EXEC = "exec"  # AT+CMD
    READ = "read"  # AT+CMD?
    TEST = "test"  # AT+CMD=?
    SET = "set"  # AT+CMD=...


class CommandLost(Exception):
    """The modem froze while executing a command: it never answers it."""


class AtFail(Exception):
    """A handler's error result; formatted per AT+CMEE by the session."""

    def __init__(
        self, kind: Literal["CME", "CMS", "CMGS", "ERROR", "UNKNOWN"], code: int | None = None
    ) -> None:
        super().__init__(f"{kind} {code}")
        self.kind = kind
        self.code = code

    @classmethod
    def cms(cls, code: int) -> AtFail:
        return cls("CMS", code)

    @classmethod
    def cme(cls, code: int) -> AtFail:
        return cls("CME", code)

    @classmethod
    def error(cls) -> AtFail:
        return cls("ERROR")


@dataclass(frozen=True)
class ModelProfile:
    """Everything that differs between modem families, as data (modem-behaviour.md 2)."""

    key: str
    manufacturer: str
    model: str
    revision: str
    ati: tuple[str, ...]
    unknown_error: Literal["ERROR", "COMMAND NOT SUPPORT", "CME100"] = "ERROR"
    boot_urcs: tuple[str, ...] = ("RDY",)
    ready_urcs: tuple[str, ...] = ()  # once the SIM is unlocked
    cnmi_ranges: tuple[tuple[int, ...], ...] = ((0, 1, 2), (0, 1, 2, 3), (0, 2), (0, 1, 2), (0, 1))
    cnmi_default: tuple[int, int, int, int, int] = (2, 1, 0, 0, 0)
    cmee_default: int = 1
    index_base: int = 1
    sr_index_base: int = 1
    cds_wrong_memory: bool = False  # Quectel: +CDSI: "SM",<i> although the report sits in "SR"
    empty_read_ok: bool = False  # Quectel: AT+CMGR of an empty slot answers a bare OK, not CMS 321
    noise_default: bool = False
    noise_urcs: tuple[bytes, ...] = ()
    charsets: tuple[str, ...] = ("GSM", "IRA", "UCS2")
    memories: tuple[str, ...] = ("SM", "ME", "SR")
    capacity: tuple[tuple[str, int], ...] = (("SM", 30), ("ME", 100), ("SR", 30))
    aux_port: bool = True
    iccid_commands: tuple[str, ...] = ("+CCID", "+QCCID", "+ICCID")
    unsupported: frozenset[str] = frozenset()
    variants: CommandVariants = field(default_factory=CommandVariants)  # +CMGR/+CMGL/+CMGS wording
    ussd_packed: bool = False  # Huawei ^USSDMODE=1 (its default): GSM-7 USSD answers as packed-septet hex


QUECTEL_EC25 = ModelProfile(
    key="quectel-ec25",
    manufacturer="Quectel",
    model="EC25",
    revision="EC25EFAR06A04M4G",
    ati=("Quectel", "EC25", "Revision: EC25EFAR06A04M4G"),
    boot_urcs=("RDY", "+CFUN: 1", "+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE"),
    ready_urcs=("+QIND: SMS DONE",),
    cnmi_ranges=((0, 1, 2), (0, 1, 2, 3), (0, 2), (0, 1, 2), (0, 1)),
    capacity=(("SM", 30), ("ME", 255), ("SR", 30)),
    iccid_commands=("+QCCID", "+CCID", "+ICCID"),
    cds_wrong_memory=True,  # firmware EC25EFAR06A10M4G..EC25EFAR08A04M4G, EG25-G (chan-quectel PR #75)
    empty_read_ok=True,
)
SIM800 = ModelProfile(
    key="sim800",
    manufacturer="SIMCOM_Ltd",
    model="SIMCOM_SIM800L",
    revision="Revision:1418B05SIM800L24",
    ati=("SIM800 R14.18",),
    unknown_error="CME100",
    boot_urcs=("RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready"),
    ready_urcs=("Call Ready", "SMS Ready"),
    cnmi_ranges=((0, 1, 2, 3), (0, 1, 2, 3), (0, 2), (0, 1), (0, 1)),  # ds 0/1 only: no +CDSI
    cmee_default=0,
    charsets=("IRA", "GSM", "UCS2", "HEX", "PCCP", "PCDN", "8859-1"),
    memories=("SM", "ME"),
    capacity=(("SM", 30), ("ME", 50), ("SR", 0)),
    aux_port=False,
    iccid_commands=("+CCID",),
    unsupported=frozenset({"+CLAC", "+CESQ", "+CEREG"}),
)
HUAWEI_E3372 = ModelProfile(
    key="huawei-e3372",
    manufacturer="huawei",
    model="E3372",
    revision="21.200.07.00.00",
    ati=(
        "Manufacturer: huawei",
        "Model: E3372",
        "Revision: 21.200.07.00.00",
        "IMEI: 861234567890123",
        "+GCAP: +CGSM,+DS,+ES",
    ),
    unknown_error="COMMAND NOT SUPPORT",
    boot_urcs=("^SIMST:1", "^SRVST:2"),
    index_base=0,  # smstools3 3.1.16: Huawei lists start from 0
    sr_index_base=0,
    noise_default=True,
    noise_urcs=(
        b"\r\n^RSSI:18\r\n",
        b'\r\n^HCSQ:"LTE",59,50,161,24\r\r\n',
        b"\r\n^MODE:7,17\r\r\n",
        b"\r\n^SRVST:2\r\n",
    ),
    iccid_commands=("^ICCID",),
    capacity=(("SM", 30), ("ME", 500), ("SR", 30)),
    ussd_packed=True,
)
GENERIC = ModelProfile(
    key="generic",
    manufacturer="smsgw",
    model="Simulated Modem",
    revision="sim-1.0",
    ati=("smsgw", "Simulated Modem", "Revision: sim-1.0"),
)

F = TypeVar("F", bound=Callable[..., Any])


def handles(*names: str) -> Callable[[F], F]:
    """Attach a method to AT commands by name ("+CMGS", "E", "&F", "^CURC")."""

    def mark(fn: F) -> F:
        fn._at_names = names  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass
class Stored:
    """One occupied slot of a message memory."""

    stat: int
    pdu: bytes  # SMSC field + TPDU, as AT+CMGR prints it

    @property
    def tpdu_length(self) -> int:
        return len(self.pdu) - 1 - self.pdu[0]


@dataclass
class Storage:
    """A message memory with numbered slots starting at `base`."""

    name: str
    capacity: int
    base: int = 1
    slots: dict[int, Stored] = field(default_factory=dict)

    @property
    def used(self) -> int:
        return len(self.slots)

    @property
    def full(self) -> bool:
        return self.used >= self.capacity

    def valid(self, index: int) -> bool:
        return self.base <= index < self.base + self.capacity

    def put(self, stored: Stored) -> int | None:
        """Store in the first free slot; None when full."""
        for index in range(self.base, self.base + self.capacity):
            if index not in self.slots:
                self.slots[index] = stored
                return index
        return None


@dataclass(frozen=True)
class RawPdu:
    """A PDU as bytes from the network, given as is (possibly one no decoder reads)."""

    pdu: bytes  # SMSC field + TPDU
    report: bool = False  # a status report (CNMI <ds> applies) rather than an SMS-DELIVER (<mt>)


@dataclass
class Delivery:
    """Where an inbound part (or a status report) went."""

    how: Literal["stored", "routed", "held", "discarded"]
    memory: str | None = None
    index: int | None = None
    pdu: str = ""


@dataclass
class SimState:
    """State shared by every port: the SIM, its storage, the radio."""

    pin: str | None
    puk: str
    own_number: str
    smsc: str
    imsi: str = "262011234567890"
    iccid: str = "89490200001234567890"
    imei: str = "861234567890123"
    next_mr: int = 0
    pin_enabled: bool = False
    sim_status: str = "READY"  # READY | SIM PIN | SIM PUK
    pin_attempts: int = 3
    cfun: int = 1
    registered: bool = True
    roaming: bool = False
    operator: str = "Telekom.de"
    operator_short: str = "TDG"
    operator_numeric: str = "26201"
    signal: int = 21
    booting: bool = False
    # Loop times until which, after a boot, every command gets +CME ERROR: 515 ("init in
    # progress", Wavecom) and SIM commands get SIM busy (+CME ERROR: 14 / +CMS ERROR: 314, ZTE).
    init_busy_until: float = 0.0
    sim_busy_until: float = 0.0
    noise: bool = False
    storage: dict[str, Storage] = field(default_factory=dict)
    smsc_toa: int = 145

    def take_mr(self) -> int:
        """TP-MR for the next submit: 8 bits, wrapping 255 -> 0 (23.040 9.2.3.6)."""
        mr = self.next_mr
        self.next_mr = (self.next_mr + 1) % 256
        return mr

    def reg_stat(self) -> int:
        """27.007 +CREG <stat>: 0 off/no SIM, 1 home, 2 searching, 5 roaming."""
        if self.cfun != 1 or self.sim_status != "READY":
            return 0
        if not self.registered:
            return 2
        return 5 if self.roaming else 1


class _Input:
    """Bytes from the client, read by the session task up to a terminator."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._event = asyncio.Event()

    def feed(self, data: bytes) -> None:
        self._buf += data
        self._event.set()

    async def wait_any(self) -> None:
        """Until at least one byte is waiting (nothing is consumed)."""
        while not self._buf:
            self._event.clear()
            await self._event.wait()

    def drop(self, count: int) -> None:
        """Discard the first `count` waiting bytes."""
        del self._buf[:count]

    def clear(self) -> None:
        self._buf.clear()

    async def read_until(self, stops: bytes) -> tuple[bytes, int]:
        while True:
            hits = [i for i in (self._buf.find(bytes((s,))) for s in stops) if i >= 0]
            if hits:
                idx = min(hits)
                data, term = bytes(self._buf[:idx]), self._buf[idx]
                del self._buf[: idx + 1]
                return data, term
            self._event.clear()
            await self._event.wait()


_EXT_START = "+^#$%*"


def split_command_line(body: str) -> list[str]:
    """The commands of one line after "AT": basic (E0, &F, S0=0) and extended (+CMGF=0, ;-joined)."""
    commands: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c in " ;":
            i += 1
            continue
        j = i + 1
        if c in _EXT_START:
            quoted = False
            while j < len(body) and (quoted or body[j] != ";"):
                if body[j] == '"':
                    quoted = not quoted
                j += 1
        elif c == "&":
            j = i + 2
            while j < len(body) and body[j].isdigit():
                j += 1
        elif c.upper() == "S" and j < len(body) and body[j].isdigit():
            while j < len(body) and (body[j].isdigit() or body[j] in "=?"):
                j += 1
        else:
            while j < len(body) and body[j].isdigit():
                j += 1
        commands.append(body[i:j])
        i = j
    return commands


def parse_command(command: str) -> tuple[str, Kind, str]:
    """'+CMGS=23' -> ('+CMGS', SET, '23'); 'E0' -> ('E', SET, '0'); '&F' -> ('&F', EXEC, '')."""
    if command[0] in _EXT_START:
        m = re.match(r"([+^#$%*][A-Za-z0-9_]+)(=\?|\?|=)?(.*)", command, re.DOTALL)
        if m is None:
            return command.upper(), Kind.EXEC, ""
        name, op, rest = m.group(1).upper(), m.group(2), m.group(3)
        kind = {"=?": Kind.TEST, "?": Kind.READ, "=": Kind.SET, None: Kind.EXEC}[op]
        return name, kind, rest.strip()
    if command[0] == "&":
        return command[:2].upper(), Kind.SET if len(command) > 2 else Kind.EXEC, command[2:]
    if command[0].upper() == "S" and len(command) > 1:
        return "S", Kind.SET, command[1:]
    return command[0].upper(), Kind.SET if len(command) > 1 else Kind.EXEC, command[1:]


def split_args(args: str) -> list[str]:
    """Comma-separated parameters; quotes kept off, empty ones as ''."""
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in args:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    out.append("".join(current).strip())
    return out


def _int(text: str, low: int = 0, high: int = 1 << 30) -> int:
    try:
        value = int(text)
    except ValueError:
        raise AtFail.error() from None
    if not low <= value <= high:
        raise AtFail.error()
    return value


def text_time(when: datetime | None) -> str:
    """27.005 text-mode time: yy/MM/dd,hh:mm:ss±zz (zz in quarter hours); '' when unknown."""
    if when is None:
        return ""
    offset = when.utcoffset()
    quarters = int(offset.total_seconds() // 900) if offset is not None else 0
    sign = "-" if quarters < 0 else "+"
    return when.strftime("%y/%m/%d,%H:%M:%S") + f"{sign}{abs(quarters):02d}"


def _ranges(values: tuple[int, ...]) -> str:
    """(0, 1, 2) -> '(0-2)', (0, 2) -> '(0,2)'."""
    if len(values) > 2 and list(values) == list(range(values[0], values[-1] + 1)):
        return f"({values[0]}-{values[-1]})"
    return "(" + ",".join(str(v) for v in values) + ")"


class FakeModem:
    """The AT interpreter of one port; shares its SIM and radio with the other port."""

    profile: ClassVar[ModelProfile] = GENERIC
    _handlers: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handlers = _collect_handlers(cls)

    def __init__(self, sim: Simulator, role: str, write: Callable[[bytes], None]) -> None:
        self.sim = sim
        self.role = role
        self._write_out = write
        self._input = _Input()
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._held_urcs: list[bytes] = []
        self._cnmi_buffer: list[bytes] = []  # +CNMI mode 0: kept in the TA
        # Routed +CMT/+CDS waiting for AT+CNMA (AT+CSMS=1): (network timer, RP-ERROR action).
        self._unacked: list[tuple[asyncio.TimerHandle, Callable[[], None]]] = []
        self.hung = False
        self.command = ""
        self.log: list[tuple[str, bytes]] = []  # (direction, bytes) for debugging, bounded
        self.reset_settings()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(role={self.role!r}, echo={self.echo}, cmgf={self.cmgf}, cnmi={self.cnmi})"
        )

    # -- lifecycle ------------------------------------------------------------------------

    def reset_settings(self) -> None:
        """Factory settings of this port (AT&F, ATZ, power-on)."""
        self.echo = True
        self.verbose = True  # ATV1
        self.quiet = False
        self.cmee = self.profile.cmee_default
        self.cmgf = 0
        self.cscs = "GSM" if "GSM" in self.profile.charsets else self.profile.charsets[0]
        self.cnmi: list[int] = list(self.profile.cnmi_default)
        self.csms = 0
        self.csmp = [17, 167, 0, 0]
        self.csdh = 0
        self.creg = 0
        self.cgreg = 0
        self.cereg = 0
        self.cops_format = 0
        self.cusd = 0  # AT+CUSD <n>: 1 = present +CUSD answers
        mem = "SM" if "SM" in self.profile.memories else self.profile.memories[0]
        self.cpms = [mem, mem, mem]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"sim-{self.role}")

    async def close(self) -> None:
        for handle, _retry in self._unacked:
            handle.cancel()
        self._unacked.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def feed(self, data: bytes) -> None:
        """Bytes from the client. A hung modem drops them."""
        self._trace("rx", data)
        if self.hung:
            return
        self._input.feed(data)

    # -- output ---------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.hung or not data:
            return
        self._trace("tx", data)
        self._write_out(data)

    def urc(self, *lines: str, sms: bool = False) -> None:
        """Send an unsolicited result; held while a command runs, and per +CNMI mode 0 for SMS URCs."""
        # Multi-line URCs (+CMT, +CDS) frame as one reply: \r\n+CDS: 25\r\n<pdu>\r\n
        data = b"\r\n" + b"".join(line.encode("latin-1", "replace") + b"\r\n" for line in lines)
        self.urc_bytes(data, sms=sms)

    def urc_bytes(self, data: bytes, *, sms: bool = False) -> None:
        if sms and self.cnmi[0] == 0:
            self._cnmi_buffer.append(data)
        elif self._busy:
            self._held_urcs.append(data)
        else:
            self.write(data)

    def noise(self, data: bytes) -> None:
        """Vendor noise: arrives whenever, even in the middle of a reply."""
        self.write(data)

    def _maybe_noise(self) -> None:
        sim = self.sim
        if sim.state.noise and self.profile.noise_urcs and sim.random.random() < sim.noise_rate:
            self.write(sim.random.choice(sim.noise_lines()))

    def _final_text(self, fail: AtFail | None) -> str:
        if fail is None:
            return "OK"
        kind, code = fail.kind, fail.code
        if kind == "UNKNOWN":
            unknown = self.profile.unknown_error
            if unknown == "CME100":
                kind, code = "CME", 100
            else:
                return unknown
        if kind == "CMGS":
            return f"+CMGS ERROR: {code}"  # Fibocom G510 manual: the form of a failed send
        if kind == "ERROR" or self.cmee == 0:
            return "ERROR"
        if self.cmee == 2 and code is not None:
            return f"+{kind} ERROR: {describe(kind, code)[0]}"
        return f"+{kind} ERROR: {code}"

    def _respond(self, lines: list[str], fail: AtFail | None) -> None:
        """Info lines then the final result: \\r\\n<l1>\\r\\n<l2>\\r\\n\\r\\nOK\\r\\n."""
        if self.verbose:
            if lines:
                self.write(b"\r\n")
                for line in lines:
                    self.write(line.encode("latin-1", "replace") + b"\r\n")
                    self._maybe_noise()
            if not self.quiet:
                self.write(b"\r\n" + self._final_text(fail).encode("ascii") + b"\r\n")
        else:
            for line in lines:
                self.write(line.encode("latin-1", "replace") + b"\r\n")
            if not self.quiet:
                code = "0" if fail is None else "4"
                self.write(code.encode() + b"\r")

    def _flush_held(self) -> None:
        held, self._held_urcs = self._held_urcs, []
        for data in held:
            self.write(data)

    def _trace(self, direction: str, data: bytes) -> None:
        self.log.append((direction, data))
        if len(self.log) > 2000:
            del self.log[:1000]

    # -- the command loop ---------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            raw, _term = await self._input.read_until(b"\r")
            line = raw.lstrip(b"\n\x1a\x1b\x00")
            self._busy = True
            try:
                self._maybe_noise()
                if self.echo:
                    self.write(line + b"\r")
                await self._execute(line.decode("latin-1").strip())
            finally:
                self._busy = False
                self._flush_held()

    async def _execute(self, text: str) -> None:
        if not text:
            return
        if len(text) < 2 or text[:2].upper() != "AT":
            return  # real modems ignore lines that do not start with AT
        lines: list[str] = []
        fail: AtFail | None = None
        self.sim.commands.append((asyncio.get_running_loop().time(), self.role, text))
        for command in split_command_line(text[2:]):
            name, kind, args = parse_command(command)
            try:
                lines.extend(await self._dispatch(name, kind, args))
            except AtFail as exc:
                fail = exc
                break
            except CommandLost:
                return  # frozen mid-command: no answer, ever
        self._maybe_noise()
        self._respond(lines, fail)

    async def _dispatch(self, name: str, kind: Kind, args: str) -> list[str]:
        attr = self._handlers.get(name)
        if attr is None or name in self.profile.unsupported:
            raise AtFail("UNKNOWN")
        busy = self.sim.busy_failure(name)
        if busy is not None:
            raise busy
        if name in SMS_COMMANDS:
            self._require_sim(sms=True)
            if self.sim.state.booting:
                raise AtFail.cms(314) if self.profile.unknown_error != "CME100" else AtFail.error()
        self.command = name  # handlers shared by several names (+CREG/+CEREG, ICCID forms) read it
        result = getattr(self, attr)(kind, args)
        if inspect.isawaitable(result):
            result = await result
        return list(result)

    def _require_sim(self, *, sms: bool = False) -> None:
        status = self.sim.state.sim_status
        if status == "SIM PIN":
            raise AtFail.cms(311) if sms else AtFail.cme(11)
        if status == "SIM PUK":
            raise AtFail.cms(316) if sms else AtFail.cme(12)

    # -- charset helpers ------------------------------------------------------------------

    def _out_text(self, text: str) -> str:
        """A string field as the current AT+CSCS writes it."""
        if self.cscs == "UCS2":
            return text.encode("utf-16-be", "surrogatepass").hex().upper()
        if self.cscs == "HEX":
            return text.encode("latin-1", "replace").hex().upper()
        return text

    def _in_text(self, text: str) -> str:
        if self.cscs in ("UCS2", "HEX"):
            try:
                raw = bytes.fromhex(text)
                return (
                    raw.decode("utf-16-be", "surrogatepass") if self.cscs == "UCS2" else raw.decode("latin-1")
                )
            except ValueError:
                raise AtFail.cms(305) from None
        return text

    # -- basic commands -------------------------------------------------------------------

    @handles("E")
    def cmd_echo(self, kind: Kind, args: str) -> list[str]:
        self.echo = _int(args or "0", 0, 1) == 1
        return []

    @handles("V")
    def cmd_verbose(self, kind: Kind, args: str) -> list[str]:
        self.verbose = _int(args or "0", 0, 1) == 1
        return []

    @handles("Q")
    def cmd_quiet(self, kind: Kind, args: str) -> list[str]:
        self.quiet = _int(args or "0", 0, 1) == 1
        return []

    @handles("Z", "&F")
    def cmd_reset_settings(self, kind: Kind, args: str) -> list[str]:
        self.reset_settings()
        return []

    @handles("&C", "&D", "&W", "X", "S", "L", "M", "&K", "+IFC", "+ICF", "+IPR", "+CLIP", "+CRC", "+CVHU")
    def cmd_accept(self, kind: Kind, args: str) -> list[str]:
        return []

    @handles("I")
    def cmd_ati(self, kind: Kind, args: str) -> list[str]:
        return list(self.profile.ati)

    @handles("+CGMI", "+GMI")
    def cmd_cgmi(self, kind: Kind, args: str) -> list[str]:
        return [] if kind is Kind.TEST else [self.profile.manufacturer]

    @handles("+CGMM", "+GMM")
    def cmd_cgmm(self, kind: Kind, args: str) -> list[str]:
        return [] if kind is Kind.TEST else [self.profile.model]

    @handles("+CGMR", "+GMR")
    def cmd_cgmr(self, kind: Kind, args: str) -> list[str]:
        return [] if kind is Kind.TEST else [self.profile.revision]

    @handles("+CGSN", "+GSN")
    def cmd_cgsn(self, kind: Kind, args: str) -> list[str]:
        return [] if kind is Kind.TEST else [self.sim.state.imei]

    @handles("+GCAP")
    def cmd_gcap(self, kind: Kind, args: str) -> list[str]:
        return ["+GCAP: +CGSM,+DS,+ES"]

    @handles("+CIMI")
    def cmd_cimi(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.TEST:
            return []
        self._require_sim()
        return [self.sim.state.imsi]

    @handles("+CCID", "+QCCID", "+ICCID", "^ICCID")
    def cmd_iccid(self, kind: Kind, args: str) -> list[str]:
        name = self.command
        if name not in self.profile.iccid_commands:
            raise AtFail("UNKNOWN")
        if kind is Kind.TEST:
            return []
        iccid = self.sim.state.iccid
        if name == "+CCID" and self.profile.key == "sim800":
            return [iccid]
        return [f"{name}: {iccid}"]

    @handles("+CNUM")
    def cmd_cnum(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.TEST:
            return []
        self._require_sim()
        number = self.sim.state.own_number
        toa = 145 if number.startswith("+") else 129
        return [f'+CNUM: "","{self._out_text(number)}",{toa}']

    @handles("+CMEE")
    def cmd_cmee(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.READ:
            return [f"+CMEE: {self.cmee}"]
        if kind is Kind.TEST:
            return ["+CMEE: (0-2)"]
        self.cmee = _int(args or "0", 0, 2)
        return []

    @handles("+CLAC")
    def cmd_clac(self, kind: Kind, args: str) -> list[str]:
        names = sorted(n for n in self._handlers if n not in self.profile.unsupported)
        return ["AT" + n for n in names]

    @handles("+CPAS")
    def cmd_cpas(self, kind: Kind, args: str) -> list[str]:
        return ["+CPAS: (0-5)"] if kind is Kind.TEST else ["+CPAS: 0"]

    @handles("+CCLK")
    def cmd_cclk(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.READ:
            return [f'+CCLK: "{text_time(datetime.now(self.sim.network.tz))}"']
        return []

    @handles("+CBC")
    def cmd_cbc(self, kind: Kind, args: str) -> list[str]:
        return ["+CBC: 0,100,4200"]

    # -- SIM ------------------------------------------------------------------------------

    @handles("+CPIN")
    def cmd_cpin(self, kind: Kind, args: str) -> list[str]:
        state = self.sim.state
        if kind is Kind.READ:
            return [f"+CPIN: {state.sim_status}"]
        if kind is Kind.TEST:
            return []
        params = split_args(args)
        if state.sim_status == "READY":
            raise AtFail.cme(3)
        if state.sim_status == "SIM PUK":
            if len(params) < 2 or params[0] != state.puk:
                raise AtFail.cme(16)
            state.pin = params[1]
        elif params[0] != state.pin:
            state.pin_attempts -= 1
            if state.pin_attempts <= 0:
                state.sim_status = "SIM PUK"
            raise AtFail.cme(16)
        state.pin_attempts = 3
        state.sim_status = "READY"
        self.sim.after_unlock()
        return []

    @handles("+CLCK")
    def cmd_clck(self, kind: Kind, args: str) -> list[str]:
        params = split_args(args)
        if kind is Kind.TEST:
            return ['+CLCK: ("SC")']
        if params[0].upper() != "SC":
            raise AtFail.cme(4)
        if len(params) > 1 and params[1] == "2":
            return [f"+CLCK: {1 if self.sim.state.pin_enabled else 0}"]
        if len(params) < 3 or params[2] != self.sim.state.pin:
            raise AtFail.cme(16)
        self.sim.state.pin_enabled = params[1] == "1"
        return []

    # -- radio ----------------------------------------------------------------------------

    @handles("+CFUN")
    def cmd_cfun(self, kind: Kind, args: str) -> list[str]:
        state = self.sim.state
        if kind is Kind.READ:
            return [f"+CFUN: {state.cfun}"]
        if kind is Kind.TEST:
            return ["+CFUN: (0,1,4),(0-1)"]
        params = split_args(args)
        fun = _int(params[0], 0, 4)
        if len(params) > 1 and params[1] == "1":
            self.sim.schedule_reset()
            return []
        self.sim.set_cfun(fun)
        return []

    @handles("+CSQ")
    def cmd_csq(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.TEST:
            return ["+CSQ: (0-31,99),(0-7,99)"]
        state = self.sim.state
        rssi = state.signal if state.cfun == 1 else 99
        return [f"+CSQ: {rssi},99"]

    @handles("+CESQ")
    def cmd_cesq(self, kind: Kind, args: str) -> list[str]:
        return ["+CESQ: 99,99,255,255,20,50"]

    def _reg_line(self, name: str, mode: int, *, query: bool) -> str:
        state = self.sim.state
        stat = state.reg_stat()
        fields = [str(stat)]
        if mode >= 2 and stat in (1, 5):
            fields += ['"1A2B"', '"01C2D3E4"', "7"]
        if query:
            fields.insert(0, str(mode))
        return f"{name}: " + ",".join(fields)

    @handles("+CREG", "+CGREG", "+CEREG")
    def cmd_creg(self, kind: Kind, args: str) -> list[str]:
        name = self.command
        attr = name[1:].lower()
        if kind is Kind.TEST:
            return [f"{name}: (0-2)"]
        if kind is Kind.READ:
            return [self._reg_line(name, getattr(self, attr), query=True)]
        setattr(self, attr, _int(args or "0", 0, 2))
        return []

    def registration_changed(self) -> None:
        """+CREG/+CGREG/+CEREG URCs for the modes this port enabled."""
        for name in ("+CREG", "+CGREG", "+CEREG"):
            if name in self.profile.unsupported:
                continue
            mode = getattr(self, name[1:].lower())
            if mode:
                self.urc(self._reg_line(name, mode, query=False))

    @handles("+COPS")
    def cmd_cops(self, kind: Kind, args: str) -> list[str]:
        state = self.sim.state
        if kind is Kind.TEST:
            return [
                f'+COPS: (2,"{state.operator}","{state.operator_short}","{state.operator_numeric}",7),'
                '(3,"Vodafone.de","Vodafone","26202",7),,(0-4),(0-2)'
            ]
        if kind is Kind.READ:
            if state.reg_stat() not in (1, 5):
                return ["+COPS: 0"]
            name = (state.operator, state.operator_short, state.operator_numeric)[self.cops_format]
            return [f'+COPS: 0,{self.cops_format},"{name}",7']
        params = split_args(args)
        mode = _int(params[0] or "0", 0, 4)
        if mode == 3 and len(params) > 1:
            self.cops_format = _int(params[1], 0, 2)
        return []

    # -- SMS configuration ----------------------------------------------------------------

    @handles("+CUSD")
    def cmd_cusd(self, kind: Kind, args: str) -> list[str]:
        """27.007 7.15: OK at once; the network's answer follows as a +CUSD URC (see ussd_answer)."""
        if kind is Kind.TEST:
            return ["+CUSD: (0-2)"]
        if kind is Kind.READ:
            return [f"+CUSD: {self.cusd}"]
        params = split_args(args)
        n = _int(params[0] or "0", 0, 2)
        if n == 2:
            self.sim.end_ussd()
            return []
        self.cusd = n
        if len(params) < 2 or not params[1]:
            return []
        self._require_sim()
        if self.sim.state.reg_stat() not in (1, 5):
            raise AtFail.cme(30)
        code = self._in_text(params[1])
        if len(code) > 182:  # 27.007: at most 182 GSM-7 characters
            raise AtFail.cme(4)
        self.sim.ussd_request(self, code)
        return []

    def ussd_answer(self, answer: OperatorAnswer) -> None:
        """Present the network's answer as the modem would: text per CSCS, or hex."""
        if self.cusd != 1:
            return
        if answer.text is None:
            self.urc(f"+CUSD: {answer.status}")
            return
        encoding = Encoding.UCS2 if answer.dcs == DCS_UCS2 else Encoding.GSM7
        if encoding is Encoding.GSM7 and self.cscs != "UCS2" and self.profile.ussd_packed:
            text = gsm7.pack(gsm7.encode(answer.text)).hex().upper()
        else:  # UCS-2 hex, or text whose line feeds stay raw inside the quotes, as operators' menus come
            text = self._body_text(answer.text, encoding)
        self.urc(f'+CUSD: {answer.status},"{text}",{answer.dcs}')

    @handles("+CMGF")
    def cmd_cmgf(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.READ:
            return [f"+CMGF: {self.cmgf}"]
        if kind is Kind.TEST:
            return ["+CMGF: (0,1)"]
        self.cmgf = _int(args or "0", 0, 1)
        return []

    @handles("+CSCS")
    def cmd_cscs(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.READ:
            return [f'+CSCS: "{self.cscs}"']
        if kind is Kind.TEST:
            return ["+CSCS: (" + ",".join(f'"{c}"' for c in self.profile.charsets) + ")"]
        value = args.strip('"').upper()
        if value not in self.profile.charsets:
            raise AtFail.cme(4)
        self.cscs = value
        return []

    @handles("+CSCA")
    def cmd_csca(self, kind: Kind, args: str) -> list[str]:
        state = self.sim.state
        if kind is Kind.READ:
            return [f'+CSCA: "{self._out_text(state.smsc)}",{state.smsc_toa}']
        if kind is Kind.TEST:
            return []
        params = split_args(args)
        number = self._in_text(params[0])
        state.smsc = number
        state.smsc_toa = (
            _int(params[1], 0, 255)
            if len(params) > 1 and params[1]
            else (145 if number.startswith("+") else 129)
        )
        return []

    @handles("+CSMS")
    def cmd_csms(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.READ:
            return [f"+CSMS: {self.csms},1,1,1"]
        if kind is Kind.TEST:
            return ["+CSMS: (0,1)"]
        self.csms = _int(args, 0, 1)
        return ["+CSMS: 1,1,1"]

    @handles("+CSMP")
    def cmd_csmp(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.READ:
            return ["+CSMP: " + ",".join(str(v) for v in self.csmp)]
        if kind is Kind.TEST:
            return []
        for i, value in enumerate(split_args(args)[:4]):
            if value:
                self.csmp[i] = _int(value, 0, 255)
        return []

    @handles("+CSDH")
    def cmd_csdh(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.READ:
            return [f"+CSDH: {self.csdh}"]
        if kind is Kind.TEST:
            return ["+CSDH: (0,1)"]
        self.csdh = _int(args or "0", 0, 1)
        return []

    @handles("+CSAS", "+CRES", "+CMMS", "+CSCB")
    def cmd_sms_settings_noop(self, kind: Kind, args: str) -> list[str]:
        return []

    @handles("+CPMS")
    def cmd_cpms(self, kind: Kind, args: str) -> list[str]:
        mems = self.profile.memories
        if kind is Kind.TEST:
            first = "(" + ",".join(f'"{m}"' for m in mems) + ")"
            rest = "(" + ",".join(f'"{m}"' for m in mems if m != "SR") + ")"
            return [f"+CPMS: {first},{rest},{rest}"]
        storage = self.sim.state.storage
        if kind is Kind.READ:
            return ["+CPMS: " + ",".join(f'"{m}",{storage[m].used},{storage[m].capacity}' for m in self.cpms)]
        wanted = [p.strip('"').upper() for p in split_args(args) if p]
        if not wanted or len(wanted) > 3:
            raise AtFail.error()
        for i, mem in enumerate(wanted):
            if mem not in mems or (i > 0 and mem == "SR"):
                raise AtFail.cms(302)
        self.cpms[: len(wanted)] = wanted
        return ["+CPMS: " + ",".join(f"{storage[m].used},{storage[m].capacity}" for m in self.cpms)]

    @handles("+CNMI")
    def cmd_cnmi(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.READ:
            return ["+CNMI: " + ",".join(str(v) for v in self.cnmi)]
        if kind is Kind.TEST:
            return ["+CNMI: " + ",".join(_ranges(r) for r in self.profile.cnmi_ranges)]
        values = split_args(args)
        if len(values) > 5:
            raise AtFail.error()
        new = list(self.cnmi)
        for i, value in enumerate(values):
            if value == "":
                continue
            number = _int(value)
            if number not in self.profile.cnmi_ranges[i]:
                raise AtFail.cms(303)
            new[i] = number
        self.cnmi = new
        if self.cnmi[0] != 0:
            buffered, self._cnmi_buffer = self._cnmi_buffer, []
            if self.cnmi[4] == 0:
                for data in buffered:
                    self.urc_bytes(data)
        return []

    @handles("+CNMA")
    def cmd_cnma(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.TEST:
            return ["+CNMA: (0-2)"]
        reply = _int(split_args(args)[0] or "0", 0, 2) if kind is Kind.SET else 0
        if self.csms != 1 or not self._unacked:
            raise AtFail.cms(340)  # no acknowledgement expected (27.005 3.2.5)
        handle, rp_error = self._unacked.pop(0)
        handle.cancel()
        if reply == 2:
            rp_error()  # the TE refused it: RP-ERROR now, the network keeps it and re-sends later
        return []

    def expect_ack(self, rp_error: Callable[[], None]) -> None:
        """AT+CSMS=1: a routed +CMT/+CDS must be acked with AT+CNMA within the network's timeout.

        Without it the ME answers RP-ERROR (the network keeps the message and re-sends it
        later) and turns routing off by setting <mt> and <ds> of +CNMI to 0 (27.005 3.4.4).
        """
        loop = asyncio.get_running_loop()

        def expire() -> None:
            self._unacked[:] = [(h, r) for h, r in self._unacked if h is not handle]
            if self.cnmi[1] in (2, 3):
                self.cnmi[1] = 0
            self.cnmi[3] = 0
            rp_error()

        handle = loop.call_later(self.sim.cnma_timeout_s, expire)
        self._unacked.append((handle, rp_error))

    # -- SMS storage ----------------------------------------------------------------------

    def _memory(self, slot: int) -> Storage:
        return self.sim.state.storage[self.cpms[slot]]

    def _format_entry(self, index: int | None, stored: Stored, *, listing: bool) -> list[str]:
        head = f"+CMGL: {index}," if listing else "+CMGR: "
        if self.cmgf == 0:
            fields = self.sim.variants.head(stored.stat, stored.tpdu_length, index=index if listing else None)
            return [f"{'+CMGL' if listing else '+CMGR'}: {fields}", stored.pdu.hex().upper()]
        stat = STAT_NAMES[stored.stat]
        try:
            message = decode_pdu(stored.pdu, smsc=True)
        except PduError:
            return [f'{head}"{stat}",,', stored.pdu.hex().upper()]
        if isinstance(message, StatusReport):
            ra = message.recipient
            return [
                f'{head}"{stat}",6,{message.mr},"{self._out_text(ra.number)}",{ra.toa},'
                f'"{text_time(message.scts)}","{text_time(message.discharge_time)}",{message.status}'
            ]
        if isinstance(message, Deliver):
            oa = message.sender
            line = f'{head}"{stat}","{self._out_text(oa.number)}",,"{text_time(message.scts)}"'
            if self.csdh:
                line += f",{oa.toa},{message.first_octet},{message.pid},{message.dcs},"
                smsc = message.smsc
                line += f'"{self._out_text(smsc.number) if smsc else ""}",{smsc.toa if smsc else 129},'
                line += str(message.tpdu_length)
            return [line, self._body_text(message.text, message.encoding)]
        da = message.destination
        return [
            f'{head}"{stat}","{self._out_text(da.number)}",',
            self._body_text(message.text, message.encoding),
        ]

    def _body_text(self, text: str, encoding: Encoding) -> str:
        # SIM800 and others print UCS-2 messages as UCS-2 hex in text mode whatever CSCS says.
        if encoding == Encoding.UCS2 or self.cscs == "UCS2":
            return text.encode("utf-16-be", "surrogatepass").hex().upper()
        return text

    @handles("+CMGR")
    def cmd_cmgr(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.TEST:
            return []
        memory = self._memory(0)
        index = _int(args)
        if not memory.valid(index):
            raise AtFail.cms(321)
        stored = memory.slots.get(index)
        if stored is None:
            if self.sim.variants.empty_read == "ok" or self.profile.empty_read_ok:
                return []  # EC25: bare OK for an empty slot (chan-quectel PR #75)
            raise AtFail.cms(321)
        lines = self._format_entry(None, stored, listing=False)
        if stored.stat == REC_UNREAD:
            stored.stat = REC_READ
        return lines

    @handles("+CMGL")
    def cmd_cmgl(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.TEST:
            if self.cmgf == 0:
                return ["+CMGL: (0-4)"]
            return ['+CMGL: ("REC UNREAD","REC READ","STO UNSENT","STO SENT","ALL")']
        arg = args.strip() or ("0" if self.cmgf == 0 else '"REC UNREAD"')
        if self.cmgf == 0:
            if not arg.isdigit():
                raise AtFail.error()
            wanted = _int(arg, 0, 4)
        else:
            names = {v: k for k, v in STAT_NAMES.items()}
            name = arg.strip('"').upper()
            if name not in names:
                raise AtFail.error()
            wanted = names[name]
        memory = self._memory(0)
        if memory.name == "SR" and not self.sim.list_sr:
            raise AtFail.cms(302)
        lines: list[str] = []
        for index in sorted(memory.slots):
            stored = memory.slots[index]
            if wanted in (ALL, stored.stat):
                lines += self._format_entry(index, stored, listing=True)
                if stored.stat == REC_UNREAD:
                    stored.stat = REC_READ
        return lines

    @handles("+CMGD")
    def cmd_cmgd(self, kind: Kind, args: str) -> list[str]:
        memory = self._memory(0)
        if kind is Kind.TEST:
            used = ",".join(str(i) for i in sorted(memory.slots))
            return [f"+CMGD: ({used}),(0-4)"]
        params = split_args(args)
        index = _int(params[0]) if params[0] else 0
        flag = _int(params[1], 0, 4) if len(params) > 1 and params[1] else 0
        if flag == 0:
            if not memory.valid(index):
                raise AtFail.cms(321)
            memory.slots.pop(index, None)
        else:
            doomed = {1: {REC_READ}, 2: {REC_READ, STO_SENT}, 3: {REC_READ, STO_SENT, STO_UNSENT}}.get(flag)
            for i in [i for i, s in memory.slots.items() if doomed is None or s.stat in doomed]:
                del memory.slots[i]
        self.sim.storage_freed()
        return []

    # -- sending --------------------------------------------------------------------------

    async def _prompt_and_read(self, *, text_mode: bool) -> tuple[bytes, bool]:
        """Send `\\r\\n> ` (unless the prompt is dropped), then read to Ctrl-Z (True) or ESC (False)."""
        if self.sim.prompt_delay_s > 0:
            await asyncio.sleep(self.sim.prompt_delay_s)
        if self.sim.faults.drop_prompt > 0:
            self.sim.faults.drop_prompt -= 1
        else:
            self.write(PROMPT)
        body = bytearray()
        while True:
            stops = b"\x1a\x1b\r" if text_mode else self.prompt_stops
            data, term = await self._input.read_until(stops)
            if self.echo:
                self.write(data)
            if term not in (CTRL_Z, ESC) and not (text_mode and term == ord("\r")):
                raise self.prompt_aborted(term)
            body += data
            if term == ord("\r"):
                body += b"\n"
                self.write(PROMPT)  # Telit: a new prompt after every CR typed in text mode
                continue
            return bytes(body), term == CTRL_Z

    def _parse_pdu(self, body: bytes, length: int) -> bytes:
        text = bytes(c for c in body if c not in b"\r\n ").decode("latin-1")
        try:
            data = bytes.fromhex(text)
        except ValueError:
            raise AtFail.cms(304) from None
        if not data or len(data) < 1 + data[0] or len(data) - 1 - data[0] != length:
            raise AtFail.cms(304)  # <n> must be the TPDU length, without the SMSC octets
        return data

    def _text_submit(self, params: list[str], body: bytes) -> Submit:
        destination = self._in_text(params[0])
        text = body.decode("latin-1")
        if self.cscs == "UCS2" or (self.csmp[3] & 0x0C) == 0x08:
            text = self._in_text(text) if self.cscs in ("UCS2", "HEX") else text
            encoding = Encoding.UCS2
        else:
            encoding = Encoding.GSM7
        fo, vp, pid = self.csmp[0], self.csmp[1], self.csmp[2]
        try:
            submit = Submit(
                destination=Address.parse(destination),
                text=text,
                encoding=encoding,
                status_report_request=bool(fo & 0x20),
                validity_relative=vp if (fo >> 3) & 0x03 == 2 else None,
                pid=pid,
            )
            submit.encode()
        except PduError:
            raise AtFail.cms(305) from None
        return submit

    @handles("+CMGS")
    async def cmd_cmgs(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.TEST:
            return []
        if kind is not Kind.SET:
            raise AtFail.error()
        params = split_args(args)
        if self.cmgf == 0:
            length = _int(params[0], 1, 255)
            body, send = await self._prompt_and_read(text_mode=False)
            if not send:
                return []
            data = self._parse_pdu(body, length)
            try:
                message = decode_pdu(data, smsc=True)
            except PduError:
                raise AtFail.cms(304) from None
            if not isinstance(message, Submit):
                raise AtFail.cms(304)
            submit = message
        else:
            body, send = await self._prompt_and_read(text_mode=True)
            if not send:
                return []
            submit = self._text_submit(params, body.rstrip(b"\n"))
        mr = await self.submit(submit)
        return [f"+CMGS: {mr}{self._cmgs_extra(submit)}"]

    # Bytes that end PDU input at the "> " prompt: Ctrl-Z sends, ESC cancels (27.005 3.5.1).
    prompt_stops: ClassVar[bytes] = b"\x1a\x1b"

    def prompt_aborted(self, byte: int) -> AtFail:
        """The answer when a byte in `prompt_stops` other than Ctrl-Z/ESC ends PDU input."""
        return AtFail.cms(304)

    async def submit(self, submit: Submit) -> int:
        """Hand the PDU to the network; a model may race this against the host (Fibocom)."""
        return await self.sim.submit(submit)

    def _cmgs_extra(self, submit: Submit) -> str:
        """',"<scts>"' or ',"<ackpdu>"' after the MR under AT+CSMS=1, as the model words it."""
        extra = self.sim.variants.cmgs_extra
        if not extra or self.csms != 1:
            return ""
        now = datetime.now(self.sim.network.tz).replace(microsecond=0)
        if extra == "scts":
            return f',"{text_time(now)}"'
        # RP-ACK user data: an SMS-SUBMIT-REPORT (23.040 9.2.2.2a) with TP-PI 00 and the SCTS.
        return f',"0100{encode_timestamp(now).hex().upper()}"'

    @handles("+CMGW")
    async def cmd_cmgw(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.TEST:
            return []
        memory = self._memory(1)
        params = split_args(args) if args else [""]
        if self.cmgf == 0:
            if kind is not Kind.SET:
                raise AtFail.error()
            length = _int(params[0], 1, 255)
            stat = _int(params[1], 0, 3) if len(params) > 1 and params[1] else STO_UNSENT
            body, save = await self._prompt_and_read(text_mode=False)
            if not save:
                return []
            data = self._parse_pdu(body, length)
        else:
            body, save = await self._prompt_and_read(text_mode=True)
            if not save:
                return []
            data = self._text_submit(params, body.rstrip(b"\n")).encode()
            stat = STO_UNSENT
        index = memory.put(Stored(stat, data))
        if index is None:
            raise AtFail.cms(322)
        return [f"+CMGW: {index}"]

    @handles("+CMSS")
    async def cmd_cmss(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.TEST:
            return []
        memory = self._memory(1)
        params = split_args(args)
        index = _int(params[0])
        stored = memory.slots.get(index)
        if stored is None:
            raise AtFail.cms(321)
        try:
            message = decode_pdu(stored.pdu, smsc=True)
        except PduError:
            raise AtFail.cms(304) from None
        if not isinstance(message, Submit):
            raise AtFail.cms(302)
        if len(params) > 1 and params[1]:
            message = Submit(
                destination=Address.parse(self._in_text(params[1])),
                text=message.text,
                encoding=message.encoding,
                data=message.data,
                concat=message.concat,
                status_report_request=message.status_report_request,
            )
        mr = await self.sim.submit(message)
        stored.stat = STO_SENT
        return [f"+CMSS: {mr}"]


def _collect_handlers(cls: type) -> dict[str, str]:
    table: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            for name in getattr(value, "_at_names", ()):
                table[name] = attr
    return table


FakeModem._handlers = _collect_handlers(FakeModem)


class GenericModem(FakeModem):
    """A plain 27.005/27.007 modem."""

    profile = GENERIC


class QuectelEC25(FakeModem):
    """Quectel EC25: two AT ports, RDY/+QIND boot, the +CDSI wrong-memory quirk on request."""

    profile = QUECTEL_EC25

    @handles("+QURCCFG")
    def cmd_qurccfg(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.READ or (kind is Kind.SET and "," not in args):
            return [f'+QURCCFG: "urcport","{"usbat" if self.sim.urc_port == "primary" else "usbmodem"}"']
        return []


class Sim800(FakeModem):
    """SIMCom SIM800: one UART, +CME ERROR: 100 for unknown commands, ds 0/1 only, "SMS Ready"."""

    profile = SIM800


class HuaweiE3372(FakeModem):
    """Huawei E3372 (stick firmware): ^RSSI/^HCSQ noise until AT^CURC=0, COMMAND NOT SUPPORT, 0-based indexes."""

    profile = HUAWEI_E3372

    @handles("^CURC")
    def cmd_curc(self, kind: Kind, args: str) -> list[str]:
        if kind is Kind.READ:
            return [f"^CURC: {1 if self.sim.state.noise else 0}"]
        if kind is Kind.TEST:
            return ["^CURC: (0-1)"]
        self.sim.set_noise(_int(args or "0", 0, 1) == 1)
        return []

    @handles("^PORTSEL")
    def cmd_portsel(self, kind: Kind, args: str) -> list[str]:
        # Which port gets URCs (0: PC UI, 1: modem); Gammu sends ^PORTSEL=1, MM ^PORTSEL=0.
        if kind is Kind.READ:
            return [f"^PORTSEL: {self.sim.portsel}"]
        if kind is Kind.TEST:
            return ["^PORTSEL: (0-1)"]
        self.sim.portsel = _int(args or "0", 0, 1)
        return []

    @handles("+CMMS")
    def cmd_cmms(self, kind: Kind, args: str) -> list[str]:
        raise AtFail.cms(500)  # gammu #138: E1752 answers AT+CMMS=2 with +CMS ERROR: 500


MODELS: dict[str, type[FakeModem]] = {
    "quectel-ec25": QuectelEC25,
    "sim800": Sim800,
    "huawei-e3372": HuaweiE3372,
    "generic": GenericModem,
}


@dataclass
class Faults:
    """Run-time switches; see Simulator's fault methods."""

    cms_errors: list[int] = field(default_factory=list)  # next submits fail with these codes
    drop_prompt: int = 0
    pin_after_reset: bool = False
    freeze_at_submit_s: float | None = None  # the next submit freezes the modem this long

    def as_dict(self) -> dict[str, Any]:
        return {
            "cms_errors": list(self.cms_errors),
            "drop_prompt": self.drop_prompt,
            "pin_after_reset": self.pin_after_reset,
            "freeze_at_submit_s": self.freeze_at_submit_s,
        }


class Simulator:
    """A simulated modem on pseudo-terminals (and optionally TCP) with its network.

    `async with Simulator(directory, model="quectel-ec25", submit_latency_s=0) as sim:` publishes
    `sim.primary_path` (and `sim.aux_path` when the model has a second port).
    """

    def __init__(
        self,
        directory: Path | str | None = None,
        model: str = "quectel-ec25",
        *,
        primary_name: str = "gsmmodem",
        aux_name: str = "gsmmodem-aux",
        listen: tuple[str, int] | str | None = None,
        prompt_delay_s: float = 0.08,
        submit_latency_s: float = 1.5,
        submit_jitter_s: float = 1.0,
        report_delay_s: float = 2.5,
        report_jitter_s: float = 2.5,
        reset_delay_s: float = 0.2,
        reenumerate_delay_s: float = 1.0,
        boot_delay_s: float = 0.5,
        ussd_delay_s: float = 1.5,
        init_busy_s: float = 1.0,
        sim_busy_s: float = 5.0,
        cnma_timeout_s: float = 5.0,
        cnma_retries: int = 6,
        sc_retry_s: float = 30.0,
        first_mr: int = 0,
        pin: str | None = None,
        puk: str = "12345678",
        own_number: str = "+4915100000001",
        smsc: str = "+491710760000",
        country_code: str = "49",
        capacity: Mapping[str, int] | None = None,
        urc_port: str = "primary",
        noise: bool | None = None,
        noise_interval_s: float = 2.0,
        noise_rate: float = 0.3,
        cds_wrong_memory: bool | None = None,
        list_sr: bool = True,
        tz: tzinfo = UTC,
        seed: int | None = None,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}: one of {', '.join(MODELS)}")
        self.model_class = MODELS[model]
        self.profile = self.model_class.profile
        self.directory = Path(directory) if directory is not None else default_directory()
        self.primary_path = self.directory / primary_name
        self.aux_path: Path | None = self.directory / aux_name if self.profile.aux_port else None
        self._listen = _parse_listen(listen)
        self.prompt_delay_s = prompt_delay_s
        self.submit_latency_s = submit_latency_s
        self._submit_overrun_s = 0.0  # learnt: how late a wait of L ends on this machine
        self.submit_jitter_s = submit_jitter_s
        self.reset_delay_s = reset_delay_s
        self.reenumerate_delay_s = reenumerate_delay_s
        self.boot_delay_s = boot_delay_s
        self.cnma_timeout_s = cnma_timeout_s  # how long the network waits for RP-ACK (AT+CNMA)
        self.cnma_retries = cnma_retries  # how often the SC re-sends after RP-ERROR
        self.sc_retry_s = sc_retry_s  # and after how long
        self._retries: set[asyncio.TimerHandle] = set()
        self.init_busy_s = init_busy_s
        self.sim_busy_s = sim_busy_s
        self.urc_port = urc_port
        self.noise_interval_s = noise_interval_s
        self.noise_rate = noise_rate
        # False: AT+CMGL refuses the SR memory, as on the D-Link DWM-156 (gammu #156); read by index.
        self.list_sr = list_sr
        self.cds_wrong_memory = (
            self.profile.cds_wrong_memory if cds_wrong_memory is None else cds_wrong_memory
        )
        self._noise_setting = self.profile.noise_default if noise is None else noise
        self.variants = replace(self.profile.variants)  # the model's wording; tests may change it
        self.cmgs_aborts = 0  # AT+CMGS sends aborted by a byte from the host (Fibocom)
        self.random = random.Random(seed)  # noqa: S311 - simulated behaviour, not secrets
        self.network = Network(
            smsc=smsc,
            country_code=country_code,
            report_delay_s=report_delay_s,
            report_jitter_s=report_jitter_s,
            tz=tz,
            seed=seed,
        )
        self.network.report_sink = self.deliver_report
        self.network.on_event = self._notify
        sizes = dict(self.profile.capacity)
        sizes.update(capacity or {})
        self.state = SimState(pin=pin, puk=puk, own_number=own_number, smsc=smsc, next_mr=first_mr % 256)
        self.state.pin_enabled = pin is not None
        for name, size in sizes.items():
            base = self.profile.sr_index_base if name == "SR" else self.profile.index_base
            self.state.storage[name] = Storage(name, size, base)
        self.faults = Faults()
        self.sessions: dict[str, FakeModem] = {}
        self._ports: dict[str, PtyPort] = {}
        self._tcp: TcpPort | None = None
        self.plugged = False
        self.boots = 0
        self._held: list[Deliver | StatusReport | RawPdu] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._noise_task: asyncio.Task[None] | None = None
        self._changed: asyncio.Event | None = None
        self._started = False
        self.portsel = 0  # Huawei ^PORTSEL, reported only
        self.frozen = False
        self.ussd = UssdService(delay_s=ussd_delay_s)
        self._ussd_menu = False  # the network waits for a reply to its menu
        self._ussd_timer: asyncio.TimerHandle | None = None
        # (loop time, port, command line) of every AT line executed: what a fault cost the modem.
        self.commands: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=10000)

    def __repr__(self) -> str:
        return f"Simulator(model={self.profile.key!r}, primary={str(self.primary_path)!r}, plugged={self.plugged})"

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Publish the ports; the modem is already on (no boot URCs, as for a modem booted long ago)."""
        self._changed = asyncio.Event()
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._listen is not None:
            host, port = self._listen
            self._tcp = TcpPort(host, port, lambda data: self._feed(self.urc_port_for_tcp, data))
            await self._tcp.open()
        self._started = True
        await self._power_on(boot_urcs=False)

    async def stop(self) -> None:
        """Close every port and timer; the symlinks disappear."""
        self._started = False
        for handle in self._retries:
            handle.cancel()
        self._retries.clear()
        self.end_ussd()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._power_off()
        if self._tcp is not None:
            await self._tcp.close()
            self._tcp = None
        self.network.close()

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        return self._tcp.address if self._tcp is not None else None

    @property
    def urc_port_for_tcp(self) -> str:
        return "primary"

    def roles(self) -> list[str]:
        return ["primary", "aux"] if self.profile.aux_port else ["primary"]

    async def _power_on(self, *, boot_urcs: bool) -> None:
        state = self.state
        state.cfun = 1
        state.sim_status = "SIM PIN" if state.pin_enabled else "READY"
        state.pin_attempts = 3
        state.noise = self._noise_setting
        state.booting = boot_urcs and self.boot_delay_s > 0
        if boot_urcs:  # a boot (replug, AT+CFUN=1,1), not a modem that was on long before we came
            now = asyncio.get_running_loop().time()
            state.init_busy_until = now + self.init_busy_s
            state.sim_busy_until = now + self.sim_busy_s
        for role in self.roles():
            session = self.model_class(self, role, self._writer(role))
            self.sessions[role] = session
            session.start()
            link = self.aux_path if role == "aux" and self.aux_path is not None else self.primary_path
            port = PtyPort(link, self._reader(role))
            port.open()
            self._ports[role] = port
        if self._tcp is not None:
            self._tcp.accepting = True
        self.plugged = True
        self.boots += 1
        if state.noise:
            self._start_noise()
        if boot_urcs:
            self._spawn(self._boot())
        else:
            self._flush_held()
        self._notify()

    async def _boot(self) -> None:
        if self.boot_delay_s > 0:
            await asyncio.sleep(self.boot_delay_s)
        self.state.booting = False
        session = self.sessions.get(self.urc_port)
        if session is None:
            return
        locked = self.state.sim_status != "READY"
        for line in self.profile.boot_urcs:
            if locked and line in self.profile.ready_urcs:
                continue
            session.urc(f"+CPIN: {self.state.sim_status}" if line == "+CPIN: READY" else line)
        self._flush_held()

    async def _power_off(self) -> None:
        self.end_ussd()
        self.plugged = False
        self._stop_noise()
        for port in self._ports.values():
            port.close()
        self._ports.clear()
        if self._tcp is not None:
            self._tcp.accepting = False
            self._tcp.drop_connection()
        for session in self.sessions.values():
            await session.close()
        self.sessions.clear()
        self._notify()

    def _writer(self, role: str) -> Callable[[bytes], None]:
        def write(data: bytes) -> None:
            port = self._ports.get(role)
            if port is not None:
                port.write(data)
            if self._tcp is not None and role == self.urc_port_for_tcp:
                self._tcp.write(data)

        return write

    def _reader(self, role: str) -> Callable[[bytes], None]:
        def read(data: bytes) -> None:
            self._feed(role, data)

        return read

    def _feed(self, role: str, data: bytes) -> None:
        session = self.sessions.get(role)
        if session is not None:
            session.feed(data)

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Wait until predicate() holds; re-checked on every plug/boot change and network log entry."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                if self._changed is None:
                    self._changed = asyncio.Event()
                self._changed.clear()
                await self._changed.wait()

    # -- faults ---------------------------------------------------------------------------

    async def unplug(self) -> None:
        """The USB device vanishes: ptys closed (clients get EIO), symlinks removed."""
        if self.plugged:
            await self._power_off()

    async def replug(self) -> None:
        """The device comes back under the same symlinks (new pty), as after power-on, with boot URCs."""
        if not self.plugged:
            await self._power_on(boot_urcs=True)

    def schedule_reset(self) -> None:
        """AT+CFUN=1,1: OK, then the port disappears and re-enumerates, then boot URCs."""

        async def reset() -> None:
            # The OK leaves the UART before the modem resets; a client that does not read
            # within a second loses it, as with a real modem.
            for port in list(self._ports.values()):
                await port.drain()
            await asyncio.sleep(self.reset_delay_s)
            await self.unplug()
            await asyncio.sleep(self.reenumerate_delay_s)
            if self.faults.pin_after_reset and self.state.pin is not None:
                self.state.pin_enabled = True
            await self.replug()

        self._spawn(reset())

    def hang(self, port: str | None = None) -> None:
        """The port(s) stop answering anything (input and URCs dropped) until unhang()."""
        for role, session in self.sessions.items():
            if port in (None, role):
                session.hung = True

    def unhang(self, port: str | None = None) -> None:
        for role, session in self.sessions.items():
            if port in (None, role):
                session.hung = False
                session._input.clear()

    def freeze(self, seconds: float, *, mid_submit: bool = True) -> None:
        """The modem stops answering on every port for `seconds`, then answers again.

        With `mid_submit` the freeze begins when the next AT+CMGS has its PDU: that command is
        lost (no +CMGS, no error, and the network never gets the part). URCs due meanwhile are
        held and come after the thaw, as the network retries a report the radio never acked.
        The network log gets a `freeze` and a `thaw` entry with their times.
        """
        if mid_submit:
            self.faults.freeze_at_submit_s = seconds
        else:
            self._freeze(seconds)

    def _freeze(self, seconds: float) -> None:
        self.frozen = True
        self.hang()
        self.network.record("freeze", self.state.own_number, result=f"{seconds:g} s")

        async def thaw() -> None:
            await asyncio.sleep(seconds)
            self.thaw()

        self._spawn(thaw())

    def thaw(self) -> None:
        """End a freeze: the modem answers again (input typed meanwhile was lost)."""
        if not self.frozen:
            return
        self.frozen = False
        self.unhang()
        self.network.record("thaw", self.state.own_number)
        self._flush_held()

    def boot_busy(self, *, init_busy_s: float | None = None, sim_busy_s: float | None = None) -> None:
        """How long the next boots answer +CME ERROR: 515 to everything / SIM busy to SIM commands."""
        if init_busy_s is not None:
            self.init_busy_s = init_busy_s
        if sim_busy_s is not None:
            self.sim_busy_s = sim_busy_s

    def busy_failure(self, name: str) -> AtFail | None:
        """The error a command gets while the modem or its SIM is still starting, if any."""
        state = self.state
        now = asyncio.get_running_loop().time()
        if now < state.init_busy_until:
            return AtFail.cme(515)
        if now < state.sim_busy_until:
            if name in SMS_COMMANDS:
                return AtFail.cms(314)
            if name in SIM_COMMANDS:
                return AtFail.cme(14)
        return None

    def cms_error(self, code: int, count: int = 1) -> None:
        """The next `count` submits fail with +CMS ERROR: code (after the submit latency)."""
        self.faults.cms_errors.extend([code] * count)

    def drop_prompt(self, count: int = 1) -> None:
        """The next `count` AT+CMGS/CMGW get no `> ` prompt (the modem still waits for the PDU)."""
        self.faults.drop_prompt += count

    def pin_after_reset(self, enabled: bool = True) -> None:
        """After the next reset/replug the SIM asks for its PIN (needs a PIN configured)."""
        self.faults.pin_after_reset = enabled
        if self.state.pin is None:
            self.state.pin = "1234"
        if enabled:
            self.state.pin_enabled = True

    def set_registration(self, registered: bool, *, roaming: bool = False) -> None:
        """Lose or regain the network; +CREG/+CGREG/+CEREG URCs where enabled."""
        self.state.registered = registered
        self.state.roaming = roaming
        for session in self.sessions.values():
            session.registration_changed()
        self.network.record(
            "registration", self.state.own_number, result="registered" if registered else "lost"
        )
        if registered:
            self._flush_held()

    def set_cfun(self, fun: int) -> None:
        before = self.state.reg_stat()
        self.state.cfun = fun
        if self.state.reg_stat() != before:
            for session in self.sessions.values():
                session.registration_changed()
        if fun == 1:
            self._flush_held()

    def set_noise(self, enabled: bool) -> None:
        """Vendor noise (Huawei ^RSSI/^HCSQ/^MODE), periodic and interleaved with replies."""
        self.state.noise = enabled
        if enabled:
            self._start_noise()
        else:
            self._stop_noise()

    def noise_lines(self) -> tuple[bytes, ...]:
        return self.profile.noise_urcs or HUAWEI_E3372.noise_urcs

    def fill_storage(self, memory: str = "SM") -> None:
        """Fill a memory with read filler messages, as a SIM nobody empties."""
        storage = self.state.storage[memory]
        n = 0
        while not storage.full:
            n += 1
            part = self.network.build_delivers("+4900000000", f"filler {n}")[0]
            storage.put(Stored(REC_READ, part.encode()))

    def stray_input(self, data: bytes = b"\r", port: str = "primary") -> None:
        """Bytes reach the modem as if the host had written them (a glitch on the host's TX line)."""
        self._feed(port, data)

    def inject_garbage(self, data: bytes | None = None, port: str = "primary") -> None:
        """Line noise on the wire (a brown-out, a baud glitch)."""
        session = self.sessions.get(port)
        if session is not None:
            session.noise(data if data is not None else bytes(self.random.randrange(256) for _ in range(8)))

    def clear_faults(self) -> None:
        self.faults = Faults()
        self.thaw()
        self.unhang()
        if not self.state.registered:
            self.set_registration(True)

    # -- submits and reports --------------------------------------------------------------

    async def submit(self, submit: Submit) -> int:
        """A PDU left the modem: after the latency, the network accepts it or an error comes back."""
        state = self.state
        if state.reg_stat() not in (1, 5):
            raise AtFail.cms(331)
        if self.faults.freeze_at_submit_s is not None:
            seconds, self.faults.freeze_at_submit_s = self.faults.freeze_at_submit_s, None
            self._freeze(seconds)
            raise CommandLost
        latency = self.submit_latency_s
        if self.submit_jitter_s > 0:
            latency += self.random.uniform(0, self.submit_jitter_s)
        loop = asyncio.get_running_loop()
        started = loop.time()
        if latency > 0:
            # The configured latency is Ctrl-Z to +CMGS, all in: our own work after the wait and
            # the event loop's timer lateness are learnt and taken off the wait.
            await asyncio.sleep(max(0.0, latency - self._submit_overrun_s))
        if state.reg_stat() not in (1, 5):
            raise AtFail.cms(331)
        if self.faults.cms_errors:
            code = self.faults.cms_errors.pop(0)
            mr = state.take_mr()
            self.network.record(
                "submit_rejected",
                self.network.normalise(submit.destination.number),
                mr=mr,
                text=submit.text,
                encoding=encoding_name(submit.encoding),
                result=f"+CMS ERROR: {code} (fault)",
            )
            raise AtFail.cms(code)
        mr = state.take_mr()
        try:
            self.network.accept(state.own_number, submit, mr)
        except SubmitRejected as exc:
            raise AtFail.cms(exc.code) from None
        self._learn_overrun(loop, started, latency)
        self.ussd.charge()
        return mr

    def _learn_overrun(self, loop: asyncio.AbstractEventLoop, started: float, latency: float) -> None:
        # How much longer than `latency` this submit took; a small gain keeps jitter from oscillating.
        if latency > 0:
            error = (loop.time() - started) - latency
            self._submit_overrun_s = min(latency / 2, max(0.0, self._submit_overrun_s + 0.2 * error))

    # -- USSD ---------------------------------------------------------------------------

    def ussd_request(self, session: FakeModem, code: str) -> None:
        """A USSD string left the modem: the operator answers after `ussd.delay_s`, or never if silent."""
        self.end_ussd()
        in_menu, self._ussd_menu = self._ussd_menu, False
        if self.ussd.silent:
            return
        answer = self.ussd.answer(code, in_menu=in_menu and not code.startswith(("*", "#")))

        def fire() -> None:
            self._ussd_timer = None
            self._ussd_menu = answer.status == 1
            self.network.record("ussd", self.state.own_number, text=code, result=f"+CUSD: {answer.status}")
            session.ussd_answer(answer)

        self._ussd_timer = asyncio.get_running_loop().call_later(max(0.0, self.ussd.delay_s), fire)

    def end_ussd(self) -> None:
        """AT+CUSD=2 or a new request: an open session or an answer still on its way is dropped."""
        if self._ussd_timer is not None:
            self._ussd_timer.cancel()
            self._ussd_timer = None
        self._ussd_menu = False

    def _urc_session(self) -> FakeModem | None:
        if not self.plugged or self.state.booting or self.frozen:
            return None
        session = self.sessions.get(self.urc_port) or self.sessions.get("primary")
        if session is None or self.state.reg_stat() not in (1, 5):
            return None
        return session

    def deliver_report(self, report: StatusReport | RawPdu, *, attempt: int = 0) -> Delivery:
        """A status report reaches the modem: routed (+CDS), stored (+CDSI) or dropped, per CNMI <ds>."""
        session = self._urc_session()
        pdu = report.pdu if isinstance(report, RawPdu) else report.encode()
        text = pdu.hex().upper()
        if session is None:
            self._held.append(report)
            return Delivery("held", pdu=text)
        ds = session.cnmi[3]
        if ds == 1:
            if session.cmgf == 0 or isinstance(report, RawPdu):
                session.urc(f"+CDS: {len(pdu) - 1 - pdu[0]}", text, sms=True)
            else:
                ra = report.recipient
                session.urc(
                    f'+CDS: 6,{report.mr},"{ra.number}",{ra.toa},"{text_time(report.scts)}",'
                    f'"{text_time(report.discharge_time)}",{report.status}',
                    sms=True,
                )
            self._expect_ack(session, lambda: self.deliver_report(report, attempt=attempt + 1), attempt)
            return Delivery("routed", pdu=text)
        if ds == 2 and "SR" in self.state.storage:
            storage = self.state.storage["SR"]
            index = storage.put(Stored(REC_UNREAD, pdu))
            if index is None:
                self._held.append(report)
                return Delivery("held", pdu=text)
            memory = "SM" if self.cds_wrong_memory else "SR"
            session.urc(f'+CDSI: "{memory}",{index}', sms=True)
            return Delivery("stored", "SR", index, text)
        # ds=0 (also after a missed +CNMA turned routing off): the ME acknowledges the report
        # to the network and nobody ever sees it (what real MEs do here is unverified).
        number = self.state.own_number if isinstance(report, RawPdu) else report.recipient.number
        mr = None if isinstance(report, RawPdu) else report.mr
        self.network.record("report_discarded", number, mr=mr, result="CNMI ds=0")
        return Delivery("discarded", pdu=text)

    def _expect_ack(self, session: FakeModem, redeliver: Callable[[], object], attempt: int) -> None:
        if session.csms != 1:
            return

        def rp_error() -> None:
            again = attempt < self.cnma_retries
            self.network.record(
                "rp_error",
                self.state.own_number,
                result=f"no +CNMA: the SC re-sends in {self.sc_retry_s:g} s"
                if again
                else "no +CNMA: SC gave up",
            )
            if again:
                self._after(self.sc_retry_s, redeliver)

        session.expect_ack(rp_error)

    def _after(self, delay_s: float, action: Callable[[], object]) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._retries.discard(handle)
            self.network.record("retransmit", self.state.own_number, result="SC re-sends after RP-ERROR")
            action()

        handle = loop.call_later(max(0.0, delay_s), fire)
        self._retries.add(handle)

    def inject_pdu(self, pdu: bytes | str, *, report: bool = False) -> Delivery:
        """A raw PDU (SMSC field + TPDU) arrives as if from the network, decodable or not.

        Goes the way a received SMS (report=False) or a status report (report=True) would:
        stored and announced, or routed, per the session's +CNMI. For PDUs no decoder can read.
        """
        raw = bytes.fromhex(pdu) if isinstance(pdu, str) else pdu
        if not raw:
            raise ValueError("a PDU has at least its SMSC length octet")
        self.network.record("inject_pdu", self.state.own_number, result=raw.hex().upper())
        item = RawPdu(raw, report)
        return self.deliver_report(item) if report else self.deliver_inbound(item)

    async def inject(
        self,
        sender: str,
        text: str,
        *,
        encoding: str | None = None,
        concat_bits: int = 8,
        parts_order: list[int] | str | None = None,
        smsc: str | list[str] | None = None,
        scts: datetime | None = None,
        ref: int | None = None,
    ) -> list[Delivery]:
        """An SMS from `sender` arrives: split by the codec, parts delivered in the given order
        (a list may name only some parts: inject the rest later with the same `ref`)."""
        parts = self.network.build_delivers(
            sender, text, encoding=encoding, concat_bits=concat_bits, smsc=smsc, scts=scts, ref=ref
        )
        order = list(range(1, len(parts) + 1))
        if parts_order == "reverse":
            order.reverse()
        elif parts_order == "shuffle":
            self.random.shuffle(order)
        elif isinstance(parts_order, list):
            order = list(parts_order)
            if not all(1 <= seq <= len(parts) for seq in order):
                raise ValueError(f"parts_order {order}: the text has parts 1 to {len(parts)}")
        self.network.record(
            "inject",
            sender,
            text=text,
            encoding=encoding_name(parts[0].encoding),
            result=f"{len(parts)} part(s), order {order}",
        )
        return [self.deliver_inbound(parts[seq - 1]) for seq in order]

    def deliver_inbound(self, part: Deliver | RawPdu, *, attempt: int = 0) -> Delivery:
        """One SMS-DELIVER reaches the modem: stored (+CMTI) or routed (+CMT) per CNMI <mt>."""
        session = self._urc_session()
        pdu = part.pdu if isinstance(part, RawPdu) else part.encode()
        if session is None:
            self._held.append(part)
            return Delivery("held", pdu=pdu.hex().upper())
        mt = session.cnmi[1]
        if mt == 2:
            if session.cmgf == 0 or isinstance(part, RawPdu):
                session.urc(f"+CMT: ,{len(pdu) - 1 - pdu[0]}", pdu.hex().upper(), sms=True)
            else:
                session.urc(
                    f'+CMT: "{part.sender.number}",,"{text_time(part.scts)}"',
                    session._body_text(part.text, part.encoding),
                    sms=True,
                )
            self._expect_ack(session, lambda: self.deliver_inbound(part, attempt=attempt + 1), attempt)
            return Delivery("routed", pdu=pdu.hex().upper())
        memory = session.cpms[2]
        index = self.state.storage[memory].put(Stored(REC_UNREAD, pdu))
        if index is None:
            # Memory full: the network keeps the message (the ME answered "memory capacity
            # exceeded") and the modem says nothing; it comes once a slot is freed.
            self._held.append(part)
            sender, text = ("?", "") if isinstance(part, RawPdu) else (part.sender.number, part.text)
            self.network.record("held", sender, text=text, result=f"{memory} full")
            return Delivery("held", pdu=pdu.hex().upper())
        if mt in (1, 3):
            session.urc(f'+CMTI: "{memory}",{index}', sms=True)
        return Delivery("stored", memory, index, pdu.hex().upper())

    def storage_freed(self) -> None:
        self._flush_held()

    def after_unlock(self) -> None:
        session = self.sessions.get(self.urc_port)
        if session is not None:
            for line in self.profile.ready_urcs:
                session.urc(line)
        for s in self.sessions.values():
            s.registration_changed()
        self._flush_held()

    def _flush_held(self) -> None:
        held, self._held = self._held, []
        for item in held:
            if isinstance(item, StatusReport) or (isinstance(item, RawPdu) and item.report):
                self.deliver_report(item)
            else:
                self.deliver_inbound(item)

    @property
    def held(self) -> list[Deliver | StatusReport | RawPdu]:
        """What the network still keeps for the modem (storage full, unplugged, no network)."""
        return list(self._held)

    # -- noise ----------------------------------------------------------------------------

    def _start_noise(self) -> None:
        if self._noise_task is None and self.plugged and self.noise_interval_s > 0:
            self._noise_task = asyncio.get_running_loop().create_task(self._noise_loop())

    def _stop_noise(self) -> None:
        if self._noise_task is not None:
            self._noise_task.cancel()
            self._noise_task = None

    async def _noise_loop(self) -> None:
        while True:
            await asyncio.sleep(self.noise_interval_s)
            for session in list(self.sessions.values()):
                session.noise(self.random.choice(self.noise_lines()))

    # -- inspection -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything worth showing on /state."""
        state = self.state
        return {
            "model": self.profile.key,
            "plugged": self.plugged,
            "boots": self.boots,
            "primary": str(self.primary_path),
            "aux": str(self.aux_path) if self.aux_path else None,
            "devices": {role: port.device for role, port in self._ports.items()},
            "tcp": list(self.tcp_address) if self.tcp_address else None,
            "sim": {
                "status": state.sim_status,
                "own_number": state.own_number,
                "smsc": state.smsc,
                "next_mr": state.next_mr,
                "storage": {
                    name: {"used": s.used, "total": s.capacity, "indexes": sorted(s.slots)}
                    for name, s in state.storage.items()
                },
            },
            "radio": {
                "cfun": state.cfun,
                "creg": state.reg_stat(),
                "operator": state.operator,
                "csq": state.signal,
            },
            "noise": state.noise,
            "hung": {role: s.hung for role, s in self.sessions.items()},
            "frozen": self.frozen,
            "boot_busy": {"init_busy_s": self.init_busy_s, "sim_busy_s": self.sim_busy_s},
            "sessions": {
                role: {
                    "echo": s.echo,
                    "cmee": s.cmee,
                    "cmgf": s.cmgf,
                    "cnmi": s.cnmi,
                    "csms": s.csms,
                    "cpms": s.cpms,
                }
                for role, s in self.sessions.items()
            },
            "faults": self.faults.as_dict(),
            "variants": asdict(self.variants),
            "cmgs_aborts": self.cmgs_aborts,
            "ussd": self.ussd.as_dict(),
            "held": len(self._held),
            "policy": self.network.default_policy.as_dict(),
            "policies": {n: p.as_dict() for n, p in self.network.policies.items()},
        }


def default_directory() -> Path:
    """$XDG_RUNTIME_DIR/smsgw-sim, else /tmp/smsgw-sim-<uid>."""
    import os  # noqa: PLC0415 - only needed here

    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "smsgw-sim"
    return Path("/tmp") / f"smsgw-sim-{os.getuid()}"  # noqa: S108 - a per-user runtime directory


def _parse_listen(listen: tuple[str, int] | str | None) -> tuple[str, int] | None:
    if listen is None or isinstance(listen, tuple):
        return listen
    host, _, port = listen.rpartition(":")
    return (host or "127.0.0.1", int(port))
