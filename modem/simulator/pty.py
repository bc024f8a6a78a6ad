"""Where the simulated modem meets clients: pseudo-terminals under stable symlinks, and TCP.

`PtyPort` opens a pty pair, puts the slave in raw mode (no echo by the tty, no CR/LF
translation, so the bytes are the modem's), serves the master from the asyncio loop, and
publishes the slave as a symlink (`<dir>/gsmmodem`, as udev's /dev/gsmmodem). `close()` is a
USB unplug: the master is closed, so a client's read fails (EIO, or pyserial's "device reports
readiness to read but returned no data") and the symlink goes away. Opening again gives a new
/dev/pts/N behind the same symlink, as a re-enumerated USB device does.

We keep the slave open ourselves, so the master never sees EIO while no client is attached;
output then waits in the tty buffer (up to `MAX_BACKLOG` more in ours; then it is dropped, like
a UART overrun).

`TcpPort` serves one TCP client at a time (pyserial `socket://host:port`), like ser2net.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import termios
import tty
from collections.abc import Callable
from pathlib import Path

MAX_BACKLOG = 64 * 1024  # bytes kept when nobody reads the port


class PtyPort:
    """One AT port on a pseudo-terminal, published under a symlink."""

    def __init__(self, link: Path, on_data: Callable[[bytes], None]) -> None:
        self.link = link
        self._on_data = on_data
        self._master: int | None = None
        self._slave: int | None = None
        self._backlog = bytearray()
        self.device: str | None = None

    def __repr__(self) -> str:
        return f"PtyPort(link={str(self.link)!r}, device={self.device!r})"

    def open(self) -> None:
        """Create the pty and the symlink (replacing a stale one atomically)."""
        master, slave = os.openpty()
        tty.setraw(slave)  # the modem's bytes, untouched by a line discipline
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.device = os.ttyname(slave)
        tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self.device)
        tmp.replace(self.link)
        asyncio.get_running_loop().add_reader(master, self._readable)

    def close(self) -> None:
        """Unplug: the client's next read fails; the symlink disappears."""
        loop = asyncio.get_running_loop()
        if self._master is not None:
            loop.remove_reader(self._master)
            loop.remove_writer(self._master)
            os.close(self._master)
            self._master = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        self._backlog.clear()
        with contextlib.suppress(FileNotFoundError, OSError):
            if self.device is not None and str(self.link.readlink()) == self.device:
                self.link.unlink()

    def pending(self) -> int:
        """Bytes written but not yet read by the client."""
        if self._slave is None:
            return 0
        buf = fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0")
        return int.from_bytes(buf, "little") + len(self._backlog)

    async def drain(self, timeout_s: float = 1.0) -> None:
        """Wait (bounded) until the client has read what we wrote, as a UART finishes sending."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        quiet = 0
        # The master has no "drained" notification, and the kernel moves pty data to the
        # slave's queue asynchronously: count it drained after two empty looks 5 ms apart.
        while quiet < 2 and loop.time() < deadline:
            await asyncio.sleep(0.005)
            quiet = quiet + 1 if self.pending() == 0 else 0

    def write(self, data: bytes) -> None:
        """Non-blocking write; what the tty cannot take yet waits in a bounded backlog."""
        if self._master is None:
            return
        if self._backlog:
            self._queue(data)
            return
        try:
            sent = os.write(self._master, data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return
        if sent < len(data):
            self._queue(data[sent:])
            asyncio.get_running_loop().add_writer(self._master, self._drain)

    def _queue(self, data: bytes) -> None:
        self._backlog += data
        if len(self._backlog) > MAX_BACKLOG:
            del self._backlog[: len(self._backlog) - MAX_BACKLOG]

    def _drain(self) -> None:
        if self._master is None:
            return
        try:
            sent = os.write(self._master, self._backlog)
        except BlockingIOError:
            return
        except OSError:
            sent = len(self._backlog)
        del self._backlog[:sent]
        if not self._backlog:
            asyncio.get_running_loop().remove_writer(self._master)

    def _readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO: no slave open (cannot happen while we hold it)
        if data:
            self._on_data(data)


class _TcpClient(asyncio.Protocol):
    def __init__(self, port: TcpPort) -> None:
        self._port = port
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):
            raise TypeError("a stream transport was expected")
        self.transport = transport
        self._port._attach(self)

    def data_received(self, data: bytes) -> None:
        if self._port._client is self:
            self._port._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._port._client is self:
            self._port._client = None


class TcpPort:
    """The same device over TCP; one client at a time (a newer one replaces the older)."""

    def __init__(self, host: str, port: int, on_data: Callable[[bytes], None]) -> None:
        self.host = host
        self.port = port
        self._on_data = on_data
        self._server: asyncio.Server | None = None
        self._client: _TcpClient | None = None
        self.accepting = True

    def __repr__(self) -> str:
        return f"TcpPort({self.host!r}, {self.port})"

    @property
    def address(self) -> tuple[str, int]:
        if self._server is not None and self._server.sockets:
            host, port = self._server.sockets[0].getsockname()[:2]
            return (str(host), int(port))
        return (self.host, self.port)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _TcpClient(self), self.host, self.port)

    async def close(self) -> None:
        self.drop_connection()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def drop_connection(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.transport is not None:
            client.transport.close()

    def write(self, data: bytes) -> None:
        client = self._client
        if client is not None and client.transport is not None and not client.transport.is_closing():
            client.transport.write(data)

    def _attach(self, client: _TcpClient) -> None:
        if not self.accepting:
            if client.transport is not None:
                client.transport.close()
            return
        self.drop_connection()
        self._client = client
