"""What every request passes before any route: an allowed Host, and credentials that are at least text.

Host: a web page on some other site can point its own DNS name at the box (DNS rebinding)
and then read the page and API as "same origin". The browser still sends the attacker's
name in `Host`, so the box answers only to its own names and addresses (`[api]
allowed_hosts`, default: hostname, FQDN, localhost, loopback, the listen address, the
interface addresses, and the address the request arrived on) and gives 400 to the rest.

Credentials: an Authorization header is ASCII by definition (RFC 9110 token68); one holding
other bytes is refused here with a 401 in the route's own error shape, so no credential
parser further in ever sees them.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import socket
import struct
from collections.abc import Iterable
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from appliance.config import ApiConfig

_LOGGER = logging.getLogger(__name__)

_SIOCGIFADDR = 0x8915  # Linux ioctl: the IPv4 address of an interface
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
TWILIO_PREFIX = "/2010-04-01/"


class AllowedHosts:
    """Host names and addresses the box answers to."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.any = False
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        for raw in patterns:
            p = _normalise(raw)
            if p == "*":
                self.any = True
            elif p.startswith("*."):
                self.suffixes.append(p[1:])
            elif p:
                self.names.add(p)

    def allows(self, host: str, local_address: str | None = None) -> bool:
        if self.any:
            return True
        name = _normalise(host)
        if name in self.names or name in _LOOPBACK_NAMES or name == _normalise(local_address or ""):
            return True
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(name).is_loopback:
                return True
        return any(name.endswith(s) for s in self.suffixes)


def allowed_hosts(api: ApiConfig) -> AllowedHosts:
    """From `[api] allowed_hosts`, or the box's own names and addresses when it is empty."""
    if api.allowed_hosts:
        return AllowedHosts(api.allowed_hosts)
    return AllowedHosts(box_names(api.listen))


def box_names(listen: str) -> list[str]:
    """Hostname, FQDN, localhost, loopback, the listen host and every interface address."""
    names = ["localhost", "127.0.0.1", "::1", listen.rpartition(":")[0].strip("[]")]
    hostname = socket.gethostname()
    names += [hostname, socket.getfqdn(hostname)]
    names += interface_addresses()
    return [n for n in names if n]


def interface_addresses() -> list[str]:
    """This machine's IPv4 (one per interface, via ioctl) and IPv6 addresses (/proc/net/if_inet6)."""
    found: list[str] = []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _index, name in socket.if_nameindex():
            with contextlib.suppress(OSError):
                raw = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
                found.append(socket.inet_ntoa(raw[20:24]))
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            hexaddr = line.split()[0]
            found.append(str(ipaddress.IPv6Address(bytes.fromhex(hexaddr))))
    return found


class Edge:
    """ASGI middleware: 400 for a Host the box does not answer to; 401 for a non-ASCII Authorization."""

    def __init__(self, app: ASGIApp, allowed: AllowedHosts) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = b""
        authorization = b""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"authorization":
                authorization = value
        server = scope.get("server")
        local = str(server[0]) if server else None
        if host and not self.allowed.allows(host.decode("latin-1"), local):
            _LOGGER.warning(
                "refused Host %r from %s (not in [api] allowed_hosts)",
                host[:100],
                scope["client"][0] if scope.get("client") else "?",
            )
            await _respond(
                send,
                400,
                "bad_request",
                "this gateway does not answer to that Host name; add it to [api] allowed_hosts",
            )
            return
        if authorization and not _printable_ascii(authorization):
            if scope["path"].startswith(TWILIO_PREFIX):
                body = {
                    "code": 20003,
                    "message": "Authenticate: HTTP Basic with any username and an smsgw API key as the password",
                    "more_info": "https://www.twilio.com/docs/errors/20003",
                    "status": 401,
                }
                await _send_json(send, 401, body, b'Basic realm="smsgw"')
            else:
                await _respond(
                    send,
                    401,
                    "unauthorized",
                    "the Authorization header holds bytes that are not printable ASCII: it is no credential of ours",
                    challenge=b'Bearer realm="smsgw"',
                )
            return
        await self.app(scope, receive, send)


def _normalise(host: str) -> str:
    """Lower case, no port, no brackets, no trailing dot: `[::1]:8080` -> `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _printable_ascii(value: bytes) -> bool:
    return all(0x20 <= b < 0x7F for b in value)


async def _respond(send: Send, status: int, code: str, message: str, challenge: bytes = b"") -> None:
    await _send_json(send, status, {"error": {"code": code, "message": message}}, challenge)


async def _send_json(send: Send, status: int, doc: object, challenge: bytes) -> None:
    body = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if challenge:
        headers.append((b"www-authenticate", challenge))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
