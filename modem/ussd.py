"""USSD over AT+CUSD (27.007 §7.15): send a code such as `*100#`, return the network's text.

`AT+CUSD=1,"*100#",15` is answered `OK` at once on most modems; the network's answer comes
seconds later as the unsolicited `+CUSD: <m>[,<str>[,<dcs>]]` (some firmwares put it before
the OK instead: both are taken). `<m>` 0 = no further action, 1 = the network waits for a
reply (a menu), 2 = terminated by the network, 3 = another client answered, 4 = not supported,
5 = network timeout. We never continue a menu: a `1` is answered with `AT+CUSD=2`, which also
ends a session whose answer never came, so the next request does not find it still open.

`<str>` depends on `<dcs>` (TS 23.038 §5, CBS coding groups) and on the modem: with GSM-7 it is
text in the AT+CSCS character set ("GSM", "IRA"), or hex UCS-2 under CSCS "UCS2", or (Huawei
with ^USSDMODE=1, some Qualcomm firmwares) hex of the packed septets; with UCS-2 (`<dcs>` 72)
most modems give the UTF-16BE octets as hex whatever the CSCS. Operators put line feeds in menu
texts, which split the `+CUSD:` line in two or more: the continuation lines are joined back.

The AT channel is anything with `command()` and `on_urc()`: `modem.at.AtEngine`, or the Modem
once it forwards `on_urc` to its engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
import string
from dataclasses import dataclass
from typing import Protocol

from modem.at import Response, Urc, UrcHandler
from modem.errors import AtError, AtTimeout, ModemError
from modem.pdu import Encoding, gsm7, ucs2

_LOGGER = logging.getLogger(__name__)

# A code is what a user dials: digits, '*' and '#'. 27.007 allows 182 GSM-7 characters; no
# service code comes near 40, and a short limit keeps a hostile request small.
MAX_CODE_LENGTH = 40
_CODE = re.compile(r"^[*#][0-9*#]*#$")
# The network answers within seconds; 3GPP TS 24.080 networks give up after about 30 s.
ANSWER_TIMEOUT_S = 30.0
# <dcs> we send: 15 = GSM-7, language unspecified (TS 23.038 §5).
REQUEST_DCS = 15


class UssdStatus(enum.IntEnum):
    """`<m>` of +CUSD (27.007 §7.15)."""

    DONE = 0  # no further user action required
    FURTHER_ACTION = 1  # the network waits for a reply
    TERMINATED = 2  # terminated by the network
    OTHER_CLIENT = 3  # another local client has responded
    NOT_SUPPORTED = 4  # operation not supported
    NETWORK_TIMEOUT = 5  # network time out


class InvalidUssdCode(ModemError, ValueError):
    """A code with characters other than digits, '*' and '#', or too long: never sent."""


class UssdError(ModemError):
    """The network (or the modem) ended the session without a usable answer."""

    def __init__(self, code: str, status: int, text: str = "") -> None:
        try:
            meaning = UssdStatus(status).name.lower().replace("_", " ")
        except ValueError:
            meaning = "unknown status"
        detail = f": {text}" if text else ""
        super().__init__(f"USSD {code}: +CUSD: {status} ({meaning}){detail}")
        self.code = code
        self.status = status
        self.text = text


class UssdTimeout(AtTimeout):
    """The modem accepted the request but no +CUSD answer came; the session was cancelled."""


@dataclass(frozen=True)
class UssdReply:
    """One decoded +CUSD answer."""

    status: int
    text: str
    dcs: int | None = None

    @property
    def further_action(self) -> bool:
        return self.status == UssdStatus.FURTHER_ACTION


class AtChannel(Protocol):
    """What USSD needs of a modem: one command at a time, and unsolicited lines by prefix."""

    async def command(
        self, command: str, *, timeout_s: float = ..., prefix: str | None = ...
    ) -> Response: ...

    def on_urc(self, prefix: str, handler: UrcHandler) -> None: ...


def check_code(code: str) -> str:
    """The code if it is a service code a user could dial (`*100#`, `*123*1#`); InvalidUssdCode otherwise."""
    if not code:
        raise InvalidUssdCode("USSD code is empty")
    if len(code) > MAX_CODE_LENGTH:
        raise InvalidUssdCode(f"USSD code is longer than {MAX_CODE_LENGTH} characters")
    if not _CODE.match(code):
        raise InvalidUssdCode(
            "USSD code must start with '*' or '#', end with '#' and hold only digits, '*' and '#'"
        )
    return code


class Ussd:
    """USSD sessions on one AT channel, one at a time."""

    def __init__(
        self,
        channel: AtChannel,
        *,
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
        command_timeout_s: float = 10.0,
    ) -> None:
        self._channel = channel
        self.answer_timeout_s = answer_timeout_s
        self._command_timeout_s = command_timeout_s
        self._lock = asyncio.Lock()
        self._waiter: asyncio.Future[UssdReply] | None = None
        self._charset = "GSM"
        self._partial: list[str] | None = None  # a +CUSD line whose quoted text spans lines
        self.stray_answers = 0  # +CUSD answers nobody waited for (late, after a cancel)
        channel.on_urc("+CUSD:", self._urc)
        channel.on_urc("", self._continuation)

    async def send(self, code: str) -> UssdReply:
        """Send `code`, return the network's answer; a menu (m=1) is answered and then closed.

        Raises InvalidUssdCode before touching the modem, AtError (+CME ERROR …) when the modem
        refuses, UssdError when the network ends the session without text, UssdTimeout when no
        answer comes within `answer_timeout_s`.
        """
        check_code(code)
        async with self._lock:
            reply = await self._exchange(code)
            if reply.further_action:
                await self.cancel()  # we never continue a menu: free the session for the next request
            if reply.status not in (UssdStatus.DONE, UssdStatus.FURTHER_ACTION) and not (
                reply.status == UssdStatus.TERMINATED and reply.text
            ):
                raise UssdError(code, reply.status, reply.text)
            return reply

    async def cancel(self) -> None:
        """AT+CUSD=2: end any open session; a modem that has none may answer ERROR, which is fine."""
        with contextlib.suppress(AtError, AtTimeout):
            await self._channel.command("AT+CUSD=2", timeout_s=self._command_timeout_s, prefix="+CUSD:")

    async def _exchange(self, code: str) -> UssdReply:
        self._charset = await self._read_charset()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[UssdReply] = loop.create_future()
        self._waiter = waiter
        command = f'AT+CUSD=1,"{encode_request(code, self._charset)}",{REQUEST_DCS}'
        try:
            response = await self._channel.command(
                command, timeout_s=self._command_timeout_s, prefix="+CUSD:"
            )
            early = _early_answer(response.lines)
            if early is not None:
                return parse_cusd(early, self._charset)
            try:
                async with asyncio.timeout(self.answer_timeout_s):
                    return await waiter
            except TimeoutError:
                await self.cancel()
                raise UssdTimeout(command, self.answer_timeout_s) from None
        finally:
            self._waiter = None
            self._partial = None  # a half-received answer must not swallow the next session's lines

    async def _read_charset(self) -> str:
        # The request and a GSM-7 answer are written in the TE character set (27.007 §5.5).
        try:
            found = (await self._channel.command("AT+CSCS?", timeout_s=self._command_timeout_s)).prefixed(
                "+CSCS:"
            )
        except AtError:
            return "GSM"
        return found[0].strip('"').upper() if found else "GSM"

    def _urc(self, urc: Urc) -> None:
        payload = urc.line.split(":", 1)[1].strip()
        if payload.count('"') == 1:
            self._partial = [payload]  # the text goes on in the next lines
            return
        self._answer(payload)

    def _continuation(self, urc: Urc) -> None:
        if self._partial is None:
            return
        self._partial.append(urc.line)
        if '"' in urc.line:
            payload, self._partial = "\n".join(self._partial), None
            self._answer(payload)

    def _answer(self, payload: str) -> None:
        waiter = self._waiter
        try:
            reply = parse_cusd(payload, self._charset)
        except ValueError as exc:
            if waiter is not None and not waiter.done():
                waiter.set_exception(ModemError(f"unreadable +CUSD answer {payload!r}: {exc}"))
            return
        if waiter is None or waiter.done():
            self.stray_answers += 1
            _LOGGER.info("USSD answer nobody waited for (status %d)", reply.status)
            return
        waiter.set_result(reply)


def _early_answer(lines: list[str]) -> str | None:
    """The +CUSD payload a firmware put before its OK, continuation lines joined."""
    for i, line in enumerate(lines):
        if line.startswith("+CUSD:"):
            return "\n".join([line.split(":", 1)[1].strip(), *lines[i + 1 :]])
    return None


def encode_request(code: str, charset: str) -> str:
    """The code as AT+CSCS wants string parameters written."""
    if charset == "UCS2":
        return ucs2.encode(code).hex().upper()
    if charset == "HEX":
        return code.encode("ascii").hex().upper()
    return code  # digits, '*' and '#' are the same in GSM, IRA and the 8859 sets


def parse_cusd(payload: str, charset: str = "GSM") -> UssdReply:
    """`<m>[,"<str>"[,<dcs>]]` -> UssdReply with the text decoded; ValueError when malformed."""
    head, _sep, rest = payload.partition(",")
    status = int(head.strip())
    rest = rest.strip()
    if not rest:
        return UssdReply(status, "")
    if rest.startswith('"'):
        end = rest.rfind('"')
        if end <= 0:
            raise ValueError("unterminated text")
        raw, tail = rest[1:end], rest[end + 1 :]
    else:  # unquoted text (seen on some Huawei firmwares)
        raw, _sep, tail = rest.partition(",")
    dcs_text = tail.strip().lstrip(",").strip()
    dcs = int(dcs_text) if dcs_text else None
    return UssdReply(status, decode_text(raw, dcs, charset), dcs)


def alphabet(dcs: int | None) -> Encoding:
    """The alphabet a CBS data coding scheme names (TS 23.038 §5); GSM-7 when absent or reserved."""
    if dcs is None:
        return Encoding.GSM7
    group = dcs >> 4
    if group == 0x1:
        return Encoding.UCS2 if dcs & 0x0F == 0x01 else Encoding.GSM7
    if group in (0x4, 0x5, 0x6, 0x7, 0x9):  # general data coding, message with UDH
        return {0: Encoding.GSM7, 1: Encoding.EIGHT_BIT, 2: Encoding.UCS2}.get(
            (dcs >> 2) & 0x03, Encoding.GSM7
        )
    if group == 0xF:
        return Encoding.EIGHT_BIT if dcs & 0x04 else Encoding.GSM7
    return Encoding.GSM7


def decode_text(raw: str, dcs: int | None, charset: str = "GSM") -> str:
    """The text of a +CUSD answer, whichever of the forms in the module docstring the modem used."""
    kind = alphabet(dcs)
    if not _is_hex(raw):
        return raw  # already text in the TE character set
    data = bytes.fromhex(raw)
    if dcs is not None and dcs >> 4 == 0x1 and dcs & 0x0F == 0x01 and len(data) >= 2:
        data = data[2:]  # UCS-2 preceded by a two-character language indication (TS 23.038 §5)
    if kind is Encoding.UCS2:
        return ucs2.decode(data)
    if kind is Encoding.EIGHT_BIT:
        return data.decode("latin-1")
    if charset == "UCS2" and len(data) % 2 == 0:
        return ucs2.decode(data)
    if charset == "HEX":
        return data.decode("latin-1")
    # GSM-7 under a text character set: hex only if it decodes to text (a reply of digits is text).
    for candidate in _gsm7_readings(data):
        if _looks_like_text(candidate):
            return candidate
    return raw


def _gsm7_readings(data: bytes) -> list[str]:
    """The text read as packed septets, then as one septet per octet."""
    codes = gsm7.unpack(data, len(data) * 8 // 7)
    # 8n-1 septets in 7n octets end in a CR fill (TS 23.038 §6.1.2.3.1) or a zero septet: no character.
    if codes and codes[-1] in (0x0D, 0x00) and len(data) % 7 == 0:
        codes = codes[:-1]
    readings = [gsm7.decode(codes)]
    if all(octet < 0x80 for octet in data):
        readings.append(gsm7.decode(data))
    return readings


_TEXTUAL = set(string.ascii_letters + string.digits + " .,:;!?-+*#/()%'\"€$£@&=\n\r")


def _looks_like_text(text: str) -> bool:
    # Operator texts are mostly Latin letters, digits and punctuation; a misread hex string is not.
    if len(text) < 4:
        return False
    usual = sum(1 for ch in text if ch in _TEXTUAL)
    return usual / len(text) >= 0.9 and any(ch.isalpha() for ch in text)


_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")


def _is_hex(raw: str) -> bool:
    return len(raw) >= 4 and bool(_HEX.match(raw))
