"""uvicorn's h11 protocol with the limits a hostile LAN needs: request deadline and connection caps.

uvicorn closes an idle keep-alive connection, but a connection that never finishes
its request (slowloris: a byte of header now and then, or a body that never ends)
is kept forever, and there is no cap on open connections: ~1,000 of them exhaust
the file descriptors and nothing, /healthz included, is accepted any more. uvicorn's
`limit_concurrency` does not help: past it every request, /healthz too, gets a 503.

Here, per connection, the whole request (line, headers, body) must arrive within
`request_timeout_s` of the connection opening or the previous response; and when a
new connection would exceed `max_connections` (or `max_connections_per_client` for
its address), the oldest connection that is *waiting for a request* is closed to
make room. A request being answered is never cut, and a newcomer always gets a turn,
so a flood of idle connections costs the flooder its own connections, not /healthz.
"""

from __future__ import annotations

import asyncio
import logging
import typing
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

_LOGGER = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16384  # h11 refuses a request head larger than this (431-like 400)


@dataclass
class Limits:
    request_timeout_s: float = 10.0
    max_connections: int = 512
    max_connections_per_client: int = 128


@dataclass
class Guard:
    """Shared by all connections of one server: who is open, and who waits for a request."""

    limits: Limits
    open_by_client: dict[str, int] = field(default_factory=dict)
    open_total: int = 0
    # Connections waiting for (the rest of) a request, oldest first: the ones we may close.
    waiting: OrderedDict[GuardedH11Protocol, None] = field(default_factory=OrderedDict)

    def oldest_waiting(self, client: str | None) -> GuardedH11Protocol | None:
        """The connection waiting longest for a request: of `client`, or of anyone when None."""
        for conn in self.waiting:
            if conn.client_host == client:
                return conn
        return next(iter(self.waiting), None) if client is None else None

    def busiest_client(self) -> str | None:
        """The address holding the most connections: the first to give one up at the global cap."""
        return max(self.open_by_client, key=self.open_by_client.__getitem__, default=None)


class GuardedH11Protocol(H11Protocol):
    guard: Guard  # set on the subclass protocol_class() makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_host = ""
        self._deadline: asyncio.TimerHandle | None = None
        self._counted = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        self.client_host = self.client[0] if self.client else ""
        limits = guard.limits
        if guard.open_by_client.get(self.client_host, 0) >= limits.max_connections_per_client:
            self._make_room(self.client_host)
        elif guard.open_total >= limits.max_connections:
            self._make_room(guard.busiest_client())
        if self.transport.is_closing():
            return
        guard.open_total += 1
        guard.open_by_client[self.client_host] = guard.open_by_client.get(self.client_host, 0) + 1
        self._counted = True
        self._await_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._request_arrived()
        if self._counted:
            self._counted = False
            guard = self.guard
            guard.open_total -= 1
            left = guard.open_by_client.get(self.client_host, 1) - 1
            if left > 0:
                guard.open_by_client[self.client_host] = left
            else:
                guard.open_by_client.pop(self.client_host, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self._cycle()
        if (
            self._deadline is not None
            and cycle is not None
            and not cycle.response_complete
            and not cycle.more_body
        ):
            self._request_arrived()  # the whole request is in: the app's time is not ours to limit

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self._cycle()
        in_app = cycle is not None and not cycle.response_complete and not cycle.more_body
        if not self.transport.is_closing() and not in_app:
            self._await_request()  # keep-alive (or a pipelined request still arriving): same deadline

    # ----------------------------------------------------------------- internals
    def _cycle(self) -> RequestResponseCycle | None:
        return typing.cast("RequestResponseCycle | None", self.cycle)  # None until a request came

    def _make_room(self, client: str | None) -> None:
        victim = self.guard.oldest_waiting(client)
        if victim is None and client != self.client_host:
            victim = self.guard.oldest_waiting(None)  # the busiest is all busy: anyone's idle one
        if victim is None:
            # Everyone is being answered: refuse the newcomer (it may retry) rather than grow.
            _LOGGER.warning(
                "connection from %s refused: %d connections open, none idle",
                self.client_host or "?",
                self.guard.open_total,
            )
            self.transport.abort()
            return
        _LOGGER.warning(
            "connection limit: closed an idle connection from %s to admit %s",
            victim.client_host or "?",
            self.client_host or "?",
        )
        victim._close()

    def _await_request(self) -> None:
        self._request_arrived()
        self.guard.waiting[self] = None
        self._deadline = self.loop.call_later(self.guard.limits.request_timeout_s, self._too_slow)

    def _request_arrived(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.guard.waiting.pop(self, None)

    def _too_slow(self) -> None:
        self._deadline = None
        _LOGGER.info(
            "closed a connection from %s: no whole request within %.0f s",
            self.client_host or "?",
            self.guard.limits.request_timeout_s,
        )
        self._close()

    def _close(self) -> None:
        self._request_arrived()
        if not self.transport.is_closing():
            self.transport.abort()  # no lingering FIN_WAIT for a peer that is not reading


def protocol_class(limits: Limits) -> type[GuardedH11Protocol]:
    """A protocol class for uvicorn.Config(http=...) bound to one server's guard."""
    return type("GuardedH11", (GuardedH11Protocol,), {"guard": Guard(limits)})
