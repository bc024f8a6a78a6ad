"""Byte transport to a modem port: a serial device, a `socket://host:port` URL, or a pty.

Moves bytes and reports connection loss; knows nothing of AT. `Port.run()` keeps
the port open: when a USB modem vanishes (unplug, AT+CFUN=1,1 re-enumeration)
it reopens the same stable path (/dev/gsmmodem from udev) once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
from collections.abc import Awaitable, Callable

import serial
import serial_asyncio_fast

from modem.errors import ModemError, PortBusy, TransportError
from modem.portlock import holder_of

_LOGGER = logging.getLogger(__name__)

# Reconnect while the device node is absent: 0.5 s doubling to 5 s, with jitter. A failed open
# costs one syscall, and a USB modem re-enumerates in 1-15 s: a longer cap would only delay the
# recovery after a replug by up to that long.
REOPEN_DELAY_MIN_S = 0.5
REOPEN_DELAY_MAX_S = 5.0
# The port opens but the modem will not initialise: retry at 0.5 s doubling to 30 s, with jitter.
INIT_RETRY_MIN_S = 0.5
INIT_RETRY_MAX_S = 30.0


# Open refused because another process holds the port: TIOCEXCL (EBUSY) or our flock (EAGAIN).
_HELD = frozenset({errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK})


def _jittered(delay_s: float) -> float:
    return delay_s * random.uniform(0.5, 1.5)  # noqa: S311  (spreads retries, not security)


class _Link(asyncio.Protocol):
    """asyncio protocol that forwards bytes and the loss of the connection."""

    def __init__(self, on_data: Callable[[bytes], None]) -> None:
        self._on_data = on_data
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class Port:
    """One modem AT port, opened by URL, reopened after it vanishes."""

    def __init__(self, url: str, *, baudrate: int = 115200, on_data: Callable[[bytes], None]) -> None:
        self.url = url
        self.baudrate = baudrate
        self._on_data = on_data
        self._transport: asyncio.BaseTransport | None = None
        self._link: _Link | None = None
        self.connected = asyncio.Event()
        self.reopens = 0

    def __repr__(self) -> str:
        return f"Port({self.url!r}, connected={self.connected.is_set()})"

    async def open(self) -> None:
        """Open the port once; raises TransportError when it is not there."""
        link = _Link(self._on_data)
        try:
            transport, _ = await serial_asyncio_fast.create_serial_connection(
                asyncio.get_running_loop(),
                lambda: link,
                self.url,
                baudrate=self.baudrate,
                rtscts=False,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            if isinstance(exc, OSError) and exc.errno in _HELD:
                holder = holder_of(self.url)
                by = holder.describe() if holder is not None else "another process"
                raise PortBusy(f"{self.url} is held by {by}", holder) from exc
            raise TransportError(f"cannot open {self.url}: {exc}") from exc
        self._transport = transport
        self._link = link
        self.connected.set()

    def write(self, data: bytes) -> None:
        """Queue bytes for the modem; raises TransportError when the port is closed."""
        transport = self._transport
        if transport is None or transport.is_closing() or not self.connected.is_set():
            raise TransportError(f"{self.url} is not open")
        assert isinstance(transport, asyncio.WriteTransport)  # noqa: S101  (type narrowing)
        transport.write(data)

    async def wait_lost(self) -> Exception | None:
        """Wait until the open port goes away; returns the reason."""
        if self._link is None:
            return None
        # Shielded: cancelling a waiter must not cancel the shared "lost" future.
        return await asyncio.shield(self._link.lost)

    async def close(self) -> None:
        """Close the port and wait until it is released."""
        transport, link = self._transport, self._link
        self._transport = None
        self.connected.clear()
        if transport is not None:
            transport.close()
            if link is not None and not link.lost.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        await asyncio.shield(link.lost)

    async def run(
        self,
        on_open: Callable[[], Awaitable[None]],
        on_lost: Callable[[Exception | None], None],
    ) -> None:
        """Keep the port open forever: open, call on_open, wait for loss, reopen with backoff.

        Every retry backs off with jitter and says why once, not at every turn: an absent
        device (a replug) and a modem that refuses to initialise (SIM busy for longer than
        init waits) cost a few syscalls or commands a minute and a line or two in the log.
        """
        absent_delay = REOPEN_DELAY_MIN_S
        init_delay = INIT_RETRY_MIN_S
        absent = False  # the device is gone and that was said
        last_failure = ""
        while True:
            try:
                await self.open()
            except TransportError as exc:
                if not absent:
                    wait_for = "be released" if isinstance(exc, PortBusy) else "appear"
                    _LOGGER.warning("%s; waiting for it to %s", exc, wait_for)
                    absent = True
                await asyncio.sleep(_jittered(absent_delay))
                absent_delay = min(absent_delay * 2, REOPEN_DELAY_MAX_S)
                continue
            absent_delay = REOPEN_DELAY_MIN_S
            if absent:
                _LOGGER.info("%s reopened", self.url)
                absent = False
            lost_task = asyncio.ensure_future(self.wait_lost())
            try:
                await on_open()
            except Exception as exc:  # the modem would not initialise: close, back off, retry
                failure = str(exc) if isinstance(exc, ModemError) else repr(exc)
                pause = _jittered(init_delay)
                if failure != last_failure:
                    if isinstance(exc, ModemError):  # expected: one line, no traceback
                        _LOGGER.warning("%s: initialisation failed: %s; retrying with backoff", self.url, exc)
                    else:
                        _LOGGER.exception("%s: initialisation failed; retrying with backoff", self.url)
                    last_failure = failure
                await self.close()
                on_lost(await lost_task)
                await asyncio.sleep(pause)
                init_delay = min(init_delay * 2, INIT_RETRY_MAX_S)
                continue
            if last_failure:
                _LOGGER.info("%s: initialised after retrying", self.url)
            init_delay, last_failure = INIT_RETRY_MIN_S, ""
            reason = await lost_task
            self.connected.clear()
            self._transport = None
            self.reopens += 1
            _LOGGER.warning("%s lost (%s)", self.url, reason or "closed")
            on_lost(reason)
