"""AT engine: a sans-I/O line parser under a one-command-in-flight engine.

`AtParser` turns bytes into `Line` and `Prompt` events and knows nothing of
commands. `AtEngine` writes one command at a time, collects its information
lines until a final result code (27.007 §5.7), and routes every other line to
unsolicited-result handlers: real modems put URCs before the echo, between
response lines and between `AT+CMGS` and its `> ` prompt (Telit `#STN`, ZTE
`+ZDONR`, `+CDSI` while waiting for `AT+CPIN?`, see reference §1.1).

A submit that stays silent past its `Liveness.probe_after_s` is probed with ESC + `AT`
on the same port, once a second. A live modem busy with the network buffers (or drops)
the probe and answers +CMGS first; a modem that froze and lost the command answers the
probe with a bare OK, which proves the submit is gone (modems answer in order): the
submit ends at once as `SubmitLost` instead of at the ceiling. Probe answers that come
after the submit's own are swallowed before the next command (a resync that waits for
the line to go quiet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from modem.errors import (
    VERBOSE_CME,
    VERBOSE_CMS,
    AtError,
    AtTimeout,
    CmeError,
    CmsError,
    ModemError,
    SubmitLost,
    TransportError,
)

_LOGGER = logging.getLogger(__name__)

# Most commands answer in well under a second; 10 s leaves room for a busy SIM.
DEFAULT_TIMEOUT_S = 10.0
# AT+CMGS=<n> to "> ": 86 ms observed; ModemManager allows 10 s.
PROMPT_TIMEOUT_S = 10.0
# PDU + Ctrl-Z to +CMGS: 14.4 s seen; Quectel: "120 s, determined by network".
SUBMIT_TIMEOUT_S = 180.0
# A silent submit is probed this often: a frozen modem that answers again is noticed within it.
PROBE_EVERY_S = 1.0
# Stray probe answers come back to back; this long without one and the line is clean.
STRAY_QUIET_S = 0.2

CTRL_Z = b"\x1a"
ESC = b"\x1b"

# A line with one of these prefixes is followed by one PDU line (27.005 §3.4.1).
TWO_LINE_URCS = ("+CMT:", "+CDS:", "+CBM:")

# Lines that are never a response to our commands: unsolicited, whatever is pending.
_ALWAYS_URC = re.compile(
    r"^(\+CMTI:|\+CDSI:|\+CMT:|\+CDS:|\+CBM:|RING$|RDY$|\^|\+CIEV:|\+QIND:|\+QUSIM:|SMS DONE$|PB DONE$"
    r"|SMS Ready$|Call Ready$|\+PACSP|#STN:|\+ZDONR|\+ZPASR|\+ZUSIMR|\+NITZ:|\+CTZV:|\+CNSMOD:|POWERED DOWN$"
    r"|\+AT: READY$|\+PBREADY$)"
)


@dataclass(frozen=True)
class Line:
    """One text line from the modem, without its CR/LF framing."""

    text: str


@dataclass(frozen=True)
class Prompt:
    """The `> ` SMS input prompt, which arrives with no line terminator."""


@dataclass(frozen=True)
class Urc:
    """An unsolicited result code, with the PDU line that follows +CMT/+CDS."""

    line: str
    pdu: str | None = None

    @property
    def name(self) -> str:
        head, sep, _rest = self.line.partition(":")
        return head if sep else self.line


@dataclass(frozen=True)
class Response:
    """Information lines of a successful command, echo and final code removed."""

    command: str
    lines: list[str] = field(default_factory=list)

    def prefixed(self, prefix: str) -> list[str]:
        """Payloads of the lines starting with prefix (e.g. '+CSQ:'), stripped."""
        return [ln[len(prefix) :].strip() for ln in self.lines if ln.startswith(prefix)]

    def first(self, prefix: str) -> str:
        """The first payload with prefix; UnexpectedResponse when absent."""
        found = self.prefixed(prefix)
        if not found:
            from modem.errors import UnexpectedResponse  # noqa: PLC0415  (keep the top import list short)

            raise UnexpectedResponse(self.command, self.lines)
        return found[0]


class AtParser:
    """Splits modem bytes into lines and prompts; pure, no I/O."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.expect_prompt = False

    def feed(self, data: bytes) -> Iterator[Line | Prompt]:
        """Consume bytes; yield every complete line and any `> ` prompt."""
        self._buf += data
        while True:
            idx = _first_terminator(self._buf)
            if idx < 0:
                break
            raw = bytes(self._buf[:idx])
            del self._buf[: idx + 1]
            text = _clean(raw)
            if text:
                yield Line(text)
        if self.expect_prompt:
            # The prompt is CR LF '>' SP with nothing after it (Telit manual, Gammu at.c).
            stripped = bytes(self._buf).lstrip(b"\r\n ")
            if stripped in (b">", b"> "):
                self._buf.clear()
                self.expect_prompt = False
                yield Prompt()
        if len(self._buf) > 8192:
            # A modem spewing garbage with no line ends: keep memory bounded.
            _LOGGER.warning("dropping %d bytes without a line end", len(self._buf))
            self._buf.clear()

    def reset(self) -> None:
        """Forget any partial line (after the port reopened)."""
        self._buf.clear()
        self.expect_prompt = False


def _first_terminator(buf: bytearray) -> int:
    cr, lf = buf.find(b"\r"), buf.find(b"\n")
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)


def _clean(raw: bytes) -> str:
    # Control bytes (Ctrl-Z echo, NULs from line noise) are never meaningful in a line.
    text = raw.decode("latin-1")
    return "".join(ch for ch in text if ch >= " " or ch == "\t").strip()


@dataclass(frozen=True)
class Final:
    """A final result code: ok, or an error with its kind and code."""

    ok: bool
    kind: str = ""  # "", "CME", "CMS"
    code: int | None = None
    text: str = ""


_FINAL_ERROR = re.compile(r"^\+(CME|CMS) ERROR:\s*(.*)$")


def classify_final(line: str) -> Final | None:
    """Final result code carried by line, or None for an information line (mm-serial-parsers.c)."""
    if line == "OK":
        return Final(ok=True, text=line)
    if line in ("ERROR", "COMMAND NOT SUPPORT", "NO CARRIER", "TOO MANY PARAMETERS", "NO DIALTONE", "BUSY"):
        return Final(ok=False, text=line)
    m = _FINAL_ERROR.match(line)
    if m:
        kind, rest = m.group(1), m.group(2).strip()
        return Final(ok=False, kind=kind, code=_error_code(kind, rest), text=line)
    if line.startswith(("+CMGS ERROR", "MODEM ERROR")):
        m2 = re.search(r"(\d+)", line)
        return Final(ok=False, kind="CMS", code=int(m2.group(1)) if m2 else None, text=line)
    return None


def _error_code(kind: str, rest: str) -> int | None:
    if not rest:
        return None  # SIM7000G prints '+CMS ERROR:' with no code
    try:
        return int(rest)
    except ValueError:
        table = VERBOSE_CME if kind == "CME" else VERBOSE_CMS
        return table.get(rest.lower())


def to_error(command: str, final: Final, lines: list[str]) -> AtError:
    """The typed exception for a failed final result."""
    if final.kind == "CME":
        return CmeError(command, final.text, final.code, lines)
    if final.kind == "CMS":
        return CmsError(command, final.text, final.code, lines)
    return AtError(command, final.text, lines)


UrcHandler = Callable[[Urc], None]


@dataclass(frozen=True)
class Liveness:
    """When a silent submit starts being probed, how often, and whom to tell (once) that it stalled."""

    probe_after_s: float
    probe_every_s: float = PROBE_EVERY_S
    on_stall: Callable[[float], None] | None = None  # called with the seconds of silence so far


@dataclass
class _Pending:
    command: str
    prefix: str | None  # information-line prefix the command answers with, e.g. "+CSQ:"
    future: asyncio.Future[Response]
    lines: list[str] = field(default_factory=list)
    prompt: asyncio.Future[None] | None = None
    echo: str | None = None  # text written after the prompt, echoed back under ATE1
    probes: int = 0  # liveness probes written while this submit was silent
    since: float = 0.0  # loop time the data was written


class AtEngine:
    """Writes one AT command at a time and routes unsolicited lines to handlers."""

    def __init__(self, write: Callable[[bytes], None], *, sync_timeout_s: float = 2.0) -> None:
        self._write = write
        self._sync_timeout_s = sync_timeout_s
        self._parser = AtParser()
        self._lock = asyncio.Lock()
        self._pending: _Pending | None = None
        self._handlers: list[tuple[str, UrcHandler]] = []
        self._urc_head: str | None = None  # a +CMT/+CDS line waiting for its PDU line
        self._needs_sync = False
        self._strays = False  # probe answers may still come: swallow bare final results
        self._stray_seen = asyncio.Event()
        self.probes_sent = 0

    # ----------------------------------------------------------------- public
    def on_urc(self, prefix: str, handler: UrcHandler) -> None:
        """Call handler for every unsolicited line starting with prefix ('' = all unmatched)."""
        self._handlers.append((prefix, handler))

    def data_received(self, data: bytes) -> None:
        """Feed bytes from the transport."""
        for event in self._parser.feed(data):
            if isinstance(event, Prompt):
                self._on_prompt()
            else:
                try:
                    self._on_line(event.text)
                except Exception:  # a handler bug or a garbage line must not kill the engine
                    _LOGGER.exception("dropping modem line %r", event.text)

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail the command in flight: the port is gone."""
        self._parser.reset()
        self._urc_head = None
        pending = self._pending
        if pending is not None:
            err = TransportError(f"port lost during {pending.command!r}: {exc or 'closed'}")
            err.maybe_sent = pending.echo is not None  # the PDU had been written
            if not pending.future.done():
                pending.future.set_exception(err)
            if pending.prompt is not None and not pending.prompt.done():
                pending.prompt.set_exception(err)
        self._needs_sync = False
        self._strays = False  # a new port (or the same one reopened) owes no probe answers

    async def command(
        self, command: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, prefix: str | None = None
    ) -> Response:
        """Send command, return its information lines; raise AtError/AtTimeout/TransportError."""
        async with self._lock:
            await self._sync_if_needed()
            return await self._exchange(command, timeout_s=timeout_s, prefix=prefix)

    async def command_with_data(
        self,
        command: str,
        data: str,
        *,
        prompt_timeout_s: float = PROMPT_TIMEOUT_S,
        timeout_s: float = SUBMIT_TIMEOUT_S,
        prefix: str | None = None,
        liveness: Liveness | None = None,
    ) -> Response:
        """AT+CMGS style: write command, await '> ', write data + Ctrl-Z, await the final result.

        Once the data is written the exchange runs to its end even if the caller is
        cancelled: the modem is submitting, and the next command must not collide
        with its answer (Fibocom G510 aborts a send on any byte). With `liveness`, a
        submit silent past `probe_after_s` is probed (module docstring); SubmitLost when
        the modem answers a probe but not the submit. `timeout_s` stays the ceiling.
        """
        await self._lock.acquire()
        handed_over = False
        try:
            await self._sync_if_needed()
            loop = asyncio.get_running_loop()
            pending = self._begin(command, prefix)
            pending.prompt = loop.create_future()
            self._parser.expect_prompt = True
            try:
                self._write(f"{command}\r".encode("ascii"))
                async with asyncio.timeout(prompt_timeout_s):
                    # The modem may also refuse at once (+CMS ERROR before any prompt).
                    waiters: set[asyncio.Future[object]] = {pending.prompt, pending.future}  # type: ignore[arg-type]
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            except TimeoutError:
                self.abort_input()
                self._finish(pending)
                raise AtTimeout(command, prompt_timeout_s, pending.lines) from None
            except BaseException:
                self.abort_input()
                self._finish(pending)
                raise
            finally:
                self._parser.expect_prompt = False
            if pending.future.done():
                self._finish(pending)
                return pending.future.result()
            if pending.prompt.exception() is not None:
                self._finish(pending)
                raise pending.prompt.exception()  # type: ignore[misc]
            pending.echo = data
            pending.since = loop.time()
            self._write(data.encode("ascii") + CTRL_Z)
            # From here the task owns the lock and releases it when the modem has answered.
            waiting = (
                self._await_final(pending, timeout_s)
                if liveness is None
                else self._await_probed(pending, timeout_s, liveness)
            )
            task = asyncio.ensure_future(waiting)
            task.add_done_callback(lambda _t: self._lock.release())
            handed_over = True
            return await asyncio.shield(task)
        finally:
            if not handed_over:
                self._lock.release()

    # -------------------------------------------------------------- internals
    async def _exchange(self, command: str, *, timeout_s: float, prefix: str | None) -> Response:
        pending = self._begin(command, prefix)
        try:
            self._write(f"{command}\r".encode("ascii"))
        except BaseException:
            self._finish(pending)
            raise
        return await self._await_final(pending, timeout_s)

    def _begin(self, command: str, prefix: str | None) -> _Pending:
        if prefix is None:
            prefix = _response_prefix(command)
        pending = _Pending(command, prefix, asyncio.get_running_loop().create_future())
        self._pending = pending
        return pending

    async def _await_final(self, pending: _Pending, timeout_s: float) -> Response:
        try:
            async with asyncio.timeout(timeout_s):
                return await pending.future
        except TimeoutError:
            # A late answer would be taken for the next command's: resync first.
            self._needs_sync = True
            raise AtTimeout(pending.command, timeout_s, pending.lines) from None
        finally:
            self._finish(pending)

    async def _await_probed(self, pending: _Pending, timeout_s: float, liveness: Liveness) -> Response:
        """Await a submit's answer; past `probe_after_s` of silence, probe the modem each `probe_every_s`."""
        loop = asyncio.get_running_loop()
        ceiling = pending.since + timeout_s
        probe_at = pending.since + min(liveness.probe_after_s, timeout_s)
        try:
            while True:
                until = min(ceiling, probe_at)
                done, _ = await asyncio.wait({pending.future}, timeout=max(0.0, until - loop.time()))
                if done:
                    return pending.future.result()
                if loop.time() >= ceiling:
                    self._needs_sync = True
                    raise AtTimeout(pending.command, timeout_s, pending.lines)
                if pending.probes == 0 and liveness.on_stall is not None:
                    liveness.on_stall(loop.time() - pending.since)
                self._probe(pending)
                probe_at = loop.time() + liveness.probe_every_s
        finally:
            if pending.probes:
                # Answers to probes the modem buffered come after its own: drop them before the next command.
                self._strays = True
                self._needs_sync = True
            self._finish(pending)

    def _probe(self, pending: _Pending) -> None:
        # ESC first: a modem that lost the Ctrl-Z sits in "> " input, where "AT" would be PDU text.
        pending.probes += 1
        self.probes_sent += 1
        with contextlib.suppress(ModemError):
            self._write(ESC + b"AT\r")

    def _finish(self, pending: _Pending) -> None:
        if self._pending is pending:
            self._pending = None
        if not pending.future.done():
            pending.future.cancel()
        elif not pending.future.cancelled():
            pending.future.exception()  # mark retrieved

    def abort_input(self) -> None:
        """Leave a half-open `> ` input left by a previous client (ESC, as Gammu does before retrying).

        ESC ends text input without sending (27.005 §3.5.1) and CR flushes the command line;
        its stray OK is swallowed by the resync before the next command.
        """
        with contextlib.suppress(ModemError):
            self._write(ESC + b"\r")
        self._needs_sync = True

    async def _sync_if_needed(self) -> None:
        """After a timeout or probes, swallow stray late lines with a plain AT before the next command."""
        if not self._needs_sync:
            return
        self._needs_sync = False
        for _attempt in range(3):
            try:
                await self._exchange("AT", timeout_s=self._sync_timeout_s, prefix=None)
            except AtTimeout:
                continue
            except AtError:
                pass
            await self._drain_strays()
            return
        self._needs_sync = True
        raise AtTimeout("AT", self._sync_timeout_s)

    async def _drain_strays(self) -> None:
        # Our AT's OK may have been a probe's: wait until the answers stop coming, then trust the line.
        if not self._strays:
            return
        while True:
            self._stray_seen.clear()
            try:
                async with asyncio.timeout(STRAY_QUIET_S):
                    await self._stray_seen.wait()
            except TimeoutError:
                break
        self._strays = False

    def _on_prompt(self) -> None:
        pending = self._pending
        if pending is not None and pending.prompt is not None and not pending.prompt.done():
            pending.prompt.set_result(None)

    def _on_line(self, line: str) -> None:
        if self._urc_head is not None:
            head, self._urc_head = self._urc_head, None
            if _is_hex(line):
                self._dispatch(Urc(head, line))
                return
            # The PDU line never came (truncated URC): report the head alone.
            self._dispatch(Urc(head, None))
        pending = self._pending
        if line.startswith(TWO_LINE_URCS) and not (
            pending and pending.prefix and line.startswith(pending.prefix)
        ):
            self._urc_head = line
            return
        if pending is None or pending.future.done():
            if self._strays and classify_final(line) is not None:
                self._stray_seen.set()  # a late answer to a liveness probe
                return
            self._dispatch(Urc(line))
            return
        if _is_echo(line, pending):
            return
        final = classify_final(line)
        if final is not None:
            if (
                final.ok
                and pending.probes
                and not any(pending.prefix and ln.startswith(pending.prefix) for ln in pending.lines)
            ):
                # A bare OK while the submit is probed answers a probe: modems answer in order,
                # so the submit itself will never be answered.
                silent_s = asyncio.get_running_loop().time() - pending.since
                pending.future.set_exception(SubmitLost(pending.command, silent_s))
                return
            if final.ok:
                pending.future.set_result(Response(pending.command, pending.lines))
            else:
                pending.future.set_exception(to_error(pending.command, final, pending.lines))
            return
        if pending.prefix and line.startswith(pending.prefix):
            pending.lines.append(line)
        elif _ALWAYS_URC.match(line):
            self._dispatch(Urc(line))
        elif pending.prefix and line.startswith(("+", "^")) and not _follows_response(pending):
            # A '+XXX:' line that is not our answer is somebody else's news.
            self._dispatch(Urc(line))
        else:
            pending.lines.append(line)

    def _dispatch(self, urc: Urc) -> None:
        handled = False
        for prefix, handler in self._handlers:
            if prefix and urc.line.startswith(prefix):
                handler(urc)
                handled = True
        if not handled:
            for prefix, handler in self._handlers:
                if not prefix:
                    handler(urc)
                    handled = True
        if not handled:
            _LOGGER.debug("ignored unsolicited %r", urc.line)


def _follows_response(pending: _Pending) -> bool:
    # +CMGR/+CMGL: the line after the header is the PDU and belongs to the response.
    return bool(pending.lines) and pending.lines[-1].startswith(("+CMGR:", "+CMGL:"))


def _is_echo(line: str, pending: _Pending) -> bool:
    upper = line.upper()
    if upper == pending.command.upper():
        return True
    if pending.echo is not None:
        body = line[2:] if line.startswith("> ") else line.lstrip(">").strip()
        return body.upper() == pending.echo.upper()
    return False


_HEX = re.compile(r"^[0-9A-Fa-f]+$")


def _is_hex(line: str) -> bool:
    return bool(_HEX.match(line))


_PREFIX = re.compile(r"^AT([+^#$%][A-Z0-9]+)", re.IGNORECASE)


def _response_prefix(command: str) -> str | None:
    """'+CSQ:' for AT+CSQ, '+CMGR:' for AT+CMGR=3; None for basic commands (ATI, ATE0)."""
    m = _PREFIX.match(command)
    return f"{m.group(1).upper()}:" if m else None
